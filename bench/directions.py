"""Benchmark: fitting the 7 property directions in w space for the filtered set (4,703 x 512).

OURS: `ohlora_core.directions.fit_directions` (svm: LinearSVC on the top/bottom quarter; ridge).
REFERENCE: InterFaceGAN's `train_boundary` as written (genforce/interfacegan utils/manipulator.py):
`sklearn.svm.SVC(kernel='linear')` on the top/bottom `chosen_num_or_ratio` of the samples, a 70/30
split, normal = coef / ||coef||. Same synthetic data (w ~ N(0, I), scores = planted unit directions +
noise); the found normals' cosine to the planted ones is printed, and ours must be at least as good
as InterFaceGAN's on the same data (within 0.02).

    python bench/directions.py [--n 4703] [--dim 512] [--noise 0.5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ohlora_core.directions import fit_directions  # noqa: E402
from ohlora_core.scores.common import SCORE_NAMES  # noqa: E402


def interfacegan_boundary(w: np.ndarray, score: np.ndarray, ratio: float = 0.25, split: float = 0.7) -> np.ndarray:
    """InterFaceGAN's train_boundary, re-created: linear-kernel SVC on the extremes."""
    from sklearn import svm

    order = np.argsort(score)[::-1]
    num = int(len(score) * ratio)
    pos, neg = w[order[:num]], w[order[-num:]]
    k = int(num * split)
    x = np.concatenate([pos[:k], neg[:k]])
    y = np.concatenate([np.ones(k), np.zeros(k)])
    clf = svm.SVC(kernel="linear").fit(x, y)
    n = clf.coef_.reshape(-1)
    return n / np.linalg.norm(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4703)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--noise", type=float, default=0.5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w = rng.normal(size=(args.n, args.dim))
    planted = rng.normal(size=(len(SCORE_NAMES), args.dim))
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    scores = w @ planted.T + rng.normal(scale=args.noise, size=(args.n, len(SCORE_NAMES)))

    rows = []
    for method in ("svm", "ridge"):
        t0 = time.perf_counter()
        d = fit_directions(w, scores, SCORE_NAMES, method=method)
        rows.append((f"ours ({method})", time.perf_counter() - t0, (d.normals * planted).sum(axis=1)))
    t0 = time.perf_counter()
    ref = np.stack([interfacegan_boundary(w, scores[:, k]) for k in range(len(SCORE_NAMES))])
    rows.append(("InterFaceGAN train_boundary (SVC linear)", time.perf_counter() - t0, (ref * planted).sum(axis=1)))
    print(f"{len(SCORE_NAMES)} directions from {args.n} x {args.dim} w (noise {args.noise})")
    for name, seconds, cos in rows:
        print(f"{name:<42} {seconds:8.2f} s   cos to planted: min {cos.min():.3f} mean {cos.mean():.3f}")
    assert rows[0][2].mean() >= rows[2][2].mean() - 0.02 and rows[1][2].mean() >= rows[2][2].mean() - 0.02
    print(f"ratio (InterFaceGAN / ours svm): {rows[2][1] / rows[0][1]:.1f}x")


if __name__ == "__main__":
    main()
