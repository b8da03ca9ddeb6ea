"""`ohlora studio`: ask for a face, see it, and see how well the request was met (issue 21).

One local page (`studio_page.html`, plain HTML/JS) over the materialized generators: a slider per property the
chosen method takes, the generated image, the property CNN's measured value of each property beside the requested
one, and the method's figures from the latest `controllability_report`. The same request can go through several
methods in a row (side by side); a strip of variations (z + 0.3 N(0, 1), seeded: the original's final inference)
offers other z's; an export writes the images and `request.json` through `finetune.generate.write_request`, the
code of `ohlora generate` itself, so the command the page shows makes the same bytes.

The methods are the report's: v1..v4 (the stylegan_finetune_<v> assets) and directions (latent_directions moving
w of the pretrained generator latent_w used). An image is computed as `generate` / `generate_with_directions`
compute one row of a request (`latents_around`, the same label row or w move, the same JPEG encoder, one row per
forward: the page's image and the export of it are the same bytes, and so are a thumbnail and the image of the z
picked from it), and measured as
`controllability.evaluate` measures: the CNN on the generator's raw output, in eval mode.

Speed: a moving slider makes a request per step. The page keeps one request in flight (then sends the latest
state); the server renders one request at a time and, of the requests waiting on one channel (a page's renders, its
strip), only the newest (`Coalescer`). Models are loaded once per method and kept (`ModelCache`), keyed by the
assets' current recipe folders: a rematerialized asset is picked up, an unchanged one never reloaded.

The app sits behind `local_server.guard`: loopback Host and Origin only, every POST (renders too) as JSON from the
page's own origin, bodies within the cap (an uploaded z of 512 numbers is ~11 KB of the 64 KiB). No part of a
request becomes a path: z files are chosen by name from v3's folder listing, export folders are named here.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ohlora_core.artifacts import FINETUNES, ControllabilityReport, LatentDirections, LatentW, PropertyScoreCnn
from ohlora_core.finetune import protocol
from ohlora_core.finetune.request import (
    MAX_SEED,
    PROPERTIES,
    VERSION_LABELS,
    VERSIONS,
    GenerationRequest,
    GenerationRequestError,
    validate_count,
    validate_values,
    validate_z,
)
from ohlora_core.layout import StorageLayout
from ohlora_core.local_server import DEFAULT_MAX_BODY, BadInput, guard, json_error_handlers, read_json_object

PAGE = Path(__file__).with_name("studio_page.html")
METHODS = (*VERSIONS, "directions")  # the controllability report's method names
NOISE = 0.3  # the original's final inference: z + 0.3 N(0, 1)
STRIP = 8  # thumbnails in the variation strip (an export with the strip writes 1 + STRIP images)
BATCH = 1  # one row per forward everywhere, so page, thumbnail and export of one z are the same bytes
IMAGES_KEPT = 8  # raw images kept for measuring (the last states of a page or two)
STEP = 0.1  # hits every value of the report's grid (eyes +-1.8, mouth -1.2..1.6, pose -1.2..3.6)
# The report's calibration: the protocol's grid for the properties it tests ...
PROTOCOL_RANGES = {
    "eyes": (min(protocol.EYES), max(protocol.EYES)),
    "mouth": (min(protocol.MOUTH), max(protocol.MOUTH)),
    "pose": (min(protocol.POSE), max(protocol.POSE)),
}
# ... and for the others 3 std either side of the filtered set's mean (99.7% of the images the generators were
# trained on; a request may go to PROPERTY_RANGE, the slider stays where there was data).
OTHER_RANGE = (-3.0, 3.0)
DEFAULTS = {"eyes": 1.8, "mouth": 1.6, "pose": -1.2}  # the original's final inference
SMOKE_NOTICE = "smoke mode: random weights — these images are noise, not faces"
Z_FILE = re.compile(r"test_z_vector_\d{4}\.csv")
CLIENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class StudioRequestError(BadInput):
    """A studio request the page should not have sent: unknown method or property, bad z or seed (a 400)."""


class Unavailable(Exception):
    """A method or model that cannot be used as the storage stands (not materialized, unreadable): a 409."""


class ExportFailed(Exception):
    """An export that could not be written (disk full, permissions): a 500 naming the path."""


# --- what the page offers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slider:
    """One property's control: its range and step, its start value; `free`: it may be left unset (directions:
    the property then stays where z puts it); `on`: set at the start."""

    name: str
    low: float
    high: float
    step: float
    default: float
    free: bool
    on: bool


def sliders(names: tuple[str, ...], free: bool) -> list[Slider]:
    """Sliders for `names` in label order; with `free`, the properties the report does not test start unset."""
    out = []
    for name in names:
        low, high = PROTOCOL_RANGES.get(name, OTHER_RANGE)
        out.append(Slider(name, low, high, STEP, DEFAULTS.get(name, 0.0), free, not free or name in PROTOCOL_RANGES))
    return out


@dataclass(frozen=True)
class Method:
    """A way of asking for properties: `kind` finetuned or directions, `needs` the assets it reads."""

    name: str
    kind: str
    needs: tuple[str, ...]
    properties: tuple[str, ...]
    missing: tuple[str, ...] = ()
    problem: str | None = None  # materialized but unreadable (a directions file numpy cannot open)

    @property
    def available(self) -> bool:
        return not self.missing and self.problem is None

    @property
    def reason(self) -> str | None:
        if self.missing:
            return "materialize " + " and ".join(self.missing)
        return self.problem


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined figure (a constant output's correlation) is shown as missing."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def report_figures(where: StorageLayout) -> tuple[dict[str, dict], str | None, str | None]:
    """({method: figures} of the latest controllability report, its data version, why there is none)."""
    import pandas as pd

    from ohlora_core.store import MissingArtifact, current_digest

    if not where.has(ControllabilityReport):
        return {}, None, f"no controllability report: materialize {ControllabilityReport.NAME}"
    try:
        files = where.current(ControllabilityReport)
        table = pd.read_csv(files.table)
        version = current_digest(where.artifact_dir(ControllabilityReport.NAME))
    except (MissingArtifact, OSError, ValueError) as exc:
        return {}, None, f"controllability report unreadable: {exc}"
    figures = {}
    for row in table.to_dict("records"):
        figures[str(row["method"])] = {k: (finite_or_none(v) if k != "method" else v) for k, v in row.items()}
    return figures, version, None


# --- models, once per method ------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A method's models and the request it answers (its sources: files by path, sha256 and data version)."""

    template: GenerationRequest
    G: Any
    directions: Any = None


