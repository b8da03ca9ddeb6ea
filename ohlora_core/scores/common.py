"""Pieces shared by the v1 and v2 property-score algorithms.

Everything here is batched over images. The only per-image Python work left is a call of
numpy's own float reductions (`np.mean`, `np.std`, `np.corrcoef`) on an image's already
extracted values: those reductions sum in numpy's pairwise / BLAS order, so calling them on the
same arrays the original built is what makes the results bit-identical to the original code.

Pixel "colour" is the per-pixel mean of the 3 channels. A pixel's channel sum `s` is an integer in
0..765 and the original's `np.mean(pixels, axis=1)` is the float64 `s / 3`; so a masked set of
pixels is fully described by a 766-bin histogram of `s`, and its sorted means are
`np.repeat(CHANNEL_MEANS, counts)` - the same array `np.sort` gives.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

MAP_SIZE = 224
SCORE_NAMES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean", "background_std")
SCORE_COLUMNS = tuple(f"{name}_score" for name in SCORE_NAMES)
CSV_COLUMNS = ("img_no", "img_path") + SCORE_COLUMNS

# Parsing classes (FaceXFormer / LaPa order) used by the scores.
BACKGROUND, LEFT_EYE, RIGHT_EYE, NOSE, UPPER_LIP, INNER_MOUTH, LOWER_LIP, HAIR = 0, 4, 5, 6, 7, 8, 9, 10

N_SUMS = 3 * 255 + 1
CHANNEL_MEANS = np.arange(N_SUMS, dtype=np.float64) / 3.0  # == np.mean(uint8 pixel of sum s)

CHUNK = 128  # images per internal chunk: bounds the temporaries (ints over 224x224 maps)


class ScoreFlag(enum.IntEnum):
    """Why a raw score is NaN (0 = value is the original's value)."""

    OK = 0
    NO_HAIR_CRASH = 1  # v1 hair_color: original raises AxisError on np.mean(empty, axis=1)
    NO_HAIR_NONE = 2  # v1 hair_length: original returns None
    NOSE_FEWER_THAN_2 = 3  # v1 pose: np.corrcoef of 0 or 1 nose pixels -> NaN
    NOSE_ONE_ROW_OR_COLUMN = 4  # v1 pose: nose constant in x or y -> corrcoef 0/0 -> NaN
    NAN_OTHER = 5  # any other NaN the original produced
    EYES_SAME_COLUMN_POS_INF = 6  # v2 pose: eye centroids in one column, original gives +inf
    EYES_SAME_COLUMN_NEG_INF = 7  # v2 pose: ... original gives -inf
    EYES_SAME_CENTROID_NAN = 8  # v2 pose: both centroids coincide, original gives 0/0 = NaN


@dataclass(frozen=True)
class ScoreResult:
    """Raw scores of a batch.

    values: (N, 7) float64 in SCORE_NAMES order; NaN wherever flags != OK.
    flags:  (N, 7) uint8 ScoreFlag codes saying what the original did there.
    """

    values: np.ndarray
    flags: np.ndarray

    def flag_counts(self) -> dict[str, dict[str, int]]:
        """{score_name: {flag_name: count}} for every non-OK flag present."""
        out: dict[str, dict[str, int]] = {}
        for k, name in enumerate(SCORE_NAMES):
            codes, counts = np.unique(self.flags[:, k], return_counts=True)
            found = {ScoreFlag(int(c)).name: int(n) for c, n in zip(codes, counts) if c != ScoreFlag.OK}
            if found:
                out[name] = found
        return out

    def flagged_rows(self) -> np.ndarray:
        """Indices of images with at least one flagged score."""
        return np.flatnonzero((self.flags != ScoreFlag.OK).any(axis=1))


def check_batch(parsing: np.ndarray, images: np.ndarray | None, what: str) -> None:
    """Raise a clear ValueError unless parsing is (N,224,224) uint8 and images (N,224,224,3) uint8."""
    s = MAP_SIZE
    if not (
        isinstance(parsing, np.ndarray)
        and parsing.dtype == np.uint8
        and parsing.shape[1:] == (s, s)
        and parsing.ndim == 3
    ):
        raise ValueError(
            f"parsing maps must be uint8 of shape (N, {s}, {s}); got "
            f"{getattr(parsing, 'dtype', type(parsing))} {getattr(parsing, 'shape', '')}"
        )
    if images is None:
        return
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape == parsing.shape + (3,)):
        raise ValueError(
            f"{what} must be uint8 of shape {parsing.shape + (3,)} (one per parsing map); got "
            f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}"
        )


