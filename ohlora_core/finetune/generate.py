"""Images from a fine-tuned (label-conditioned) generator for requested property values.

The original's final inference (`run_fine_tuned_generator.py`): the v3 generator, row 0 = a chosen
z (`test_z_vector_0005.csv`), rows 1..19 = that z + 0.3 N(0, 1), every row labelled
`[1.8, 0, 0, 1.6, -1.2, 0, 0]` (eyes 1.8, mouth 1.6, pose -1.2), `trunc_psi=1.0, trunc_layers=0,
randomize_noise=False`, batch 4, JPEG q95 via cv2 (`000000.jpg` ...). The noise rows are seeded here.

A whole request (`request.GenerationRequest`) is answered by `write_request`: its images and `request.json`
are written into a temporary sibling of the output folder, which is renamed into place only when complete,
so a folder never holds a half-written request nor two requests' images.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ohlora_core.finetune.request import (
    MAX_BATCH,
    MAX_IMAGES,
    REQUEST_FILE,
    VERSION_LABELS,
    GenerationRequest,
    GenerationRequestError,
    validate_count,
    validate_noise,
    validate_values,
    validate_z,
)
from ohlora_core.generation import encode_jpeg
from ohlora_core.io import atomic_write_bytes, atomic_write_text
from ohlora_core.seeding import derive_seed

ORIGINAL_VALUES = {"eyes": 1.8, "mouth": 1.6, "pose": -1.2}  # run_fine_tuned_generator.py
EVAL_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)
_UMASK = os.umask(0o022)
os.umask(_UMASK)
DIR_MODE = 0o777 & ~_UMASK  # what a plain mkdir gives; mkdtemp's staging folder is 0700


def load_z_csv(path: str | Path) -> np.ndarray:
    """The first row of a z file as the original wrote it (`pd.DataFrame(z).to_csv`: header 0..511): float64 [512];
    every value finite, else an error naming the file, row and column."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except Exception as exc:
        raise GenerationRequestError(f"cannot read z file {path}: {exc}") from exc
    if table.ndim != 2 or len(table) < 1 or table.shape[1] != 512:
        raise GenerationRequestError(
            f"{path}: expected a z row of 512 values (header 0..511), got shape "
            f"{table.shape if len(table) else (0, table.shape[1])}"
        )
    row = pd.to_numeric(table.iloc[0], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(row))
    if len(bad):
        column, value = table.columns[bad[0]], table.iloc[0, bad[0]]
        raise GenerationRequestError(
            f"{path}: row 1 (line 2), column {column} is {value}; every value of z must be "
            f"a finite number ({len(bad)} of 512 are not)"
        )
    return row


def check_inputs(z0, values: Mapping[str, float], n: int, noise: float, batch_size: int) -> None:
    """The request rules (`request.py`) for a direct call: finite z, values within PROPERTY_RANGE, noise within
    NOISE_RANGE, 1 <= n <= MAX_IMAGES, 1 <= batch_size <= MAX_BATCH."""
    validate_z(np.asarray(z0, np.float64).ravel(), "z")
    validate_values(values)
    validate_noise(noise)
    validate_count(n, "n", 1, MAX_IMAGES)
    validate_count(batch_size, "batch_size", 1, MAX_BATCH)