def method_sources(where: StorageLayout, method: str) -> dict:
    """The generator, directions and storage of `method` as `ohlora generate` records them for the same assets."""
    from ohlora_core.cli.generate import _asset_file, _latent_w_generator

    if method in VERSIONS:
        generator = _asset_file(FINETUNES[method], lambda f: f.generator, where, "")
        return dict(generator=generator, directions=None, storage=str(where.root))
    directions = _asset_file(LatentDirections, lambda f: f.directions, where, "")
    return dict(generator=_latent_w_generator(where), directions=directions, storage=str(where.root))


class ModelCache:
    """Each method's models, loaded on first use and kept while its assets' current folders stay the same."""

    def __init__(self, where: StorageLayout, device: str):
        self.where, self.device = where, device
        self._loaded: dict[str, tuple[tuple, Loaded]] = {}
        self._cnn: tuple[Path, Any] | None = None
        self.loads = 0  # how many times a generator was loaded (the tests count them)

    def key(self, method: str) -> tuple:
        """The current recipe folders of the assets `method` reads: another key, other models (and images)."""
        names = [FINETUNES[method].NAME] if method in VERSIONS else [LatentDirections.NAME, LatentW.NAME]
        return tuple((self.where.artifact_dir(n) / "current").resolve() for n in names)

    def get(self, method: str) -> Loaded:
        key = self.key(method)
        held = self._loaded.get(method)
        if held is None or held[0] != key:
            self._loaded[method] = (key, self._load(method))
            self.loads += 1
        return self._loaded[method][1]

    def _load(self, method: str) -> Loaded:
        from ohlora_core.cli.common import UsageError
        from ohlora_core.finetune.generate import load_request_models
        from ohlora_core.io import CheckpointError

        finetuned = method in VERSIONS
        try:
            # version v3 for directions too: what `ohlora generate --method directions` records (its default)
            template = GenerationRequest(
                "finetuned" if finetuned else "directions",
                {},
                [0.0] * 512,
                n=1,
                noise=NOISE,
                batch=BATCH,
                device=self.device,
                version=method if finetuned else "v3",
                **method_sources(self.where, method),
            )
            G, directions = load_request_models(template)
        except (UsageError, CheckpointError, GenerationRequestError, OSError) as exc:
            raise Unavailable(f"{method}: {exc}") from None
        return Loaded(template, G, directions)

    def cnn(self):
        """The property-score CNN (eval mode) of the current property_score_cnn, or None when there is none."""
        from ohlora_core.cnn.models import PropertyScoreCNN
        from ohlora_core.io import CheckpointError, load_checkpoint, load_state_dict_strict

        if not self.where.has(PropertyScoreCnn):
            return None
        path = self.where.current(PropertyScoreCnn).checkpoint.resolve()
        if self._cnn is None or self._cnn[0] != path:
            cnn = PropertyScoreCNN()
            try:
                load_state_dict_strict(cnn, load_checkpoint(path), str(path))
            except CheckpointError as exc:
                raise Unavailable(f"property-score CNN: {exc}") from None
            self._cnn = (path, cnn.to(self.device).eval())
        return self._cnn[1]


