"""Code versions: one own version per algorithm, and the rule that makes an asset's code version.

Bump an own version when that code changes the bytes it writes (the score algorithms keep theirs in
ohlora_core, next to the algorithm: `ohlora_core.scores.v1/v2.ALGORITHM_VERSION`).

An asset's code version is its own version joined with the own versions of everything upstream of it
(`code_version`). Dagster 1.13 marks an asset "Unsynced" when its own code version changes, but not
its children until the parent is re-materialized; carrying the upstream versions makes one bump mark
the whole affected chain at once, so the UI and `ohlora-stale` show the full backfill before any of it
runs (README "Backfill after a score change"). Recipes record the code version too, so a bump never
reuses outputs made by the old code.
"""

from __future__ import annotations

from collections.abc import Iterable

from ohlora_core.scores import v1 as scores_v1
from ohlora_core.scores import v2 as scores_v2

# own version of each algorithm, by the name the code version shows
GENERATION = "1"
LABELS = "1"
GENDER_QUALITY_CNN = "1"
SEGMENTATION = "2"
PROPERTY_CNN = "1"
FINETUNE = "1"
CONTROL = "1"


def own_versions() -> dict[str, str]:
    """{algorithm: version}, read at call time (a test bumps one with monkeypatch)."""
    return {
        "generation": GENERATION,
        "labels": LABELS,
        "cnn": GENDER_QUALITY_CNN,
        "segmentation": SEGMENTATION,
        "scores_v1": scores_v1.ALGORITHM_VERSION,
        "scores_v2": scores_v2.ALGORITHM_VERSION,
        "property_cnn": PROPERTY_CNN,
        "finetune": FINETUNE,
        "control": CONTROL,
    }


# which algorithm each asset runs
ALGORITHM = {
    "latent_codes": "generation",
    "raw_images": "generation",
    "hand_labels": "labels",
    "gender_quality_models": "cnn",
    "gender_quality_scores": "cnn",
    "filtered_images": "cnn",
    "segmentation_maps": "segmentation",
    "property_scores_v1": "scores_v1",
    "property_scores_v2": "scores_v2",
    "property_score_cnn": "property_cnn",
    "property_scores_v2_cnn": "property_cnn",
    "property_scores_v2_vs_cnn": "property_cnn",
    "stylegan_finetune_v1": "finetune",
    "stylegan_finetune_v2": "finetune",
    "stylegan_finetune_v3": "finetune",
    "stylegan_finetune_v4": "finetune",
    "finetuned_samples": "finetune",
    "latent_w": "control",
    "latent_directions": "control",
    "controllability_report": "control",
}


def code_version(asset: str, ancestors: Iterable[str]) -> str:
    """`algorithm-version` of the asset and of its ancestors, sorted: e.g. 'cnn-1+generation-1+labels-1'."""
    versions = own_versions()
    algorithms = sorted({ALGORITHM[asset], *(ALGORITHM[a] for a in ancestors)})
    return "+".join(f"{a}-{versions[a]}" for a in algorithms)
