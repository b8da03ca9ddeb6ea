"""From segmentation files to the original's score tables, for one algorithm version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import SegmentationMaps
from .common import SCORE_COLUMNS, ScoreResult, load_face_crop, load_parsing_png, load_v1_image, scores_frame
from .normalize import normalize_scores
from .v1 import compute_scores_v1
from .v2 import compute_scores_v2

VERSIONS = ("v1", "v2")  # score algorithms (file names: ohlora_core.artifacts.PROPERTY_SCORES)
STANDARDISED_TOLERANCE = 1e-3  # 4-decimal rounding moves a column's mean/std far less than this


@dataclass
class ScoreTables:
    result: ScoreResult
    raw: pd.DataFrame  # img_no, img_path, 7 raw scores (NaN where flagged)
    normalised: pd.DataFrame  # the original's all_scores*.csv columns
    flags: pd.DataFrame  # 7 `<name>_flag` columns (ScoreFlag codes), row-aligned with raw

    def standardisation(self) -> tuple[pd.DataFrame, list[str], bool]:
        """(mean/std/NaN per normalised column, constant columns, all columns N(0, 1) within rounding)."""
        values = self.normalised[list(SCORE_COLUMNS)]
        stats = pd.DataFrame(
            {
                "score": SCORE_COLUMNS,
                "mean": values.mean().to_numpy(),
                "std": values.std().to_numpy(),
                "nan": values.isna().sum().to_numpy(),
            }
        )
        constant = [c for c in SCORE_COLUMNS if self.raw[c].nunique(dropna=True) < 2]
        ok = not constant and all(
            abs(m) < STANDARDISED_TOLERANCE and abs(s - 1) < STANDARDISED_TOLERANCE
            for m, s in zip(stats["mean"], stats["std"])
        )
        return stats, constant, ok

    def unexpected_nan(self) -> int:
        """NaN raw values the original did not produce (should be 0)."""
        return int((np.isnan(self.result.values) & (self.result.flags == 0)).sum())


def score_parsed_images(
    version: str,
    img_nos: Sequence[int],
    image_paths: Sequence[str | Path],
    segmentation: SegmentationMaps,
    table_paths: Sequence[str] | None = None,
) -> ScoreTables:
    """Score every parsed image with algorithm `version` ('v1' or 'v2').

    v1 scores the original 256 image (`image_paths`) resized to 224 (the original's documented bug:
    its pixels do not line up with the map); v2 scores the face crop the map was computed on.
    `table_paths` (default `image_paths`) fill the tables' img_path column.
    """
    if version not in VERSIONS:
        raise ValueError(f"score algorithm must be 'v1' or 'v2', got {version!r}")
    maps = (
        np.stack([load_parsing_png(segmentation.parsing(n)) for n in img_nos])
        if len(img_nos)
        else np.zeros((0, 224, 224), np.uint8)
    )
    if version == "v1":
        images = [load_v1_image(p) for p in image_paths]
    else:
        images = [load_face_crop(segmentation.face(n)) for n in img_nos]
    images = np.stack(images) if images else np.zeros((0, 224, 224, 3), np.uint8)
    result = (compute_scores_v1 if version == "v1" else compute_scores_v2)(maps, images)
    raw = scores_frame(img_nos, table_paths if table_paths is not None else image_paths, result.values)
    flags = pd.DataFrame(result.flags, columns=[c.replace("_score", "_flag") for c in SCORE_COLUMNS])
    return ScoreTables(result, raw, normalize_scores(raw), flags)