# --- coalescing -------------------------------------------------------------------------------------------------


class Coalescer:
    """One render at a time; of the requests waiting on one channel only the newest runs, the others answer
    "superseded" at once. A slider dragged across 30 steps while a render runs costs two renders, not 31."""

    def __init__(self):
        self.lock = threading.Lock()  # held while a render runs
        self._state = threading.Lock()  # guards the fields below
        self._latest: dict[str, int] = {}  # channel -> newest ticket
        self._tickets = itertools.count(1)
        self.waiting = 0
        self.rendered = 0
        self.superseded = 0

    def run(self, channel: str, job: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, job()) when this request was the newest of its channel once the renderer was free, else
        (False, None)."""
        with self._state:
            ticket = next(self._tickets)
            self._latest[channel] = ticket
            self.waiting += 1
        try:
            with self.lock:
                with self._state:
                    newest = self._latest.get(channel) == ticket
                    self.rendered += newest
                    self.superseded += not newest
                return (True, job()) if newest else (False, None)
        finally:
            with self._state:
                self.waiting -= 1
                if self._latest.get(channel) == ticket:
                    del self._latest[channel]  # nothing newer waits: the table stays as small as the queue

    def exclusive(self, job: Callable[[], Any]) -> Any:
        """`job()` in its turn with the renders, never superseded (an export)."""
        with self.lock:
            return job()


# --- one request ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZChoice:
    """Where z comes from: `seed` (drawn from the request's seed, as `ohlora generate` without --z-csv), `file`
    (one of v3's test_z_vector_*.csv, by name) or `row` (the 512 values themselves: uploaded, or picked from the
    strip)."""

    kind: str
    name: str | None = None
    row: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Spec:
    """A render, strip or export request: the methods in a row (the first is the page's method), the values
    asked for, z, the seed (z's when drawn from it, and the strip's noise), the page that sent it."""

    methods: tuple[str, ...]
    values: dict[str, float]
    z: ZChoice
    seed: int
    client: str = "page"

    def channel(self, kind: str) -> str:
        return f"{self.client}:{kind}"


def _check_keys(body: dict, allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise StudioRequestError(
            f"{what}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
        )


def parse_z(value) -> ZChoice:
    """A z choice from the page: {"kind": "seed"} | {"kind": "file", "name": ...} | {"kind": "row", "z": [...]}."""
    if not isinstance(value, dict) or value.get("kind") not in ("seed", "file", "row"):
        raise StudioRequestError(
            'z must be {"kind": "seed"}, {"kind": "file", "name": "test_z_vector_0001.csv"} or '
            f'{{"kind": "row", "z": [512 numbers]}}; got {str(value)[:80]}'
        )
    if value["kind"] == "file":
        name = value.get("name")
        if not isinstance(name, str) or not Z_FILE.fullmatch(name):
            raise StudioRequestError(f"z file must be named test_z_vector_NNNN.csv, got {str(name)[:80]!r}")
        return ZChoice("file", name=name)
    if value["kind"] == "row":
        return ZChoice("row", row=tuple(parse_z_row(value.get("z"), "z")))
    return ZChoice("seed")


def parse_z_row(values, source: str) -> list[float]:
    """512 finite numbers (JSON numbers, not strings or booleans), else StudioRequestError naming `source`."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise StudioRequestError(f"{source} must be a list of 512 numbers")
    try:
        return validate_z(values, source)
    except GenerationRequestError as exc:
        raise StudioRequestError(str(exc)) from None


def parse_values(value) -> dict[str, float]:
    """Property values in label order (as `ohlora generate` records them), each within PROPERTY_RANGE."""
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise StudioRequestError('values must be an object {"eyes": 1.8, ...} of numbers')
    try:
        checked = validate_values(value)
    except GenerationRequestError as exc:
        raise StudioRequestError(str(exc)) from None
    return {p: checked[p] for p in PROPERTIES if p in checked}


def parse_spec(body: dict, what: str, extra: set[str] = frozenset()) -> Spec:
    """The request the page sent, every field checked (nothing is loaded or rendered before)."""
    _check_keys(body, {"methods", "values", "z", "seed", "client"} | set(extra), what)
    methods = body.get("methods")
    if (
        not isinstance(methods, list)
        or not methods
        or len(set(map(str, methods))) != len(methods)
        or any(m not in METHODS for m in methods)
    ):
        raise StudioRequestError(
            f"methods must be a list of distinct methods out of {', '.join(METHODS)}; got {str(methods)[:80]}"
        )
    seed = body.get("seed", 0)
    try:
        seed = validate_count(seed, "seed", 0, MAX_SEED)
    except GenerationRequestError as exc:
        raise StudioRequestError(str(exc)) from None
    client = body.get("client", "page")
    if not isinstance(client, str) or not CLIENT.fullmatch(client):
        raise StudioRequestError("client must be 1..64 letters, digits, - or _")
    return Spec(
        tuple(methods), parse_values(body.get("values", {})), parse_z(body.get("z", {"kind": "seed"})), seed, client
    )


def boolean(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise StudioRequestError(f"{name} must be true or false, got {str(value)[:40]}")
    return value


def image_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


@dataclass
class Studio:
    """The studio over one storage layout: what it offers (`info`), renders, strips, picks and exports."""

    where: StorageLayout
    device: str = "cpu"
    exports: Path | None = None
    strip_size: int = STRIP
    coalescer: Coalescer = field(default_factory=Coalescer)

    def __post_init__(self):
        self.exports = Path(self.exports or self.where.root / "exports" / self.where.mode).resolve()
        self.models = ModelCache(self.where, self.device)
        self._images: dict[tuple, Any] = {}  # (method, values, z, seed, model key) -> raw image, oldest first
        self._export_lock = threading.Lock()

    # -- listing -----------------------------------------------------------------------------------------------
    def methods(self) -> dict[str, Method]:
        """Every method of the report, available or not (with the assets to materialize)."""
        out = {}
        for v in VERSIONS:
            name = FINETUNES[v].NAME
            out[v] = Method(v, "finetuned", (name,), VERSION_LABELS[v], () if self.where.has(FINETUNES[v]) else (name,))
        needs = (LatentDirections.NAME, LatentW.NAME)
        missing = tuple(n for n, c in zip(needs, (LatentDirections, LatentW)) if not self.where.has(c))
        names, problem = PROPERTIES, None
        if not missing:
            names, problem = self._direction_names()
        out["directions"] = Method("directions", "directions", needs, names, missing, problem)
        return out

    def _direction_names(self) -> tuple[tuple[str, ...], str | None]:
        from ohlora_core.finetune.generate import read_directions
        from ohlora_core.store import MissingArtifact

        try:
            return read_directions(self.where.current(LatentDirections).directions).names, None
        except (GenerationRequestError, MissingArtifact) as exc:
            return PROPERTIES, str(exc)

    def z_files(self) -> dict[str, Path]:
        """{name: path} of v3's test_z_vector_*.csv (the z's that passed v3's test), resolved."""
        from ohlora_core.store import MissingArtifact

        try:
            folder = self.where.current(FINETUNES["v3"]).dir.resolve()
        except MissingArtifact:  # v3 not (completely) materialized: no z files, the page disables the choice
            return {}
        return {p.name: p for p in sorted(folder.glob("test_z_vector_*.csv")) if Z_FILE.fullmatch(p.name)}

    def info(self) -> dict:
        """Everything the page shows before a render: mode and notice, methods (greyed-out ones with the asset to
        materialize), sliders, the report's figures, the CNN's status, z files, where exports go."""
        figures, report_version, report_note = report_figures(self.where)
        methods = []
        for m in self.methods().values():
            methods.append(
                {
                    "name": m.name,
                    "kind": m.kind,
                    "available": m.available,
                    "reason": m.reason,
                    "needs": list(m.needs),
                    "sliders": [vars(s) for s in sliders(m.properties, m.kind == "directions")],
                    "report": figures.get(m.name),
                    "report_note": None
                    if m.name in figures
                    else (report_note or f"{m.name} is not in the latest controllability report"),
                }
            )
        has_cnn = self.where.has(PropertyScoreCnn)
        return {
            "mode": self.where.mode,
            "notice": SMOKE_NOTICE if self.where.mode == "smoke" else None,
            "methods": methods,
            "report_version": report_version,
            "properties": list(PROPERTIES),
            "cnn": has_cnn,
            "cnn_note": None if has_cnn else f"no measured values: materialize {PropertyScoreCnn.NAME}",
            "z_files": list(self.z_files()),
            "strip": self.strip_size,
            "noise": NOISE,
            "exports": str(self.exports),
            "device": self.device,
            "max_seed": MAX_SEED,
        }

    # -- one request -------------------------------------------------------------------------------------------
    def check(self, spec: Spec) -> None:
        """What can be refused without a model: a method that is not available, a z file that is not there (so a
        refused request never waits for the renderer)."""
        methods = self.methods()
        for name in spec.methods:
            if not methods[name].available:
                raise Unavailable(f"{name} is not available: {methods[name].reason}")
        if spec.z.kind == "file" and spec.z.name not in self.z_files():
            raise StudioRequestError(
                f"no z file {spec.z.name} in {FINETUNES['v3'].NAME}'s folder; "
                f"there are: {', '.join(self.z_files()) or 'none'}"
            )

    def resolve_z(self, choice: ZChoice, seed: int) -> tuple[list[float], str | None, str | None]:
        """(z, its file, the file's sha256), as `ohlora generate` reads them (a row has no file until exported)."""
        from ohlora_core.finetune.generate import default_z, load_z_csv
        from ohlora_core.io import sha256_file

        if choice.kind == "seed":
            return default_z(seed).tolist(), None, None
        if choice.kind == "row":
            return list(choice.row), None, None
        path = self.z_files().get(choice.name)
        if path is None:
            raise StudioRequestError(
                f"no z file {choice.name} in {FINETUNES['v3'].NAME}'s folder; "
                f"there are: {', '.join(self.z_files()) or 'none'}"
            )
        try:
            return load_z_csv(path).tolist(), str(path), sha256_file(path)
        except GenerationRequestError as exc:
            raise StudioRequestError(str(exc)) from None

    def request(
        self,
        method: str,
        spec: Spec,
        z: list[float],
        z_file: str | None = None,
        z_sha256: str | None = None,
        n: int = 1,
    ) -> tuple[GenerationRequest, Loaded, list[str]]:
        """`method`'s request for the values it takes (the others listed), with its loaded models."""
        m = self.methods()[method]
        if not m.available:
            raise Unavailable(f"{method} is not available: {m.reason}")
        loaded = self.models.get(method)
        values = {p: v for p, v in spec.values.items() if p in m.properties}
        dropped = [p for p in spec.values if p not in m.properties]
        request = replace(loaded.template, values=values, z=z, seed=spec.seed, n=n, z_file=z_file, z_sha256=z_sha256)
        try:
            request.validate()
        except GenerationRequestError as exc:
            raise StudioRequestError(f"{method}: {exc}") from None
        return request, loaded, dropped

    def _forward(self, request: GenerationRequest, loaded: Loaded, rows: np.ndarray):
        """The raw images [k, 3, H, W] of z rows (float32 [k, 512]) as `generate` / `generate_with_directions`."""
        import torch

        from ohlora_core.finetune.generate import EVAL_KWARGS, label_vector
        from ohlora_core.stylegan import synthesize_w

        z = torch.from_numpy(rows).to(self.device)
        with torch.no_grad():
            if request.method == "finetuned":
                label = torch.from_numpy(
                    label_vector(request.version, request.values, loaded.G.label_size, request.generator.path)
                ).to(self.device)
                return loaded.G(z, label.expand(len(z), -1), **EVAL_KWARGS)["image"]
            w = loaded.G.mapping(z)["w"].double().cpu().numpy()
            moved = loaded.directions.move(w, dict(request.values), True).astype(np.float32)
            return synthesize_w(loaded.G, torch.from_numpy(moved).to(self.device))

    def _jpeg(self, image) -> bytes:
        from ohlora_core.generation import encode_jpeg
        from ohlora_core.stylegan import postprocess

        return encode_jpeg(postprocess(image).cpu().numpy()[0])

    def _measure(self, image) -> dict[str, float | None] | None:
        import torch

        cnn = self.models.cnn()
        if cnn is None:
            return None
        with torch.no_grad():
            out = cnn(image).float().cpu().numpy()[0]
        return {p: finite_or_none(v) for p, v in zip(PROPERTIES, out)}

    def _image(self, method: str, spec: Spec, z: list[float], row: np.ndarray):
        """(request, raw image, properties not taken) of `method` for row 0 of the request; the last few images are
        kept, so that measuring the image just shown costs the CNN only."""
        request, loaded, dropped = self.request(method, spec, z)
        key = (method, tuple(request.values.items()), spec.z, spec.seed, self.models.key(method))
        image = self._images.pop(key, None)
        if image is None:
            image = self._forward(request, loaded, row)
        self._images[key] = image  # newest last
        while len(self._images) > IMAGES_KEPT:
            self._images.pop(next(iter(self._images)))
        return request, image, dropped

    def _row(self, spec: Spec) -> tuple[list[float], np.ndarray]:
        from ohlora_core.finetune.generate import latents_around

        z, _, _ = self.resolve_z(spec.z, spec.seed)
        return z, latents_around(np.asarray(z, np.float64), 1, NOISE, spec.seed)

    def render(self, spec: Spec, measure: bool = True) -> dict:
        """The image of z (row 0 of the request) through every method of `spec`, with report figures, and with
        `measure` the CNN's values (the page measures apart, once the slider rests: `measure`)."""
        z, row = self._row(spec)
        figures, _, _ = report_figures(self.where)
        results = []
        for method in spec.methods:
            start = time.perf_counter()
            request, image, dropped = self._image(method, spec, z, row)
            results.append(
                {
                    "method": method,
                    "image": image_url(self._jpeg(image)),
                    "requested": request.values,
                    "measured": self._measure(image) if measure else None,
                    "not_taken": dropped,
                    "report": figures.get(method),
                    "smoke": request.is_smoke,
                    "seconds": round(time.perf_counter() - start, 3),
                }
            )
        return {
            "results": results,
            "z_norm": float(np.linalg.norm(z)),
            "cnn": self.models.cnn() is not None,
            "measured": measure,
        }

    def measure(self, spec: Spec) -> dict:
        """The property CNN's values for the images of `spec` (kept from its render, else made again)."""
        z, row = self._row(spec)
        results = []
        for method in spec.methods:
            start = time.perf_counter()
            _, image, _ = self._image(method, spec, z, row)
            results.append(
                {"method": method, "measured": self._measure(image), "seconds": round(time.perf_counter() - start, 3)}
            )
        return {"results": results, "cnn": self.models.cnn() is not None}

    def strip_rows(self, spec: Spec) -> np.ndarray:
        """Rows 1..strip of the request: z + 0.3 N(0, 1) from the seed (what an export with the strip writes)."""
        from ohlora_core.finetune.generate import latents_around

        z, _, _ = self.resolve_z(spec.z, spec.seed)
        return latents_around(np.asarray(z, np.float64), 1 + self.strip_size, NOISE, spec.seed)[1:]

    def strip(self, spec: Spec) -> dict:
        """Thumbnails of the strip's rows through the page's method, one row per forward (a picked row then
        renders to the very bytes of its thumbnail)."""
        rows = self.strip_rows(spec)
        request, loaded, _ = self.request(spec.methods[0], spec, [0.0] * 512)
        images = [image_url(self._jpeg(self._forward(request, loaded, rows[k : k + 1]))) for k in range(len(rows))]
        return {"method": spec.methods[0], "thumbs": images}

    def pick(self, spec: Spec, index: int) -> list[float]:
        """Strip row `index` (1..strip) as a z of its own (float32 values, as the generator saw them)."""
        index = validate_count(index, "index", 1, self.strip_size)
        return self.strip_rows(spec)[index - 1].astype(np.float64).tolist()

    # -- export ------------------------------------------------------------------------------------------------
    def _new_export_folder(self) -> Path:
        self.exports.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for k in itertools.count(1):
            folder = self.exports / (f"studio-{stamp}" if k == 1 else f"studio-{stamp}-{k}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
        raise AssertionError("unreachable")

    def _export_z(self, spec: Spec, folder: Path) -> tuple[list[float], str | None, str | None]:
        """z for the export; a row (uploaded, picked) is written as `z.csv` in the original's format so that the
        shown command can read it with --z-csv, and read back from there as `ohlora generate` will."""
        import pandas as pd

        from ohlora_core.finetune.generate import load_z_csv
        from ohlora_core.io import atomic_write_csv, sha256_file

        if spec.z.kind != "row":
            return self.resolve_z(spec.z, spec.seed)
        path = folder / "z.csv"
        atomic_write_csv(path, pd.DataFrame([list(spec.z.row)]))
        return load_z_csv(path).tolist(), str(path.resolve()), sha256_file(path)

    def export(self, spec: Spec, with_strip: bool) -> dict:
        """The images (1, or 1 + strip) of every method of `spec`, each in `<folder>/<method>/` with its
        request.json, written by `write_request` as `ohlora generate` writes them; the commands that redo them."""
        from ohlora_core.finetune.generate import write_request

        n = 1 + self.strip_size if with_strip else 1
        self.check(spec)  # refuse before a folder is made
        for method in spec.methods:  # loads the models now: a model that cannot be loaded leaves no folder either
            self.request(method, spec, [0.0] * 512)
        try:
            with self._export_lock:
                folder = self._new_export_folder()
            z, z_file, z_sha256 = self._export_z(spec, folder)
        except OSError as exc:
            raise ExportFailed(f"cannot make the export folder in {self.exports}: {exc.strerror or exc}") from None
        done = []
        for method in spec.methods:
            request, loaded, dropped = self.request(method, spec, z, z_file, z_sha256, n)
            out = folder / method
            try:
                paths = write_request(request, loaded.G, loaded.directions, out)
            except OSError as exc:
                raise ExportFailed(f"writing {exc.filename or out} failed: {exc.strerror or exc}") from None
            again = folder / f"again-{method}"
            done.append(
                {
                    "method": method,
                    "folder": str(out),
                    "images": [p.name for p in paths],
                    "request": str(out / "request.json"),
                    "command": request.command(again),
                    "replay": shlex.join(
                        [
                            "ohlora",
                            "generate",
                            "--request",
                            str(out / "request.json"),
                            "--out",
                            str(folder / f"replay-{method}"),
                        ]
                    ),
                    "not_taken": dropped,
                    "smoke": request.is_smoke,
                }
            )
        return {"folder": str(folder), "z_file": z_file, "n": n, "exports": done}


# --- the app ----------------------------------------------------------------------------------------------------


def build_app(studio: Studio, max_body: int = DEFAULT_MAX_BODY):
    """The page and its API (see the module docstring), behind the local-server guard."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    async def coalesced(request: Request, kind: str, what: str, job, **flags: bool) -> Response:
        """Parse and check a request, then run `job(spec, **flags)` in its turn (`Coalescer`); `flags` are the
        request's optional true/false fields with their defaults."""
        body = await read_json_object(request, what=what)
        spec = parse_spec(body, what, set(flags))
        options = {name: boolean(body, name, default) for name, default in flags.items()}
        studio.check(spec)
        ran, result = await run_in_threadpool(studio.coalescer.run, spec.channel(kind), lambda: job(spec, **options))
        return JSONResponse(result if ran else {"superseded": True})

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text())

    async def info(request: Request) -> Response:
        return JSONResponse(studio.info())

    async def render(request: Request) -> Response:
        return await coalesced(request, "render", "render request", studio.render, measure=True)

    async def measure(request: Request) -> Response:
        return await coalesced(request, "measure", "measure request", studio.measure)

    async def strip(request: Request) -> Response:
        return await coalesced(request, "strip", "strip request", studio.strip)

    async def pick(request: Request) -> Response:
        body = await read_json_object(request, what="pick request")
        spec = parse_spec(body, "pick request", {"index"})
        try:
            row = studio.pick(spec, body.get("index"))
        except GenerationRequestError as exc:
            raise StudioRequestError(str(exc)) from None
        return JSONResponse({"z": row, "label": f"strip image {body['index']} of seed {spec.seed}"})

    async def parse_upload(request: Request) -> Response:
        body = await read_json_object(request, what="z upload")
        _check_keys(body, {"text"}, "z upload")
        return JSONResponse({"z": parse_z_text(body.get("text"))})

    async def export(request: Request) -> Response:
        body = await read_json_object(request, what="export request")
        spec = parse_spec(body, "export request", {"strip"})
        with_strip = boolean(body, "strip", False)
        studio.check(spec)
        # an export renders: it takes its turn with the renders, and is never superseded
        done = await run_in_threadpool(studio.coalescer.exclusive, lambda: studio.export(spec, with_strip))
        return JSONResponse(done)

    async def unavailable(request: Request, exc: Unavailable) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=409)

    async def export_failed(request: Request, exc: ExportFailed) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=500)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/render", render, methods=["POST"]),
        Route("/api/measure", measure, methods=["POST"]),
        Route("/api/strip", strip, methods=["POST"]),
        Route("/api/pick", pick, methods=["POST"]),
        Route("/api/z", parse_upload, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
    ]
    handlers = {**json_error_handlers(), Unavailable: unavailable, ExportFailed: export_failed}
    return guard(Starlette(routes=routes, exception_handlers=handlers), max_body=max_body)


def parse_z_text(text) -> list[float]:
    """An uploaded z: a JSON list of 512 numbers, {"z": [...]}, or the original's CSV (header 0..511, one row)."""
    import json

    if not isinstance(text, str) or not text.strip():
        raise StudioRequestError("z upload: text must be the content of a z file (JSON list or CSV)")
    stripped = text.strip()
    if stripped[0] in "[{":
        try:
            value = json.loads(stripped, parse_constant=_no_constant)
        except ValueError as exc:
            raise StudioRequestError(f"uploaded z is not valid JSON: {exc}") from None
        return parse_z_row(value.get("z") if isinstance(value, dict) else value, "uploaded z")
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) < 2:
        raise StudioRequestError("uploaded z: expected a CSV header (0..511) and a row of 512 values, or JSON")
    try:
        row = [float(v) for v in lines[1].split(",")]
    except ValueError as exc:
        raise StudioRequestError(f"uploaded z: line 2 is not 512 numbers ({exc})") from None
    return parse_z_row(row, "uploaded z (line 2)")


def _no_constant(name: str):
    raise StudioRequestError(f"uploaded z holds {name}; every value of z must be a finite number")
