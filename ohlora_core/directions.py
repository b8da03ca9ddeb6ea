"""Property control without retraining: linear directions in StyleGAN's w space (InterFaceGAN).

For each property, a unit normal `n` in w space is fitted from (w of each filtered image, its score):

* `svm` (InterFaceGAN, `train_boundary`): images are sorted by score, the top and bottom `quantile`
  become the positive and negative classes, a linear-kernel SVC separates them; `n` = its normal.
* `ridge`: ridge regression of the score on w; `n` = its coefficient vector, normalised.

Either way the score is then calibrated along `n` from the data: `score ~ scale * (n . w) + intercept`
(least squares), so that moving w by `t n` changes the predicted score by `scale * t`. Held-out
figures (70/30 split, seeded): SVM accuracy on the quantile classes and, for both, the correlation
between the calibrated prediction and the score.

Conditional moves (InterFaceGAN's conditional manipulation): `move` takes the least-norm step in w
that puts every requested property's linear prediction at its value and leaves the other
properties' predictions unchanged — the requested normals with the others' components projected
out, solved for all requested properties at once (exact for the linear predictors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ohlora_core.scores.common import SCORE_NAMES
from ohlora_core.seeding import derive_seed


@dataclass
class Directions:
    """Fitted directions for `names`: normals [P, W] (unit), scale / intercept [P] (score calibration)."""

    names: tuple[str, ...]
    normals: np.ndarray
    scale: np.ndarray
    intercept: np.ndarray
    method: str
    metrics: list[dict]

    def predict(self, w: np.ndarray) -> np.ndarray:
        """Calibrated linear prediction of every property's score: [N, P]."""
        return np.asarray(w, np.float64) @ self.normals.T * self.scale + self.intercept

    def rank(self) -> int:
        """Rank of the normals; below len(names) when some property's direction lies in the span of others
        (for instance when fitted from fewer images than properties) and cannot be moved alone."""
        return int(np.linalg.matrix_rank(self.normals))

    def move(self, w: np.ndarray, targets: Mapping[str, float], conditional: bool = True) -> np.ndarray:
        """w [N, W] moved so that the calibrated prediction of every requested property equals its target;
        with `conditional`, the other properties' predictions stay where they were.

        The step is the smallest one meeting all those linear constraints (least norm), which is InterFaceGAN's
        conditional manipulation: it lies along each requested normal with the kept normals projected out.
        When the constraints conflict (rank() below the number of properties) it is the least-squares
        compromise instead of an error, so a small smoke fit still yields a report."""
        w = np.asarray(w, np.float64)
        names = list(targets)
        unknown = [p for p in names if p not in self.names]
        if unknown:
            raise ValueError(f"no direction for {unknown}; fitted: {list(self.names)}")
        keep = [p for p in self.names if p not in names] if conditional else []
        rows = [self.names.index(p) for p in names + keep]
        effect = self.normals[rows] * self.scale[rows, None]  # [K, W]: d prediction / d w
        want = np.zeros((len(w), len(rows)))
        want[:, : len(names)] = (
            np.array([targets[p] for p in names], np.float64)[None] - self.predict(w)[:, rows[: len(names)]]
        )
        step, *_ = np.linalg.lstsq(effect, want.T, rcond=None)  # least-norm: [W, N]
        return w + step.T


def _split(n: int, seed: int, holdout: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(np.random.SeedSequence([derive_seed(seed, "directions-split")])).permutation(n)
    k = int(round(n * (1 - holdout)))
    return np.sort(perm[:k]), np.sort(perm[k:])


def _calibrate(proj: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, icpt = np.polyfit(proj, y, 1)
    return float(slope), float(icpt)


def fit_directions(
    w: np.ndarray,
    scores: np.ndarray,
    names: Sequence[str] = SCORE_NAMES,
    method: str = "svm",
    quantile: float = 0.25,
    ridge_alpha: float = 1.0,
    seed: int = 0,
) -> Directions:
    """Fit one direction per score column. w [N, W], scores [N, P] (NaN rows of a column are left out
    for that column)."""
    from sklearn.linear_model import Ridge
    from sklearn.svm import SVC

    if method not in ("svm", "ridge"):
        raise ValueError(f"method must be 'svm' or 'ridge', got {method!r}")
    w = np.asarray(w, np.float64)
    scores = np.asarray(scores, np.float64)
    if scores.shape != (len(w), len(names)):
        raise ValueError(f"expected scores [{len(w)}, {len(names)}], got {scores.shape}")
    normals, scale, intercept, metrics = [], [], [], []
    mean = w.mean(axis=0)
    for k, name in enumerate(names):
        ok = np.isfinite(scores[:, k])
        x, y = w[ok] - mean, scores[ok, k]
        train, test = _split(len(y), seed)
        row = {"property": name, "images": int(ok.sum())}
        if method == "svm":
            lo, hi = np.quantile(y[train], [quantile, 1 - quantile])
            pick = train[(y[train] <= lo) | (y[train] >= hi)]
            svm = SVC(kernel="linear")  # as InterFaceGAN's train_boundary
            svm.fit(x[pick], (y[pick] >= hi).astype(int))
            n = svm.coef_[0]
            held = test[(y[test] <= lo) | (y[test] >= hi)]
            row["heldout_accuracy"] = (
                float(svm.score(x[held], (y[held] >= hi).astype(int))) if len(held) else float("nan")
            )
        else:
            n = Ridge(alpha=ridge_alpha).fit(x[train], y[train]).coef_
        norm = np.linalg.norm(n)
        n = n / norm if norm > 0 else n
        slope, icpt = _calibrate(x[train] @ n, y[train])
        pred = slope * (x[test] @ n) + icpt
        with np.errstate(invalid="ignore", divide="ignore"):
            row["heldout_corr"] = float(np.corrcoef(pred, y[test])[0, 1]) if len(test) > 1 else float("nan")
        row["scale"] = slope
        normals.append(n)
        scale.append(slope)
        intercept.append(icpt - slope * float(mean @ n))  # so that predict() takes raw w
        metrics.append(row)
    return Directions(tuple(names), np.stack(normals), np.array(scale), np.array(intercept), method, metrics)


def save_directions(path, d: Directions) -> None:
    import io

    from ohlora_core.io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf, names=np.array(d.names), normals=d.normals, scale=d.scale, intercept=d.intercept, method=np.array(d.method)
    )
    atomic_write_bytes(path, buf.getvalue())


def load_directions(path) -> Directions:
    data = np.load(path, allow_pickle=False)
    return Directions(
        tuple(str(n) for n in data["names"]), data["normals"], data["scale"], data["intercept"], str(data["method"]), []
    )
