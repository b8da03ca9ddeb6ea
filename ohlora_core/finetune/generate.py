"""Images from a fine-tuned (label-conditioned) generator for requested property values.

The original's final inference (`run_fine_tuned_generator.py`): the v3 generator, row 0 = a chosen
z (`test_z_vector_0005.csv`), rows 1..19 = that z + 0.3 N(0, 1), every row labelled
`[1.8, 0, 0, 1.6, -1.2, 0, 0]` (eyes 1.8, mouth 1.6, pose -1.2), `trunc_psi=1.0, trunc_layers=0,
randomize_noise=False`, batch 4, JPEG q95 via cv2 (`000000.jpg` ...). The noise rows are seeded here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ohlora_core.generation import encode_jpeg
from ohlora_core.io import atomic_write_bytes
from ohlora_core.scores.common import SCORE_NAMES
from ohlora_core.seeding import derive_seed

ORIGINAL_VALUES = {"eyes": 1.8, "mouth": 1.6, "pose": -1.2}  # run_fine_tuned_generator.py
EVAL_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)
# The label names of each version, in label-vector order (what its checkpoint's label_weight rows mean).
VERSION_LABELS = {"v1": SCORE_NAMES, "v2": SCORE_NAMES, "v3": SCORE_NAMES, "v4": ("eyes", "mouth", "pose")}


class GenerationRequestError(ValueError):
    """A property, z or checkpoint that the chosen generator cannot take."""


def load_z_csv(path: str | Path) -> np.ndarray:
    """The first row of a z file as the original wrote it (`pd.DataFrame(z).to_csv`: header 0..511): float64 [512]."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except Exception as exc:
        raise GenerationRequestError(f"cannot read z file {path}: {exc}") from exc
    values = table.to_numpy(dtype=np.float64) if len(table) else np.zeros((0, 0))
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] != 512:
        raise GenerationRequestError(f"{path}: expected a z row of 512 values (header 0..511), got shape {values.shape}")
    return values[0]


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
        raise GenerationRequestError(f"{source} takes {label_size} labels, but {version} means {len(names)} "
                                     f"({', '.join(names)}); pick the version this checkpoint was trained as")
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


def generate(G, version: str, z0: np.ndarray, values: Mapping[str, float], out_dir: str | Path, *, n: int = 20,
             noise: float = 0.3, seed: int = 0, batch_size: int = 4, device: str | torch.device = "cpu",
             source: str = "the generator") -> list[Path]:
    """The original's final inference for any conditional version: n images around z0 with one label row."""
    if n < 1:
        raise GenerationRequestError(f"n must be >= 1, got {n}")
    label = torch.from_numpy(label_vector(version, values, G.label_size, source)).to(device)
    z = torch.from_numpy(latents_around(z0, n, noise, seed)).to(device)
    G = G.to(device).eval()
    return write_images(lambda a, b: G(z[a:b], label.expand(b - a, -1), **EVAL_KWARGS)["image"], n, out_dir, batch_size)


def generate_with_directions(G, directions, z0: np.ndarray, values: Mapping[str, float], out_dir: str | Path, *,
                             n: int = 20, noise: float = 0.3, seed: int = 0, batch_size: int = 4,
                             device: str | torch.device = "cpu", conditional: bool = True) -> list[Path]:
    """The same request answered by the pretrained generator: each z's w moved along the fitted
    directions (`ohlora_core.directions`) so the requested properties take their values."""
    from ohlora_core.stylegan import synthesize_w

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