def chunks(n: int, size: int = CHUNK):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def score_in_chunks(score_chunk, parsing: np.ndarray, images: np.ndarray, what: str) -> ScoreResult:
    """Validate a batch, score it CHUNK images at a time with `score_chunk`, and concatenate."""
    check_batch(parsing, images, what)
    parts = [score_chunk(parsing[sl], images[sl]) for sl in chunks(len(parsing))]
    if not parts:
        return ScoreResult(np.zeros((0, len(SCORE_NAMES))), np.zeros((0, len(SCORE_NAMES)), np.uint8))
    return ScoreResult(np.concatenate([p.values for p in parts]), np.concatenate([p.flags for p in parts]))


# ---------------------------------------------------------------- colour histograms and reductions


def channel_sums(images: np.ndarray) -> np.ndarray:
    """(N,H,W,3) uint8 -> (N,H,W) uint16 per-pixel channel sums (the pixel mean is sum / 3)."""
    out = np.add(images[..., 0], images[..., 1], dtype=np.uint16)
    out += images[..., 2]
    return out


# Per-pixel histogram key = channel sum + offset of its category (other / hair / background).
_HAIR_KEY, _BG_KEY = N_SUMS, 2 * N_SUMS
_CATEGORY_OFFSET = np.zeros(256, np.uint16)
_CATEGORY_OFFSET[HAIR] = _HAIR_KEY
_CATEGORY_OFFSET[BACKGROUND] = _BG_KEY


def colour_histograms(parsing: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hair, background) histograms of pixel channel sums, each (N, 766) int64.

    hair = class 10 anywhere; background = class 0 in the upper half (rows 0..111), as the
    original's colour scores select them.
    """
    n = len(parsing)
    key = channel_sums(images)
    flat = np.ascontiguousarray(parsing).reshape(-1, parsing.shape[-1])
    key += cv2.LUT(flat, _CATEGORY_OFFSET).reshape(parsing.shape)  # table look-up, fast in OpenCV
    half = MAP_SIZE // 2
    key[:, half:] += 3 * N_SUMS  # lower half gets its own bins: its background is not counted
    hair = np.empty((n, N_SUMS), np.int64)
    background = np.empty((n, N_SUMS), np.int64)
    for i in range(n):  # one C-level bincount per image over its 50,176 keys
        counts = np.bincount(key[i].ravel(), minlength=6 * N_SUMS)
        hair[i] = counts[_HAIR_KEY:_BG_KEY] + counts[3 * N_SUMS + _HAIR_KEY : 3 * N_SUMS + _BG_KEY]
        background[i] = counts[_BG_KEY : 3 * N_SUMS]
    return hair, background


def row_counts(mask: np.ndarray) -> np.ndarray:
    """(N,H,W) bool -> (N,H) number of True pixels per row."""
    return mask.view(np.uint8).sum(axis=2, dtype=np.uint16)


def sorted_means(hist_row: np.ndarray) -> np.ndarray:
    """The np.sort-ed per-pixel channel means of one image's masked pixels."""
    return np.repeat(CHANNEL_MEANS, hist_row)


