"""One image request (method, generator, z, property values, n, noise, seed, batch, device): its checks and its
record, `request.json`, written beside the images it made.

The record names every input by path and sha256 (and, when it came from an asset, the asset, its mode and
data version), holds the z row itself and gives the `ohlora generate` command that reproduces it. It is
plain data (no argparse, no torch), so any front end — the CLI, a later interactive page — writes the same
record and shows the same command; `ohlora generate --request request.json --out DIR` replays it.

The checks here are the rules of a request wherever it comes from (CLI flags, an asset's config):
property values are normalised scores, (x - mean) / std over the filtered set, so a finite value within
`PROPERTY_RANGE` std of the mean; noise finite within `NOISE_RANGE`; n within 1..`MAX_IMAGES`.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# The seven properties in label-vector order: scores.common.SCORE_NAMES, repeated here because importing that
# package loads cv2 and pandas (a second on every `ohlora` start); test_generate checks that they agree.
PROPERTIES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean", "background_std")

# 5 std either side of the filtered set's mean: a normal's tail beyond that holds ~3e-7 of the images, so a
# request further out asks for something no training image showed (the original asked for at most 1.8).
PROPERTY_RANGE = (-5.0, 5.0)
# The noise is a std added to z ~ N(0, I); beyond 5 the rows no longer resemble z0 or any z the generator saw.
NOISE_RANGE = (0.0, 5.0)
MAX_IMAGES = 10_000  # full mode's image count; 10,000 JPEGs of 256x256 are ~200 MB
MAX_BATCH = 1024
MAX_SEED = 2**63 - 1  # numpy's SeedSequence takes any non-negative int; 63 bits keep it an int64 everywhere
Z_DIM = 512
METHODS = ("finetuned", "directions")
# The label names of each fine-tuned version, in label-vector order (what its checkpoint's label_weight rows mean).
VERSION_LABELS = {"v1": PROPERTIES, "v2": PROPERTIES, "v3": PROPERTIES, "v4": ("eyes", "mouth", "pose")}
VERSIONS = tuple(VERSION_LABELS)
RECORD_FORMAT = 1
REQUEST_FILE = "request.json"
SMOKE_GENERATOR = re.compile(r"smoke_generator\(seed=(\d+)\)")


class GenerationRequestError(ValueError):
    """A request that cannot be answered as asked: a value, z, file or checkpoint the generator cannot take."""


def flag(name: str) -> str:
    """The `ohlora generate` flag of a request field (`hair_color` -> `--hair-color`, `n` -> `-n`)."""
    return "-n" if name == "n" else "--" + name.replace("_", "-")


def _finite(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GenerationRequestError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(value):
        raise GenerationRequestError(f"{name} {value:g} is not a finite number")
    return value


def _within(value, name: str, low: float, high: float, what: str) -> float:
    value = _finite(value, name)
    if not low <= value <= high:
        raise GenerationRequestError(f"{name} {value:g} is outside [{low:g}, {high:g}]; {what}")
    return value


def validate_values(values: Mapping[str, float], name: Callable[[str], str] = str) -> dict[str, float]:
    """Property values as floats, each a known property with a finite value within PROPERTY_RANGE; else
    GenerationRequestError naming the property as `name(property)` says (a flag, a config field)."""
    unknown = [p for p in values if p not in PROPERTIES]
    if unknown:
        raise GenerationRequestError(
            f"unknown properties {', '.join(map(str, unknown))}; known: {', '.join(PROPERTIES)}"
        )
    what = "property values are normalised scores (z-scores of the filtered images)"
    return {p: _within(v, name(p), *PROPERTY_RANGE, what) for p, v in values.items()}


def validate_noise(noise: float, name: str = "noise") -> float:
    return _within(noise, name, *NOISE_RANGE, "it is the std of the noise added to z ~ N(0, I)")


def validate_count(value: int, name: str, low: int, high: int) -> int:
    """An integer within [low, high], or GenerationRequestError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise GenerationRequestError(f"{name} {value!r} is not an integer")
    if value < low:
        raise GenerationRequestError(f"{name} {value} must be at least {low}")
    if value > high:
        raise GenerationRequestError(f"{name} {value} must be at most {high}")
    return int(value)


def check_version_takes(version: str, values: Mapping[str, float]) -> None:
    """Every requested property is one of `version`'s labels (v4 has eyes, mouth and pose only)."""
    names = VERSION_LABELS[version]
    unknown = [p for p in values if p not in names]
    if unknown:
        raise GenerationRequestError(f"{version} cannot take {', '.join(unknown)}: its labels are {', '.join(names)}")


def validate_z(z: Sequence[float], source: str) -> list[float]:
    """A z row: 512 finite values, else GenerationRequestError naming `source` and the first bad column."""
    z = [float(v) for v in z]
    if len(z) != Z_DIM:
        raise GenerationRequestError(f"{source}: expected a z of {Z_DIM} values, got {len(z)}")
    bad = next((k for k, v in enumerate(z) if not math.isfinite(v)), None)
    if bad is not None:
        raise GenerationRequestError(f"{source}: column {bad} is {z[bad]:g}; every value of z must be finite")
    return z


