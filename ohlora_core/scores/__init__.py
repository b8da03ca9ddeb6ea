"""Property scores of a face-parsing map: algorithms v1 / v2 of the original Oh-LoRA code,
vectorised and bit-identical to it, plus the shared normalisation and CSV table builder."""

from .common import (
    CSV_COLUMNS,
    SCORE_COLUMNS,
    SCORE_NAMES,
    ScoreFlag,
    ScoreResult,
    load_face_crop,
    load_parsing_png,
    load_v1_image,
    scores_frame,
)
from .normalize import normalize_scores
from .v1 import ALGORITHM_VERSION as V1_VERSION
from .v1 import compute_scores_v1
from .v2 import ALGORITHM_VERSION as V2_VERSION
from .v2 import compute_scores_v2

__all__ = [
    "CSV_COLUMNS",
    "SCORE_COLUMNS",
    "SCORE_NAMES",
    "ScoreFlag",
    "ScoreResult",
    "V1_VERSION",
    "V2_VERSION",
    "compute_scores_v1",
    "compute_scores_v2",
    "load_face_crop",
    "load_parsing_png",
    "load_v1_image",
    "normalize_scores",
    "scores_frame",
]