def median_from_histograms(hist: np.ndarray) -> np.ndarray:
    """np.median of each row's per-pixel means (NaN for an empty row), without materialising them.

    np.median takes the middle value (odd n) or np.mean of the two middle ones, i.e. (a + b) / 2.
    """
    n = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    lo_rank = np.maximum((n - 1) // 2, 0)
    hi_rank = n // 2
    lo = CHANNEL_MEANS[np.minimum((cum <= lo_rank[:, None]).sum(axis=1), N_SUMS - 1)]
    hi = CHANNEL_MEANS[np.minimum((cum <= hi_rank[:, None]).sum(axis=1), N_SUMS - 1)]
    med = np.where(n % 2 == 1, hi, (lo + hi) / 2.0)
    return np.where(n > 0, med, np.nan)


def trimmed_means(hist: np.ndarray, lo_frac: float, hi_frac: float, with_std: bool = False):
    """Per row: sorted means [int(lo_frac*n) : int(hi_frac*n)], then np.mean (and np.std, ddof 0).

    Returns (mean, std, kept) arrays; mean/std are NaN where nothing is kept. The bounds use the
    original's float expressions `int(0.05 * n)` etc.
    """
    n = hist.sum(axis=1)
    lo = (lo_frac * n).astype(np.int64)
    hi = (hi_frac * n).astype(np.int64)
    kept = np.maximum(hi - lo, 0)
    mean = np.full(len(n), np.nan)
    std = np.full(len(n), np.nan)
    for i in np.flatnonzero(kept > 0):
        # numpy's own reductions on the very array the original reduces (pairwise summation order).
        vals = sorted_means(hist[i])[lo[i] : hi[i]]
        mean[i] = np.mean(vals)
        if with_std:
            std[i] = np.std(vals)
    return mean, std, kept


def background_mean_std(background_hist: np.ndarray) -> np.ndarray:
    """Original `compute_background_mean_and_std` from the background histograms -> (N, 2) float64.

    Background = class 0 in rows 0..111. 0 pixels -> (192, 0); 1 pixel -> (its mean, 0);
    otherwise sorted means trimmed to [int(.05n) : int(.95n)]; one left -> (it, 0); else
    (np.mean, np.std ddof 0).
    """
    hist = background_hist
    n = hist.sum(axis=1)
    mean, std, kept = trimmed_means(hist, 0.05, 0.95, with_std=True)
    out = np.stack([mean, std], axis=1)
    out[kept == 1, 1] = 0.0  # n == 2: the trimmed slice holds the smaller mean
    one = n == 1
    out[one, 0] = CHANNEL_MEANS[hist[one].argmax(axis=1)]
    out[one, 1] = 0.0
    out[n == 0] = (192.0, 0.0)
    return out


# ---------------------------------------------------------------- row / column spans


def row_span(mask: np.ndarray) -> np.ndarray:
    """(N,H,W) bool -> last row - first row containing any True (0 if none), int64."""
    return span(mask.any(axis=2))


def span(rows: np.ndarray) -> np.ndarray:
    """(N,H) bool -> last - first True index (0 if none), int64."""
    has = rows.any(axis=1)
    first = rows.argmax(axis=1)
    last = rows.shape[1] - 1 - rows[:, ::-1].argmax(axis=1)
    return np.where(has, last - first, 0).astype(np.int64)


# ---------------------------------------------------------------- loading (original decoding)


def _read_bytes(path: str | os.PathLike) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"{path}: empty or unreadable file")
    return data


def load_parsing_png(path: str | os.PathLike) -> np.ndarray:
    """A saved parsing map, read as the original did (cv2.imdecode grayscale) -> (224,224) uint8."""
    img = cv2.imdecode(_read_bytes(path), cv2.IMREAD_GRAYSCALE)
    if img is None or img.shape != (MAP_SIZE, MAP_SIZE):
        raise ValueError(
            f"{path}: expected a {MAP_SIZE}x{MAP_SIZE} parsing PNG, got {None if img is None else img.shape}"
        )
    return img


def load_v1_image(path: str | os.PathLike) -> np.ndarray:
    """The v1 score image: the whole 256x256 JPG as the original read it (cv2.imdecode BGR, then
    cv2.resize to 224x224 INTER_LINEAR) -> (224,224,3) uint8. Uncropped on purpose (v1 quirk)."""
    img = cv2.imdecode(_read_bytes(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a decodable image")
    return cv2.resize(img, dsize=(MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_LINEAR)


def load_face_crop(path: str | os.PathLike) -> np.ndarray:
    """The v2 score image: the saved 224x224 face crop PNG (cv2.imdecode BGR) -> (224,224,3) uint8."""
    img = cv2.imdecode(_read_bytes(path), cv2.IMREAD_COLOR)
    if img is None or img.shape != (MAP_SIZE, MAP_SIZE, 3):
        raise ValueError(
            f"{path}: expected a {MAP_SIZE}x{MAP_SIZE} colour face crop, got {None if img is None else img.shape}"
        )
    return img


# ---------------------------------------------------------------- table


def scores_frame(img_nos, img_paths, values: np.ndarray) -> pd.DataFrame:
    """DataFrame with the original CSV's columns (img_no, img_path, eyes_score, ...).

    The original wrote it with `to_csv()` (pandas index as a leading unnamed column); pass
    index=True to the writer to reproduce that byte layout.
    """
    values = np.asarray(values, dtype=np.float64)
    if (
        values.ndim != 2
        or values.shape[1] != len(SCORE_NAMES)
        or len(values) != len(img_nos)
        or len(img_paths) != len(img_nos)
    ):
        raise ValueError(
            f"scores_frame: need N img_nos, N img_paths and (N, 7) values; got "
            f"{len(img_nos)}, {len(img_paths)}, {values.shape}"
        )
    df = pd.DataFrame({"img_no": list(img_nos), "img_path": [str(p) for p in img_paths]})
    for k, col in enumerate(SCORE_COLUMNS):
        df[col] = values[:, k]
    return df