@dataclass(frozen=True)
class Source:
    """An input file by path and sha256; `asset`, `mode`, `data_version` when an asset provided it. A smoke
    stand-in generator has no file: its path is `smoke_generator(seed=N)` and its sha256 None."""

    path: str
    sha256: str | None
    asset: str | None = None
    mode: str | None = None
    data_version: str | None = None

    @classmethod
    def of_file(cls, path: str | Path, what: str, **asset) -> "Source":
        from ohlora_core.io import sha256_file

        path = Path(path).resolve()
        if not path.is_file():
            raise GenerationRequestError(f"{what} not found: {path}")
        return cls(str(path), sha256_file(path), **asset)

    @property
    def smoke_seed(self) -> int | None:
        """The seed of a smoke stand-in generator, else None."""
        match = SMOKE_GENERATOR.fullmatch(self.path)
        return int(match.group(1)) if match else None

    def verify(self, what: str) -> None:
        """The file is still the one recorded (same sha256), else GenerationRequestError saying which."""
        from ohlora_core.io import sha256_file

        if self.smoke_seed is not None:
            return
        if not Path(self.path).is_file():
            raise GenerationRequestError(f"{what} {self.path} recorded in the request is missing")
        if sha256_file(self.path) != self.sha256:
            raise GenerationRequestError(
                f"{what} {self.path} has changed since the request was recorded "
                f"(sha256 {self.sha256[:12]}... then); the same images cannot be made"
            )


@dataclass
class GenerationRequest:
    """Everything that fixes a request's images. `z` is the z row itself (z_file / z_sha256 say where it came
    from; without a file it was drawn from `seed`); `storage` is the root the assets were read from."""

    method: str
    values: dict[str, float]
    z: list[float]
    generator: Source
    n: int = 20
    noise: float = 0.3
    seed: int = 0
    batch: int = 4
    device: str = "cpu"
    version: str | None = "v3"
    directions: Source | None = None
    z_file: str | None = None
    z_sha256: str | None = None
    storage: str | None = None

    def validate(self, name: Callable[[str], str] = str) -> "GenerationRequest":
        """Every field within its rule (else GenerationRequestError naming the field as `name` spells it)."""
        if self.method not in METHODS:
            raise GenerationRequestError(f"{name('method')} {self.method!r} is not one of {', '.join(METHODS)}")
        if self.method == "finetuned" and self.version not in VERSIONS:
            raise GenerationRequestError(f"{name('version')} {self.version!r} is not one of {', '.join(VERSIONS)}")
        self.values = validate_values(self.values, name)
        if self.method == "finetuned":
            check_version_takes(self.version, self.values)
        self.noise = validate_noise(self.noise, name("noise"))
        validate_count(self.n, name("n"), 1, MAX_IMAGES)
        validate_count(self.batch, name("batch"), 1, MAX_BATCH)
        validate_count(self.seed, name("seed"), 0, MAX_SEED)
        self.z = validate_z(self.z, self.z_file or "z")
        return self

    @property
    def is_smoke(self) -> bool:
        """Made from smoke-mode artifacts or a stand-in generator: random weights, images of noise."""
        sources = [s for s in (self.generator, self.directions) if s is not None]
        # a file given by path counts too when it lies in a smoke-mode artifact folder (layout.py's artifacts/<mode>)
        return any(
            s.mode == "smoke" or s.smoke_seed is not None or "/artifacts/smoke/" in Path(s.path).as_posix()
            for s in sources
        )

    def argv(self, out: str | Path | None = None) -> list[str]:
        """`ohlora generate ...` reproducing this request (into `out` when given)."""
        args = ["ohlora", "generate", "--method", self.method]
        from_assets = any(s is not None and s.asset for s in (self.generator, self.directions))
        if self.method == "finetuned":
            args += ["--version", str(self.version)]
            args += [] if self.generator.asset else ["--checkpoint", self.generator.path]
        else:
            args += [] if self.directions.asset else ["--directions", self.directions.path]
            args += [] if self.generator.asset else ["--generator", self.generator.path]
        if from_assets:
            args += ["--storage", str(self.storage), "--mode", str(self.generator.mode or self.directions.mode)]
        if self.z_file:
            args += ["--z-csv", self.z_file]
        # `--flag=value` keeps negative values from reading as flags; repr() gives back the same float
        args += [f"{flag(p)}={v!r}" for p, v in self.values.items()]
        args += [
            "-n",
            str(self.n),
            f"--noise={self.noise!r}",
            "--seed",
            str(self.seed),
            "--batch",
            str(self.batch),
            "--device",
            self.device,
        ]
        return args + (["--out", str(out)] if out is not None else [])

    def command(self, out: str | Path | None = None) -> str:
        return shlex.join(self.argv(out))

    def to_json(self, out: str | Path | None = None) -> str:
        """The record (z last, so the rest reads first); `command` is `argv(out)` as one shell line."""
        record = {
            "format": RECORD_FORMAT,
            **{k: v for k, v in asdict(self).items() if k != "z"},
            "command": self.command(out),
            "z": self.z,
        }
        return json.dumps(record, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "request") -> "GenerationRequest":
        """A record written by `to_json`, validated; GenerationRequestError naming `source` otherwise."""
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise GenerationRequestError(f"{source}: not a request record (invalid JSON: {exc})") from None
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise GenerationRequestError(f"{source}: not a request record (format {RECORD_FORMAT} expected)")
        record = {k: v for k, v in record.items() if k not in ("format", "command")}
        try:
            record["generator"] = Source(**record["generator"])
            if record.get("directions") is not None:
                record["directions"] = Source(**record["directions"])
            elif record.get("method") == "directions":
                raise KeyError("directions")
            return cls(**record).validate()
        except (KeyError, TypeError) as exc:
            raise GenerationRequestError(f"{source}: not a request record ({type(exc).__name__}: {exc})") from None
        except GenerationRequestError as exc:
            raise GenerationRequestError(f"{source}: {exc}") from None