def latents_around(z0: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """Row 0 = z0, rows 1..n-1 = z0 + noise * N(0, 1) (seeded): float32 [n, 512], as the original."""
    rng = np.random.default_rng(np.random.SeedSequence([derive_seed(seed, "final-noise")]))
    rows = [np.asarray(z0, np.float64)[None]] + [z0 + noise * rng.standard_normal((1, len(z0))) for _ in range(n - 1)]
    return np.concatenate(rows).astype(np.float32)


def label_vector(version: str, values: Mapping[str, float], label_size: int, source: str) -> np.ndarray:
    """The label row of `version` for the requested property values (others 0), checked against the
    generator's label size; a property the version has no label for is an error."""
    names = VERSION_LABELS[version]
    if label_size != len(names):
        raise GenerationRequestError(
            f"{source} takes {label_size} labels, but {version} means {len(names)} "
            f"({', '.join(names)}); pick the version this checkpoint was trained as"
        )
    unknown = [p for p in values if p not in names]
    if unknown:
        raise GenerationRequestError(f"{version} cannot take {', '.join(unknown)}: its labels are {', '.join(names)}")
    return np.array([float(values.get(p, 0.0)) for p in names], np.float32)


def write_images(render, rows: int, out_dir: str | Path, batch_size: int = 4) -> list[Path]:
    """`render(start, stop)` -> images [k, 3, H, W] in [-1, 1] for rows start..stop-1, in batches;
    written as `out_dir/000000.jpg`, ... (q95, as the original's save_image)."""
    from ohlora_core.artifacts import image_name
    from ohlora_core.stylegan import postprocess

    out_dir = Path(out_dir)
    paths = []
    with torch.no_grad():
        for start in range(0, rows, batch_size):
            images = postprocess(render(start, min(start + batch_size, rows))).cpu().numpy()
            for k, rgb in enumerate(images):
                paths.append(out_dir / image_name(start + k))
                atomic_write_bytes(paths[-1], encode_jpeg(rgb))
    return paths


def generate(
    G,
    version: str,
    z0: np.ndarray,
    values: Mapping[str, float],
    out_dir: str | Path,
    *,
    n: int = 20,
    noise: float = 0.3,
    seed: int = 0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    source: str = "the generator",
) -> list[Path]:
    """The original's final inference for any conditional version: n images around z0 with one label row."""
    check_inputs(z0, values, n, noise, batch_size)
    label = torch.from_numpy(label_vector(version, values, G.label_size, source)).to(device)
    z = torch.from_numpy(latents_around(z0, n, noise, seed)).to(device)
    G = G.to(device).eval()
    return write_images(lambda a, b: G(z[a:b], label.expand(b - a, -1), **EVAL_KWARGS)["image"], n, out_dir, batch_size)


def generate_with_directions(
    G,
    directions,
    z0: np.ndarray,
    values: Mapping[str, float],
    out_dir: str | Path,
    *,
    n: int = 20,
    noise: float = 0.3,
    seed: int = 0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    conditional: bool = True,
) -> list[Path]:
    """The same request answered by the pretrained generator: each z's w moved along the fitted
    directions (`ohlora_core.directions`) so the requested properties take their values."""
    from ohlora_core.stylegan import synthesize_w

    check_inputs(z0, values, n, noise, batch_size)
    unknown = [p for p in values if p not in directions.names]
    if unknown:
        raise GenerationRequestError(f"no direction for {', '.join(unknown)}; fitted: {', '.join(directions.names)}")
    G = G.to(device).eval()
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(latents_around(z0, n, noise, seed)).to(device))["w"].double().cpu().numpy()
    moved = torch.from_numpy(directions.move(w, dict(values), conditional).astype(np.float32)).to(device)
    return write_images(lambda a, b: synthesize_w(G, moved[a:b]), n, out_dir, batch_size)


def default_z(seed: int) -> np.ndarray:
    """A z for when no z file is given: N(0, I) from the seed (float64 [512])."""
    return np.random.default_rng(np.random.SeedSequence([derive_seed(seed, "final-z")])).standard_normal(512)


def property_values(pairs: Sequence[tuple[str, float | None]]) -> dict[str, float]:
    """The requested values; unset ones fall back to the original's final-inference values."""
    given = {name: value for name, value in pairs if value is not None}
    return given or dict(ORIGINAL_VALUES)


def check_out_folder(
    out: str | Path, overwrite: bool = False, name: str = "--out", to_overwrite: str = "pass --overwrite"
) -> Path:
    """The absolute output folder if a request can be put there, else GenerationRequestError saying why: it is a
    file, a path through a file, in a folder this process cannot write, or holds files (unless `overwrite`).
    Nothing is created here."""
    out = Path(os.path.abspath(out))
    out = out.resolve() if out.is_symlink() else out  # the folder a link names is the one replaced
    if out.exists():
        if not out.is_dir():
            raise GenerationRequestError(f"{name} {out} is a file, not a folder; name a folder (made if missing)")
        entries = sorted(os.listdir(out))
        if entries and not overwrite:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise GenerationRequestError(
                f"{name} {out} is not empty ({len(entries)} entries: {shown}); "
                f"{to_overwrite} to replace them with this request, or name a new folder"
            )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise GenerationRequestError(f"cannot make {name} {out}: {parent} is a file, not a folder")
    # the images go into a sibling folder first, so the nearest existing ancestor must take new entries
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GenerationRequestError(
            f"cannot write in {parent} (read-only or not permitted), where {name} {out} "
            f"would be made; name another folder"
        )
    return out


