"""The original's controllability test (StyleGAN-FineTune-v3's per-epoch `test_create_output_images`).

For one z, 50 images are generated with labels `[eyes, 0, 0, mouth, pose, 0, 0]` over
mouth {-1.2, -0.6, 0, 0.8, 1.6} x eyes {-1.8, 1.8} x pose {-1.2, 0, 1.2, 2.4, 3.6} (that loop order:
mouth outer, pose inner), the property-score CNN scores them, and the z passes iff the Pearson
correlation between intended and measured reaches eyes .77, mouth .85, pose .82 **and** the mean
absolute error stays within eyes 1.0, mouth 0.6, pose 1.4.

Arithmetic as the original: each CNN output is rounded with Python's `round(np.float32, 4)` (a
float32), correlations are `np.corrcoef` in float64, MSE and MAE are Python sums over float64
differences (numpy 1.x, the original's environment). A constant output gives a NaN correlation,
which fails.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

EYES = (-1.8, 1.8)
MOUTH = (-1.2, -0.6, 0.0, 0.8, 1.6)
POSE = (-1.2, 0.0, 1.2, 2.4, 3.6)
PROPERTIES = ("eyes", "mouth", "pose")
INDEX = {"eyes": 0, "mouth": 3, "pose": 4}  # positions in the 7-score label vector
# (min correlation, max MAE) per property
THRESHOLDS = {"eyes": (0.77, 1.0), "mouth": (0.85, 0.6), "pose": (0.82, 1.4)}


def label_combinations() -> np.ndarray:
    """The 50 intended (eyes, mouth, pose) rows in the original's loop order: float64 [50, 3]."""
    return np.array([(e, m, p) for m, e, p in itertools.product(MOUTH, EYES, POSE)], dtype=np.float64)


def label_rows(
    label_names: tuple[str, ...] = (
        "eyes",
        "hair_color",
        "hair_length",
        "mouth",
        "pose",
        "background_mean",
        "background_std",
    ),
    dtype: type = np.float32,
) -> np.ndarray:
    """The 50 combinations as label vectors of a version with `label_names` (others 0): [50, L]."""
    combos = label_combinations()
    out = np.zeros((len(combos), len(label_names)), dtype)
    for k, name in enumerate(PROPERTIES):
        if name not in label_names:
            raise ValueError(f"the protocol needs a {name!r} label; this version has {label_names}")
        out[:, label_names.index(name)] = combos[:, k]
    return out


@dataclass(frozen=True)
class ZResult:
    corr: dict[str, float]
    mse: dict[str, float]
    mae: dict[str, float]

    @property
    def passed_corr(self) -> bool:
        return all(self.corr[p] >= THRESHOLDS[p][0] for p in PROPERTIES)  # NaN compares False: fails

    @property
    def passed_mae(self) -> bool:
        return all(self.mae[p] <= THRESHOLDS[p][1] for p in PROPERTIES)

    @property
    def passed(self) -> bool:
        return self.passed_corr and self.passed_mae


def score_z(measured: np.ndarray, intended: np.ndarray | None = None) -> ZResult:
    """One z's result from the CNN's outputs for the combinations: [n, 3] (eyes, mouth, pose) or
    [n, 7] (the full score vector); `intended` [n, 3] defaults to the 50 of `label_combinations`."""
    intended = label_combinations() if intended is None else np.asarray(intended, np.float64)
    measured = np.asarray(measured)
    if measured.ndim == 2 and measured.shape[1] == 7:
        measured = measured[:, [INDEX[p] for p in PROPERTIES]]
    if measured.shape != intended.shape or intended.shape[1:] != (3,):
        raise ValueError(
            f"expected the CNN outputs for the {len(intended)} combinations, [{len(intended)}, 3] or "
            f"[{len(intended)}, 7]; got {measured.shape}"
        )
    corr, mse, mae = {}, {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, p in enumerate(PROPERTIES):
            scores = [round(np.float32(v), 4) for v in measured[:, k]]  # float32 values, as the original's list
            labels = intended[:, k].tolist()
            corr[p] = float(np.corrcoef(labels, scores)[0][1])
            diffs = [float(a) - float(b) for a, b in zip(labels, scores)]
            mse[p] = sum(d**2 for d in diffs) / len(diffs)
            mae[p] = sum(abs(d) for d in diffs) / len(diffs)
    return ZResult(corr, mse, mae)
