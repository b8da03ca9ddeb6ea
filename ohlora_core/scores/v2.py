"""Property scores v2 (`compute_property_scores_v2.py` of the original), vectorised.

Returns the original functions' raw values bit for bit. The one case without a finite number:

* pose, the two eye centroids in the same column: the original divides numpy floats by zero and
  yields +inf / -inf (or NaN when the centroids coincide) -> NaN here, with
  ScoreFlag.EYES_SAME_COLUMN_POS_INF / _NEG_INF / EYES_SAME_CENTROID_NAN.

The original's fallbacks are values, not flags: hair_color 127.5 with fewer than 2 hair pixels,
pose 0.0 when an eye is missing, eye cos 1.0 with fewer than 2 eye pixels, mouth 0 with no lips.

Farthest eye-pixel pair: the original compares all O(n^2) pairs `for i: for j < i:` in
column-major point order and keeps the first strictly larger distance, i.e. among tied pairs the
smallest i, then smallest j. A diameter pair always joins two extreme points of the convex hull,
and every extreme point of a pixel set is the leftmost or rightmost pixel of its row, so only
those (<= 2 per row) are compared; ordering them by the column-major key and taking the first
maximum of the strictly lower triangle reproduces the original's pick, ties included.
"""

from __future__ import annotations

import numpy as np

from .common import (
    HAIR,
    INNER_MOUTH,
    LEFT_EYE,
    LOWER_LIP,
    MAP_SIZE,
    RIGHT_EYE,
    UPPER_LIP,
    ScoreFlag,
    ScoreResult,
    background_mean_std,
    colour_histograms,
    row_counts,
    score_in_chunks,
    trimmed_means,
)

ALGORITHM_VERSION = "v2.0"