def _swap_into_place(stage: Path, out: Path) -> None:
    """Rename `stage` to `out`; an existing `out` is moved aside first and removed once `stage` is in place
    (put back if that rename fails)."""
    if not os.path.lexists(out):
        os.rename(stage, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    try:
        os.rename(stage, out)
    except OSError:
        os.rename(old / out.name, out)
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A new empty folder beside `out`, renamed to `out` (replacing what was there) when the block succeeds and
    removed when it fails: `out` only ever holds one complete request."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield stage
        os.chmod(stage, DIR_MODE)
        _swap_into_place(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already when it was moved into place


def read_directions(path: str | Path):
    """`directions.load_directions` with errors naming the file."""
    from ohlora_core.directions import load_directions

    if not Path(path).is_file():
        raise GenerationRequestError(f"directions file not found: {path}")
    try:
        return load_directions(path)
    except Exception as exc:  # numpy/zip errors carry no file name
        raise GenerationRequestError(f"cannot read directions file {path}: {type(exc).__name__}: {exc}") from exc


DIRECTIONS_HINT = (
    "the directions method moves w of the pretrained generator the directions were fitted with: "
    "pass that one as --generator"
)
FINETUNED_HINT = "pass a stylegan_finetune_<version> generator as --checkpoint, or --method directions"


def load_request_models(request: GenerationRequest, verify: bool = False):
    """(generator, directions or None) for `request`, each checked against what the method needs (256x256,
    z 512, conditional for finetuned and not for directions; label size and directions width fitting), the
    errors naming the file. `verify`: the files must still have their recorded sha256 (a replay)."""
    from ohlora_core.stylegan import smoke_generator
    from ohlora_core.stylegan.checkpoint import check_generator, load_checked_generator

    finetuned = request.method == "finetuned"
    if verify:
        for what, source in (("generator", request.generator), ("directions file", request.directions)):
            if source is not None:
                source.verify(what)
    directions = None if finetuned else read_directions(request.directions.path)
    hint = FINETUNED_HINT if finetuned else DIRECTIONS_HINT
    seed, path = request.generator.smoke_seed, request.generator.path
    if seed is not None:
        G = check_generator(smoke_generator(seed).to(request.device), path, conditional=finetuned, hint=hint)
    else:
        G = load_checked_generator(path, conditional=finetuned, device=request.device, hint=hint)
    if finetuned:
        label_vector(request.version, request.values, G.label_size, path)
    else:
        _check_directions_fit(directions, G, request)
    return G, directions


def _check_directions_fit(directions, G, request: GenerationRequest) -> None:
    unknown = [p for p in request.values if p not in directions.names]
    if unknown:
        raise GenerationRequestError(
            f"{request.directions.path} has no direction for {', '.join(unknown)}; "
            f"fitted: {', '.join(directions.names)}"
        )
    if directions.normals.shape[1] != G.w_space_dim:
        raise GenerationRequestError(
            f"{request.directions.path} was fitted in a w space of "
            f"{directions.normals.shape[1]} values, but {request.generator.path} has "
            f"{G.w_space_dim}; pass the generator the directions were fitted with"
        )


def write_request(request: GenerationRequest, G, directions, out: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Answer `request` with its loaded models (`load_request_models`) in folder `out`: the images and
    `request.json`, made in a staging folder and renamed into place complete. Returns the image paths."""
    out = check_out_folder(out, overwrite)
    z0 = np.asarray(request.z, np.float64)
    common = dict(n=request.n, noise=request.noise, seed=request.seed, batch_size=request.batch, device=request.device)
    with staged_folder(out) as stage:
        if request.method == "directions":
            paths = generate_with_directions(G, directions, z0, request.values, stage, **common)
        else:
            paths = generate(G, request.version, z0, request.values, stage, source=request.generator.path, **common)
        atomic_write_text(stage / REQUEST_FILE, request.to_json(out))
    return [out / p.name for p in paths]
