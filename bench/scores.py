"""Property scores: ours (vectorised) vs the original per-pixel Python functions.

    python bench/scores.py --ref-dir PATH [--n 200] [--seed 0] [--pairs 3] [--device cpu]

The reference flow is the original `compute_property_scores.py` / `compute_property_scores_v2.py`
(WannaBeSuperteur/AI_Projects, 2025_04_08_OhLoRA/stylegan_and_segmentation), copied into the
folder --ref-dir names (default .ref/original), called per image exactly as their
`compute_all_image_scores` does, on the same in-memory maps and images. Both flows see arrays
already decoded (file reading excluded). The two are timed interleaved (`bench/interleave.py`: one
untimed warm-up pair, then --pairs timed pairs A B A B ...; median, min..max, ratio per pair), and
every timed call of each side must give values identical to the other's (NaN where the original
gives None/NaN/crash, flags checked too): both did the same work. The scores are numpy code;
--device is accepted for a uniform bench interface and only `cpu` makes sense.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from interleave import interleave  # noqa: E402

from ohlora_core.scores import ScoreFlag, compute_scores_v1, compute_scores_v2  # noqa: E402

S = 224


def _ellipse(cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    """Boolean (224, 224) mask of a filled, rotated ellipse."""
    y, x = np.mgrid[0:S, 0:S].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def synthetic_face(rng: np.random.Generator, eye_scale: float = 1.0) -> np.ndarray:
    """A plausible 224x224 parsing map drawn from ellipses (classes as FaceXFormer's 11)."""
    p = np.zeros((S, S), np.uint8)
    tilt = rng.uniform(-0.25, 0.25)
    cx = 112 + rng.uniform(-8, 8)
    hair_len = rng.uniform(0, 1)
    p[_ellipse(100 + rng.uniform(-5, 5), cx, 95, 80 + rng.uniform(-8, 8))] = 10
    if hair_len > 0.5:  # long hair down to (or past) the bottom edge
        bottom = 150 + hair_len * 120
        for side in (-1, 1):
            p[_ellipse(bottom / 2 + 40, cx + side * 62, bottom / 2, 22 + rng.uniform(-6, 8))] = 10
    p[_ellipse(125, cx, 78, 58, tilt)] = 1
    ex = 28 + rng.uniform(-3, 3)
    ey = 92 + rng.uniform(-6, 6)
    for side, cls, brow in ((-1, 4, 2), (1, 5, 3)):
        ox, oy = side * ex * np.cos(tilt), side * ex * np.sin(tilt)
        p[_ellipse(ey + oy - 14, cx + ox, 3.5, 16, tilt + rng.uniform(-0.1, 0.1))] = brow
        rx = eye_scale * rng.uniform(12, 18)
        ry = eye_scale * rng.uniform(2.5, 8)
        p[_ellipse(ey + oy, cx + ox, ry, rx, tilt + rng.uniform(-0.15, 0.15))] = cls
    p[_ellipse(122, cx + rng.uniform(-3, 3), rng.uniform(14, 20), rng.uniform(5, 9), tilt + rng.uniform(-0.4, 0.4))] = 6
    my = 160 + rng.uniform(-4, 4)
    open_ = rng.uniform(0, 12) if rng.uniform() < 0.6 else 0.0
    p[_ellipse(my - 4 - open_ / 2, cx, 4, 20, tilt)] = 7
    p[_ellipse(my + 4 + open_ / 2, cx, 5, 19, tilt)] = 9
    if open_ > 0:
        p[_ellipse(my, cx, open_ / 2 + 1, 16, tilt)] = 8
    return p


def synthetic_image(rng: np.random.Generator, block: int = 4) -> np.ndarray:
    """A 224x224x3 uint8 image: random blocks of `block` px over a smooth gradient."""
    n = S // block
    base = rng.integers(0, 256, size=(n, n, 3)).astype(np.float64)
    grad = np.linspace(0, 1, n)[:, None, None] * rng.uniform(-60, 60, size=3)
    img = np.clip(base * 0.7 + 40 + grad, 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(img, block, axis=0), block, axis=1)


def synthetic_batch(n: int, seed: int = 0, eye_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = np.stack([synthetic_face(rng, eye_scale) for _ in range(n)])
    images = np.stack([synthetic_image(rng) for _ in range(n)])
    return maps, images


def load_reference(ref_dir: Path):
    for name in ("compute_property_scores.py", "compute_property_scores_v2.py"):
        if not (ref_dir / name).is_file():
            sys.exit(
                f"reference code missing: {ref_dir / name} (copy it from WannaBeSuperteur/AI_Projects, "
                f"2025_04_08_OhLoRA/stylegan_and_segmentation/, or pass --ref-dir)"
            )
    sys.path.insert(0, str(ref_dir))
    return importlib.import_module("compute_property_scores"), importlib.import_module("compute_property_scores_v2")


def reference_v1(mod, parsing: np.ndarray, image: np.ndarray) -> list:
    """One image through the original v1 functions; crash / None -> NaN."""

    def call(f, *a):
        try:
            v = f(*a)
        except Exception:  # the original crashes (hair_color without hair)
            return np.nan
        return np.nan if v is None else v

    return [
        call(mod.compute_eyes_score, parsing),
        call(mod.compute_hair_color_score, parsing, image),
        call(mod.compute_hair_length_score, parsing),
        call(mod.compute_mouth_score, parsing),
        call(mod.compute_pose_score, parsing),
        *mod.compute_background_mean_and_std(parsing, image),
    ]


def reference_v2(mod, mod1, parsing: np.ndarray, image: np.ndarray) -> list:
    eyes, pose = mod.compute_eyes_and_pose_score_v2(parsing)
    return [
        eyes,
        mod.compute_hair_color_score_v2(parsing, image),
        mod.compute_hair_length_score_v2(parsing),
        mod.compute_mouth_score_v2(parsing),
        pose,
        *mod1.compute_background_mean_and_std(parsing, image),
    ]


def assert_same(ours, ref: np.ndarray, label: str) -> None:
    ref = np.where(np.isfinite(ref), ref, np.nan)  # we record inf as NaN + flag
    same = (ours.values == ref) | (np.isnan(ours.values) & np.isnan(ref))
    if not same.all():
        bad = np.argwhere(~same)[:5]
        raise AssertionError(
            f"{label}: values differ at (image, score) {bad.tolist()}: "
            f"ours {ours.values[tuple(bad.T)]} ref {ref[tuple(bad.T)]}"
        )
    if not ((ours.flags != ScoreFlag.OK) == np.isnan(ref)).all():
        raise AssertionError(f"{label}: flags do not mark exactly the NaN/inf/crash cells")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eye-scale", type=float, default=1.3, help="scales eye radii (pixel count ~ square)")
    ap.add_argument("--ref-dir", type=Path, default=ROOT / ".ref" / "original")
    ap.add_argument("--device", default="cpu", help="only cpu: the scores are numpy code")
    ap.add_argument("--pairs", type=int, default=3, help="timed pairs (ours, original) per algorithm")
    args = ap.parse_args()
    if args.device != "cpu":
        print(f"note: --device {args.device} ignored, property scores run on the CPU (numpy)")
    mod1, mod2 = load_reference(args.ref_dir)
    warnings.simplefilter("ignore", RuntimeWarning)

    maps, images = synthetic_batch(args.n, args.seed, args.eye_scale)
    eye_px = np.concatenate([(maps[:, 56:168, :168] == 4).sum((1, 2)), (maps[:, 56:168, 56:] == 5).sum((1, 2))])
    print(
        f"{args.n} synthetic maps, eye pixels per eye: median {int(np.median(eye_px))}, "
        f"max {int(eye_px.max())}; machine: {__import__('os').cpu_count()} CPU cores"
    )

    rows = []
    for label, ours_fn, ref_fn in (
        (
            "v1",
            lambda: compute_scores_v1(maps, images),
            lambda: np.array([reference_v1(mod1, m, im) for m, im in zip(maps, images)], np.float64),
        ),
        (
            "v2",
            lambda: compute_scores_v2(maps, images),
            lambda: np.array([reference_v2(mod2, mod1, m, im) for m, im in zip(maps, images)], np.float64),
        ),
    ):
        results: dict[str, list] = {"ours": [], "ref": []}
        timing = interleave(
            lambda: results["ours"].append(ours_fn()),
            lambda: results["ref"].append(ref_fn()),
            args.pairs,
            warmup=1,
            a_name=f"ours {label}",
            b_name=f"original {label}",
        )
        for ours, ref in zip(results["ours"], results["ref"]):  # every call of both sides: the same values
            assert_same(ours, ref, label)
        print(timing.report())
        rows.append((label, timing))

    print(f"\ninterleaved: 1 warm-up pair, then {args.pairs} timed pairs; same in-memory arrays on both sides")
    print(f"{'algorithm':<10}{'ours (s)':>22}{'original (s)':>22}{'speed-up':>10}{'per pair':>14}{'identical':>11}")
    for label, t in rows:
        pr = t.pair_ratios
        print(
            f"{label:<10}{_spread(t.a):>22}{_spread(t.b):>22}{t.ratio:>9.0f}x{min(pr):>7.0f}..{max(pr):<6.0f}"
            f"{'yes':>11}"
        )


def _spread(xs: list[float]) -> str:
    return f"{np.median(xs):.3f} ({min(xs):.3f}..{max(xs):.3f})"


if __name__ == "__main__":
    main()
