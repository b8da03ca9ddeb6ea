"""Score normalisation, as the original `normalize_all_scores` (shared by v1 and v2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .common import SCORE_COLUMNS, SCORE_NAMES


def normalize_scores(scores: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """Per score column: (x - mean) / std with pandas `Series.mean()` / `Series.std()` (ddof 1,
    NaN skipped), then Python `round(x, 4)` on each value - exactly the original's
    `scores[p].apply(lambda x: round(x, 4))` (pandas hands Python floats to the lambda).

    Deviation from the original: +-inf is turned into NaN *before* the statistics, so one flagged
    image (v2 pose with eye centroids in one column) leaves its own row NaN instead of turning the
    whole column into NaN. NaN rows stay NaN and are left out of mean/std, as pandas does.

    Input: a DataFrame holding the 7 `<name>_score` columns (other columns kept as they are), or an
    (N, 7) array in SCORE_NAMES order. Returns a new DataFrame (float64 score columns).
    """
    if isinstance(scores, pd.DataFrame):
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise ValueError(f"normalize_scores: DataFrame lacks score columns {missing}")
        out = scores.copy()
    else:
        arr = np.asarray(scores, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(SCORE_NAMES):
            raise ValueError(f"normalize_scores: expected an (N, {len(SCORE_NAMES)}) array, got {arr.shape}")
        out = pd.DataFrame(arr, columns=list(SCORE_COLUMNS))
    for col in SCORE_COLUMNS:
        s = out[col].astype(np.float64)
        s = s.where(np.isfinite(s), np.nan)
        z = (s - s.mean()) / s.std()
        out[col] = np.array([round(float(v), 4) for v in z.to_numpy()], dtype=np.float64)
    return out
