"""Property scores v1 (`compute_property_scores.py` of the original), vectorised.

Returns the original functions' raw values bit for bit, except where the original gives no
number; there the value is NaN and `flags` says what the original did:

* hair_color, no hair pixel: the original crashes (`np.mean(empty, axis=1)` -> AxisError)
  -> NaN, ScoreFlag.NO_HAIR_CRASH.
* hair_length, no hair pixel: the original returns None (NaN in its DataFrame)
  -> NaN, ScoreFlag.NO_HAIR_NONE.
* pose, fewer than 2 nose pixels / nose in a single row or column: `np.corrcoef` gives NaN
  -> NaN, ScoreFlag.NOSE_FEWER_THAN_2 / NOSE_ONE_ROW_OR_COLUMN.

Quirks kept on purpose: eyes only scans absolute rows 56..139; the colour scores use the whole
resized 256 image (`load_v1_image`), not the face crop the parsing map belongs to.
"""

from __future__ import annotations

import warnings

import numpy as np

from .common import (
    HAIR,
    INNER_MOUTH,
    LEFT_EYE,
    LOWER_LIP,
    MAP_SIZE,
    NOSE,
    RIGHT_EYE,
    UPPER_LIP,
    ScoreFlag,
    ScoreResult,
    background_mean_std,
    colour_histograms,
    median_from_histograms,
    row_counts,
    row_span,
    score_in_chunks,
)

ALGORITHM_VERSION = "v1.0"

S = MAP_SIZE
EYE_ROWS = slice(S // 4, S // 4 + 3 * S // 8)  # rows 56..139: the original scans only 84 of 112 rows


def _pose(parsing: np.ndarray, nose_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-corrcoef(x, y) of nose pixels in row-major order.

    np.corrcoef itself is called per image: its covariance is a BLAS product whose summation
    order only numpy/BLAS define, so this is what keeps the value bit-identical.
    """
    n = len(parsing)
    values = np.full(n, np.nan)
    flags = np.zeros(n, np.uint8)
    count = nose_rows.sum(axis=1, dtype=np.int64)
    flags[count < 2] = ScoreFlag.NOSE_FEWER_THAN_2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in np.flatnonzero(count >= 2):
            rows = np.flatnonzero(nose_rows[i])
            y0 = rows[0]
            ys, xs = np.nonzero(parsing[i, y0 : rows[-1] + 1] == NOSE)  # C order == `for y: for x:`
            values[i] = (-1.0) * np.corrcoef(xs, ys + y0)[0][1]
            if np.isnan(values[i]):
                const = len(rows) == 1 or xs.min() == xs.max()
                flags[i] = ScoreFlag.NOSE_ONE_ROW_OR_COLUMN if const else ScoreFlag.NAN_OTHER
    return values, flags


def _scores_chunk(parsing: np.ndarray, images: np.ndarray) -> ScoreResult:
    n = len(parsing)
    values = np.zeros((n, 7))
    flags = np.zeros((n, 7), np.uint8)

    # eyes: (row span of class 4 in P[56:140, :168] + row span of class 5 in P[56:140, 56:]) / 2
    left = parsing[:, EYE_ROWS, : 3 * S // 4] == LEFT_EYE
    right = parsing[:, EYE_ROWS, S // 4 :] == RIGHT_EYE
    values[:, 0] = (row_span(left) + row_span(right)) / 2.0

    # hair_color: np.median of per-pixel channel means over all hair pixels
    hair_hist, background_hist = colour_histograms(parsing, images)
    values[:, 1] = median_from_histograms(hair_hist)
    no_hair = hair_hist.sum(axis=1) == 0
    flags[no_hair, 1] = ScoreFlag.NO_HAIR_CRASH

    # hair_length: last hair row; at the bottom row add (hair pixels in that row) / 2
    hair_rows = row_counts(parsing == HAIR)
    last = S - 1 - (hair_rows[:, ::-1] > 0).argmax(axis=1)
    values[:, 2] = np.where(last == S - 1, last + hair_rows[:, S - 1] / 2.0, last)
    values[no_hair, 2] = np.nan
    flags[no_hair, 2] = ScoreFlag.NO_HAIR_NONE

    # mouth: row span of lips (7 or 9) + row span of inner mouth (8)
    lips = (parsing == UPPER_LIP) | (parsing == LOWER_LIP)
    values[:, 3] = row_span(lips) + row_span(parsing == INNER_MOUTH)

    values[:, 4], flags[:, 4] = _pose(parsing, row_counts(parsing == NOSE))
    values[:, 5:7] = background_mean_std(background_hist)
    return ScoreResult(values, flags)


def compute_scores_v1(parsing: np.ndarray, images: np.ndarray) -> ScoreResult:
    """v1 raw scores of a batch.

    parsing: (N, 224, 224) uint8 label maps (0..10).
    images:  (N, 224, 224, 3) uint8, the resized whole images (`load_v1_image`); channel order
             is irrelevant (only channel means are used).
    Returns ScoreResult(values (N, 7) float64 in SCORE_NAMES order, flags (N, 7) uint8).
    """
    return score_in_chunks(_scores_chunk, parsing, images, "v1 images")


__all__ = ["ALGORITHM_VERSION", "compute_scores_v1"]
