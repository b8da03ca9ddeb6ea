"""`ohlora generate`: images from a fine-tuned generator (or the latent directions) for requested values.

    ohlora generate --version v3 --z-csv FILE --eyes 1.8 --mouth 1.6 --pose -1.2 -n 20 --seed 0 --out DIR
    ohlora generate --method directions --eyes 1.8 --mouth 1.6 --pose -1.2 --out DIR
    ohlora generate --request DIR/request.json --out DIR2      # the same images again

Without `--checkpoint` the generator of the materialized `stylegan_finetune_<version>` asset is used
(`<storage>/artifacts/<mode>/stylegan_finetune_<version>/current/`; storage from `--storage`,
`OHLORA_STORAGE` or the repository's `storage/`). `--method directions` moves the pretrained
generator's w along the `latent_directions` asset's directions instead (no fine-tuned generator).

Every flag, the z file, the device and the output folder are checked before a model is loaded. `--out` must
be missing or empty unless `--overwrite`; the images and `request.json` (the request record,
`ohlora_core.finetune.request`) appear there together, complete. Exit status: 0 done, 2 a request that cannot
be answered as given (flag, value, file, checkpoint, folder), 1 a failure while writing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ohlora_core.cli.common import UsageError, add_storage_arguments, layout, require_current
from ohlora_core.finetune.request import (
    MAX_BATCH,
    MAX_IMAGES,
    MAX_SEED,
    NOISE_RANGE,
    PROPERTIES,
    PROPERTY_RANGE,
    REQUEST_FILE,
    GenerationRequest,
    GenerationRequestError,
    Source,
    flag,
    validate_count,
)

DEFAULTS = {
    "method": "finetuned",
    "version": "v3",
    "n": 20,
    "noise": 0.3,
    "seed": 0,
    "batch": 4,
    "device": "auto",
    "mode": "auto",
}
REPLAY_FLAGS = {"request", "out", "overwrite", "device"}  # what may go with --request
# every flag's destination (all default to None or False, so a given one shows), for the --request check
ARG_DESTS = {
    "method",
    "version",
    "directions",
    "generator",
    "checkpoint",
    "z_csv",
    "n",
    "noise",
    "seed",
    *PROPERTIES,
    "out",
    "overwrite",
    "request",
    "batch",
    "device",
    "storage",
    "mode",
}
SMOKE_NOTICE = "smoke mode: random weights — these images are noise, not faces"


def _usage_errors() -> tuple[type[Exception], ...]:
    from ohlora_core.device import DeviceError
    from ohlora_core.io import CheckpointError

    return GenerationRequestError, CheckpointError, DeviceError, UsageError


def _device(device: str, setting: str = "--device") -> str:
    from ohlora_core.device import check_device, resolve_device

    check_device(device, setting)
    return resolve_device(device)


def _z(args) -> tuple[list[float], str | None, str | None]:
    """(z row, its file, the file's sha256): from --z-csv, else drawn from --seed."""
    from ohlora_core.finetune.generate import default_z, load_z_csv

    if not args.z_csv:
        return default_z(args.seed).tolist(), None, None
    path = Path(args.z_csv).resolve()
    z = load_z_csv(path)
    return z.tolist(), str(path), Source.of_file(path, "z file").sha256


def _asset_file(files_cls, path_of, where, instead: str) -> Source:
    """The file `path_of(files)` of an asset's current outputs, recorded with the asset's data version."""
    from ohlora_core.store import current_digest

    files = require_current(files_cls, where, instead)
    return Source.of_file(
        path_of(files),
        f"{files_cls.NAME} file",
        asset=files_cls.NAME,
        mode=where.mode,
        data_version=current_digest(where.artifact_dir(files_cls.NAME)),
    )


def _latent_w_generator(where) -> Source:
    """The pretrained generator the latent_w asset recorded (a file, or the smoke stand-in)."""
    import json

    from ohlora_core.artifacts import LatentW
    from ohlora_core.store import current_digest

    files = require_current(LatentW, where, "--generator FILE")
    weights = json.loads((files.dir / "recipe.json").read_text())["weights"]
    asset = dict(asset=LatentW.NAME, mode=where.mode, data_version=current_digest(where.artifact_dir(LatentW.NAME)))
    if weights.startswith("smoke_generator(seed="):
        return Source(weights, None, **asset)
    return Source.of_file(weights.split(" (sha256 ")[0], "generator named by latent_w", **asset)


def _sources(args) -> dict:
    """generator, directions and (when an asset provided one) storage of a flag-built request."""
    from ohlora_core.artifacts import FINETUNES, LatentDirections

    where = layout(args.storage, args.mode)
    if args.method == "finetuned":
        generator = (
            Source.of_file(args.checkpoint, "checkpoint")
            if args.checkpoint
            else _asset_file(FINETUNES[args.version], lambda f: f.generator, where, "--checkpoint FILE")
        )
        directions = None
    else:
        directions = (
            Source.of_file(args.directions, "directions file")
            if args.directions
            else _asset_file(LatentDirections, lambda f: f.directions, where, "--directions FILE")
        )
        generator = Source.of_file(args.generator, "generator") if args.generator else _latent_w_generator(where)
    from_assets = any(s is not None and s.asset for s in (generator, directions))
    return dict(generator=generator, directions=directions, storage=str(where.root) if from_assets else None)


def _from_flags(args) -> GenerationRequest:
    """The request the flags describe, every value checked (numbers, device, z, folder) before any model."""
    from ohlora_core.finetune.generate import check_out_folder, property_values

    for name, value in DEFAULTS.items():
        setattr(args, name, value if getattr(args, name) is None else getattr(args, name))
    device = _device(args.device)
    validate_count(args.seed, "--seed", 0, MAX_SEED)  # before z is drawn from it
    z, z_file, z_sha256 = _z(args)
    values = property_values([(p, getattr(args, p)) for p in PROPERTIES])
    draft = GenerationRequest(
        args.method,
        values,
        z,
        Source("", None),
        n=args.n,
        noise=args.noise,
        seed=args.seed,
        batch=args.batch,
        device=device,
        version=args.version,
        z_file=z_file,
        z_sha256=z_sha256,
    ).validate(flag)
    check_out_folder(args.out, args.overwrite)
    return replace(draft, **_sources(args))


def _from_record(args) -> GenerationRequest:
    """The request recorded in --request FILE (only --out, --overwrite and --device may go with it)."""
    from ohlora_core.finetune.generate import check_out_folder

    extra = [
        flag(k) for k, v in vars(args).items() if k in ARG_DESTS - REPLAY_FLAGS and v is not None and v is not False
    ]
    if extra:
        raise UsageError(
            f"--request replays a recorded request; only --out, --overwrite and --device may go with "
            f"it (got {', '.join(extra)})"
        )
    path = Path(args.request)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read request file {path}: {exc}") from None
    request = GenerationRequest.from_json(text, str(path))
    request.device = _device(args.device or request.device, "--device" if args.device else f"{path}: device")
    check_out_folder(args.out, args.overwrite)
    return request


def _report(request: GenerationRequest, paths: list[Path], out: Path) -> None:
    if request.is_smoke:
        print(SMOKE_NOTICE)
    what = (
        f"{request.version}, {request.generator.path}"
        if request.method == "finetuned"
        else f"directions {request.directions.path} on {request.generator.path}"
    )
    values = ", ".join(f"{k} {v:g}" for k, v in request.values.items())
    count = f"{len(paths)} image" + ("" if len(paths) == 1 else "s")
    print(f"wrote {count} to {out} ({what}; {values})")
    print(f"request: {out / REQUEST_FILE} (again: ohlora generate --request {out / REQUEST_FILE} --out DIR)")


def _fail(message: str, code: int) -> int:
    print(f"ohlora generate: {message}", file=sys.stderr)
    return code


def generate_command(args: argparse.Namespace) -> int:
    from ohlora_core.device import is_out_of_memory
    from ohlora_core.finetune.generate import load_request_models, write_request

    try:
        request = _from_record(args) if args.request else _from_flags(args)
        G, directions = load_request_models(request, verify=bool(args.request))
    except _usage_errors() as exc:
        return _fail(str(exc), 2)
    except OSError as exc:  # an input that exists but cannot be read
        return _fail(f"cannot read {exc.filename or 'an input'}: {exc.strerror or exc}", 2)
    try:
        # write_request checks --out again: the folder may have changed while the model loaded
        paths = write_request(request, G, directions, args.out, overwrite=args.overwrite)
    except _usage_errors() as exc:
        return _fail(str(exc), 2)
    except OSError as exc:
        return _fail(f"writing {exc.filename or args.out} failed: {exc.strerror or exc}; {args.out} is as it was", 1)
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        return _fail(f"out of GPU memory at --batch {request.batch}; pass a smaller --batch", 1)
    except KeyboardInterrupt:
        return _fail(f"interrupted; {args.out} is as it was", 130)
    _report(request, paths, paths[0].parent)
    return 0


def _range(low: float, high: float) -> str:
    return f"[{low:g}, {high:g}]"


def add_parser(sub) -> None:
    gen = sub.add_parser(
        "generate",
        help="images from a fine-tuned generator for requested property values",
        description="n images around one z (row 0 = z, rows 1.. = z + noise * N(0, 1)), all with "
        "the requested property values (normalised scores; others 0). With no "
        "value given: eyes 1.8, mouth 1.6, pose -1.2, as the original's final inference. "
        "The images and request.json (the request, with the command that repeats it) "
        "appear in --out together; exit status 2 for a request that cannot be "
        "answered as given, 1 for a failure while writing.",
    )
    gen.add_argument(
        "--method",
        choices=("finetuned", "directions"),
        help="finetuned (default): a label-conditioned generator (--version); directions: the "
        "pretrained generator with w moved along the latent_directions asset's directions",
    )
    gen.add_argument(
        "--version",
        choices=("v1", "v2", "v3", "v4"),
        help="which fine-tuned generator (default v3, the version the original adopted)",
    )
    gen.add_argument("--directions", help="directions file (default: the latent_directions asset's)")
    gen.add_argument(
        "--generator",
        help="pretrained (unconditional) generator for --method directions (default: the one latent_w used)",
    )
    gen.add_argument(
        "--checkpoint", help="a fine-tuned 256x256 generator file (the original's bare state_dict or a genforce layout)"
    )
    gen.add_argument(
        "--z-csv",
        help="z file, first row used (the original's test_z_vector_*.csv, e.g. in "
        "stylegan_finetune_v3's folder); every value finite; default: from --seed",
    )
    gen.add_argument("-n", type=int, help=f"images, 1 to {MAX_IMAGES:,} (default 20)")
    gen.add_argument(
        "--noise",
        type=float,
        help=f"std of the noise added to z for images 1.., in {_range(*NOISE_RANGE)} (default 0.3)",
    )
    gen.add_argument("--seed", type=int, help="seed of the noise (and of z without --z-csv), >= 0 (default 0)")
    for p in PROPERTIES:
        gen.add_argument(
            flag(p),
            dest=p,
            type=float,
            metavar="VALUE",
            help=f"{p}: a normalised score (z-score in {_range(*PROPERTY_RANGE)})",
        )
    # --out is checked after parsing (in `_run`), so that an unknown flag is reported before a missing --out
    gen.add_argument(
        "--out",
        help="output folder, required (000000.jpg, ..., request.json); must be missing or empty unless --overwrite",
    )
    gen.add_argument(
        "--overwrite", action="store_true", help="replace what --out holds: the folder ends as a fresh run leaves it"
    )
    gen.add_argument(
        "--request",
        metavar="FILE",
        help="repeat the request recorded in FILE (a request.json) into --out: the same images (byte for byte on CPU)",
    )
    gen.add_argument("--batch", type=int, help=f"batch size, 1 to {MAX_BATCH} (default 4, as the original)")
    gen.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    add_storage_arguments(gen, mode_default=None)  # None: a --request names its own
    gen.set_defaults(func=lambda args: _run(gen, args))


def _run(gen: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.out:
        gen.error("the following arguments are required: --out")
    return generate_command(args)