S = MAP_SIZE
EYE_ROWS = slice(S // 4, 3 * S // 4)  # 56..167
MIN_HAIR_PIXEL_THRESHOLD = 20


def max_column_height(mask: np.ndarray) -> np.ndarray:
    """(N,H,W) bool -> max over columns of (last row - first row) of True pixels (0 if none)."""
    m = mask.view(np.uint8)
    h = mask.shape[1]
    # max of (row+1) gives last+1; max of (H-row) gives H-first; both 0 for an empty column
    last1 = (m * np.arange(1, h + 1, dtype=np.uint8)[None, :, None]).max(axis=1).astype(np.int64)
    hfirst = (m * np.arange(h, 0, -1, dtype=np.uint8)[None, :, None]).max(axis=1).astype(np.int64)
    return np.where(last1 > 0, last1 - 1 - (h - hfirst), 0).max(axis=1)


def farthest_pair_cos(mask: np.ndarray) -> np.ndarray:
    """(N,H,W) bool -> |dx| / sqrt(dy^2 + dx^2) of the original's farthest pixel pair (1.0 if < 2 pixels).

    Points are ordered column-major (key = x * H + y) as in the original loop.
    """
    n, h, w = mask.shape
    has = mask.any(axis=2)  # (N, H)
    left = mask.argmax(axis=2)
    right = w - 1 - mask[:, :, ::-1].argmax(axis=2)
    ys = np.concatenate([np.broadcast_to(np.arange(h), (n, h))] * 2, axis=1)
    xs = np.concatenate([left, right], axis=1)
    valid = np.concatenate([has, has & (right != left)], axis=1)
    big = np.iinfo(np.int64).max
    key = np.where(valid, xs * h + ys, big)
    order = np.argsort(key, axis=1, kind="stable")
    k = max(int(valid.sum(axis=1).max(initial=0)), 1)
    order = order[:, :k]
    ys = np.take_along_axis(ys, order, axis=1).astype(np.int32)
    xs = np.take_along_axis(xs, order, axis=1).astype(np.int32)
    valid = np.take_along_axis(valid, order, axis=1)
    dy = ys[:, :, None] - ys[:, None, :]
    dx = xs[:, :, None] - xs[:, None, :]
    dist = dy * dy + dx * dx
    pair_ok = valid[:, :, None] & valid[:, None, :] & np.tri(k, k, -1, dtype=bool)[None]
    dist = np.where(pair_ok, dist, -1).reshape(n, k * k)
    best = dist.max(axis=1)
    first = (dist == best[:, None]).argmax(axis=1)  # row-major: smallest i, then smallest j
    i, j = first // k, first % k
    rows = np.arange(n)
    ady = np.abs(ys[rows, i] - ys[rows, j]).astype(np.float64)
    adx = np.abs(xs[rows, i] - xs[rows, j]).astype(np.float64)
    with np.errstate(all="ignore"):
        cos = adx / np.sqrt(ady * ady + adx * adx)
    return np.where(best > 0, cos, 1.0)


def _eyes_and_pose(parsing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    left = parsing[:, EYE_ROWS, : 3 * S // 4] == LEFT_EYE  # absolute cols 0..167
    right = parsing[:, EYE_ROWS, S // 4 :] == RIGHT_EYE  # absolute cols 56..223
    eyes = np.maximum(
        max_column_height(left) * farthest_pair_cos(left), max_column_height(right) * farthest_pair_cos(right)
    )

    # pose: slope between the eye centroids. Coordinate sums are exact integers, so each centroid
    # is one float division, as np.mean of the original's int point list.
    def centroid(mask: np.ndarray, col_offset: int):
        rows = mask.view(np.uint8).sum(axis=2, dtype=np.int64)
        cols = mask.view(np.uint8).sum(axis=1, dtype=np.int64)
        cnt = rows.sum(axis=1)
        sy = rows @ np.arange(S // 4, S // 4 + mask.shape[1])
        sx = cols @ np.arange(col_offset, col_offset + mask.shape[2])
        with np.errstate(all="ignore"):
            return cnt, sy / cnt, sx / cnt

    n_l, ly, lx = centroid(left, 0)
    n_r, ry, rx = centroid(right, S // 4)
    with np.errstate(all="ignore"):
        pose = (ry - ly) / (rx - lx)
    both = (n_l > 0) & (n_r > 0)
    pose = np.where(both, pose, 0.0)
    flags = np.zeros(len(parsing), np.uint8)
    flags[both & (pose == np.inf)] = ScoreFlag.EYES_SAME_COLUMN_POS_INF
    flags[both & (pose == -np.inf)] = ScoreFlag.EYES_SAME_COLUMN_NEG_INF
    flags[both & np.isnan(pose)] = ScoreFlag.EYES_SAME_CENTROID_NAN
    pose = np.where(np.isfinite(pose), pose, np.nan)
    return eyes, pose, flags


def _scores_chunk(parsing: np.ndarray, crops: np.ndarray) -> ScoreResult:
    n = len(parsing)
    values = np.zeros((n, 7))
    flags = np.zeros((n, 7), np.uint8)
    values[:, 0], values[:, 4], flags[:, 4] = _eyes_and_pose(parsing)

    # hair_color: mean of the middle 80 % of sorted per-pixel channel means; 127.5 if none kept
    hair_hist, background_hist = colour_histograms(parsing, crops)
    mean, _, kept = trimmed_means(hair_hist, 0.1, 0.9)
    values[:, 1] = np.where(kept > 0, mean, 127.5)

    # hair_length: rows 56..223 with >= 20 hair pixels, plus a bottom-row extension
    bottom = parsing[:, S - 1] == HAIR
    per_row = row_counts(parsing[:, S // 4 :] == HAIR)
    rows = np.count_nonzero(per_row >= MIN_HAIR_PIXEL_THRESHOLD, axis=1)
    cnt_l = np.count_nonzero(bottom[:, : S // 2], axis=1)
    cnt_r = np.count_nonzero(bottom[:, S // 2 :], axis=1)
    half = MIN_HAIR_PIXEL_THRESHOLD // 2
    extra = np.maximum(cnt_l - half, 0) / 2.0 + np.maximum(cnt_r - half, 0) / 2.0
    values[:, 2] = rows + np.where(cnt_l + cnt_r >= MIN_HAIR_PIXEL_THRESHOLD, extra, 0)

    # mouth: inner-mouth share of (lips + inner mouth) pixels; 0 if none
    inner = np.count_nonzero(parsing == INNER_MOUTH, axis=(1, 2))
    lips = np.count_nonzero((parsing == UPPER_LIP) | (parsing == LOWER_LIP), axis=(1, 2))
    total = inner + lips
    values[:, 3] = np.where(total > 0, inner / np.maximum(total, 1), 0.0)

    values[:, 5:7] = background_mean_std(background_hist)
    return ScoreResult(values, flags)


def compute_scores_v2(parsing: np.ndarray, face_crops: np.ndarray) -> ScoreResult:
    """v2 raw scores of a batch.

    parsing:    (N, 224, 224) uint8 label maps (0..10).
    face_crops: (N, 224, 224, 3) uint8 face crops the maps were computed on (`load_face_crop`).
    Returns ScoreResult(values (N, 7) float64 in SCORE_NAMES order, flags (N, 7) uint8).
    """
    return score_in_chunks(_scores_chunk, parsing, face_crops, "v2 face crops")


__all__ = ["ALGORITHM_VERSION", "MIN_HAIR_PIXEL_THRESHOLD", "compute_scores_v2", "farthest_pair_cos"]
