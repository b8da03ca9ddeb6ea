"""Gender / quality CNNs (K-fold ensemble) and the property-score CNN of the original pipeline."""

from .data import ImageDataError, decode_images, to_signed_float, to_unit_float
from .inference import (
    EnsembleScores,
    combine_with_labels,
    filter_images,
    inference_table,
    load_fold_models,
    score_images,
)
from .labels import LabelError, load_hand_labels, smoke_labels, write_hand_labels_csv
from .models import GenderCNN, PropertyScoreCNN, QualityCNN
from .property_cnn import compare_v2_vs_cnn, predict_property_scores, property_scores_table, train_property_score_cnn
from .training import KFoldResult, TrainingFailed, fit, kfold_splits, train_property_models

__all__ = [
    "ImageDataError",
    "decode_images",
    "to_signed_float",
    "to_unit_float",
    "EnsembleScores",
    "combine_with_labels",
    "filter_images",
    "inference_table",
    "load_fold_models",
    "score_images",
    "LabelError",
    "load_hand_labels",
    "smoke_labels",
    "write_hand_labels_csv",
    "GenderCNN",
    "PropertyScoreCNN",
    "QualityCNN",
    "compare_v2_vs_cnn",
    "predict_property_scores",
    "property_scores_table",
    "train_property_score_cnn",
    "KFoldResult",
    "TrainingFailed",
    "fit",
    "kfold_splits",
    "train_property_models",
]
