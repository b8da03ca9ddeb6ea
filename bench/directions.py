"""Benchmark: fitting the 7 property directions in w space for the filtered set (4,703 x 512).

OURS: `ohlora_core.directions.fit_directions` (svm: LinearSVC on the top/bottom quarter; ridge).
REFERENCE: InterFaceGAN's `train_boundary` as written (genforce/interfacegan utils/manipulator.py):
`sklearn.svm.SVC(kernel='linear')` on the top/bottom `chosen_num_or_ratio` of the samples, a 70/30
split, normal = coef / ||coef||. Same synthetic data (w ~ N(0, I), scores = planted unit directions +
noise); the found normals' cosine to the planted ones is printed, and ours must be at least as good
as InterFaceGAN's on the same data (within 0.02). Timed interleaved (`bench/interleave.py`: one
untimed warm-up pair, then --pairs timed pairs A B A B ...; median, min..max, ratio per pair): ours
svm vs InterFaceGAN, then ours ridge vs InterFaceGAN. Every call of each side must return 7 unit
normals, the same on every call (both sides did the same work, deterministically).

    python bench/directions.py [--n 4703] [--dim 512] [--noise 0.5] [--pairs 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from interleave import interleave  # noqa: E402

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
    ap.add_argument("--pairs", type=int, default=3, help="timed pairs (ours, InterFaceGAN) per method")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w = rng.normal(size=(args.n, args.dim))
    planted = rng.normal(size=(len(SCORE_NAMES), args.dim))
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    scores = w @ planted.T + rng.normal(scale=args.noise, size=(args.n, len(SCORE_NAMES)))

    found: dict[str, list[np.ndarray]] = {"svm": [], "ridge": [], "InterFaceGAN": []}

    def ours(method: str):
        return lambda: found[method].append(fit_directions(w, scores, SCORE_NAMES, method=method).normals)

    def interfacegan() -> None:
        found["InterFaceGAN"].append(
            np.stack([interfacegan_boundary(w, scores[:, k]) for k in range(len(SCORE_NAMES))])
        )

    timings = {
        m: interleave(
            ours(m), interfacegan, args.pairs, a_name=f"ours ({m})", b_name="InterFaceGAN train_boundary (SVC linear)"
        )
        for m in ("svm", "ridge")
    }
    for name, normals in found.items():  # the same work on every call: 7 unit normals, deterministic
        assert all(
            x.shape == (len(SCORE_NAMES), args.dim)
            and np.allclose(np.linalg.norm(x, axis=1), 1)
            and np.array_equal(x, normals[0])
            for x in normals
        ), name
    cos = {name: (normals[0] * planted).sum(axis=1) for name, normals in found.items()}
    print(
        f"{len(SCORE_NAMES)} directions from {args.n} x {args.dim} w (noise {args.noise}); "
        f"1 warm-up pair + {args.pairs} interleaved pairs"
    )
    for t in timings.values():
        print(t.report())
    for name, c in cos.items():
        print(f"{name:<14} cos to planted: min {c.min():.3f} mean {c.mean():.3f}")
    ref = cos["InterFaceGAN"].mean()
    assert cos["svm"].mean() >= ref - 0.02 and cos["ridge"].mean() >= ref - 0.02


if __name__ == "__main__":
    main()
