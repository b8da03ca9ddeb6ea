"""Stage 4 — property scores v1/v2, the property-score CNN, its predictions and the comparison.

The code versions carry the score algorithm versions (`ohlora_dagster/versions.py`), so a bump of one marks
it and everything built on it "Unsynced" at once (README, "Backfill after a score change").
"""

import dagster as dg
from pydantic import Field

from ohlora_core.artifacts import (
    FilteredImages,
    PropertyScoreCnn,
    PropertyScoresV2,
    PropertyScoresV2Cnn,
    RawImages,
    SegmentationMaps,
)
from ohlora_core.pipeline import scores
from ohlora_dagster.gpu import gpu_asset
from ohlora_dagster.presets import resolve
from ohlora_dagster.resources import ArtifactStore, RunSettings, mode_of

CHECKS = {
    "no_unexpected_nan": "Every NaN raw score is a flagged original NaN/crash.",
    "standardised": "Normalised columns have mean 0 and std 1 (4-dp rounding).",
    "one_row_per_parsed_image": "Rows = filtered images minus no-face images.",
}
WHAT = {"v1": "resized full image (the original's documented bug)", "v2": "face crop"}


class PropertyCnnConfig(dg.Config):
    max_epochs: int | None = Field(default=None, gt=0, description="Epoch cap; unset = unlimited (full) / 2 (smoke).")
    patience: int = Field(default=20, gt=0, description="Early stopping on val loss excluding background_std.")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            f"property_scores_{v}",
            group_name="scores",
            kinds={"numpy", "csv"},
            skippable=True,
            deps=["segmentation_maps", "filtered_images", "raw_images"],
            description=f"7 raw + 7 normalised property scores per parsed image, algorithm {v} ({w}).",
        )
        for v, w in WHAT.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=f"property_scores_{v}", description=text)
        for v in WHAT
        for name, text in CHECKS.items()
    ],
    can_subset=True,
)
def property_scores(
    context: dg.AssetExecutionContext,
    settings: RunSettings,
    store: ArtifactStore,
    segmentation_maps: SegmentationMaps,
    filtered_images: FilteredImages,
    raw_images: RawImages,
):
    """Both score algorithms in one step (the same inputs); each is its own asset and can run alone."""
    for key in sorted(context.selected_asset_keys, key=lambda k: k.path):
        stage = store.stage(context, key=key)
        result = scores.property_scores(
            store.run(context, settings), key.path[-1][-2:], segmentation_maps, filtered_images, raw_images, stage
        )
        yield store.publish(context, stage, result)


@gpu_asset(
    group_name="scores",
    kinds={"pytorch"},
    description="CNN predicting the 7 normalised v2 scores from image regions (the original's v2 CNN).",
)
def property_score_cnn(
    context: dg.AssetExecutionContext,
    config: PropertyCnnConfig,
    settings: RunSettings,
    store: ArtifactStore,
    property_scores_v2: PropertyScoresV2,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    run, cfg = store.run(context, settings), resolve(mode_of(context), "property_cnn", config)
    stage = store.stage(context, config=cfg, seed=run.seed, device=run.device)
    result = scores.property_score_cnn(
        run, property_scores_v2, raw_images, stage, max_epochs=cfg["max_epochs"], patience=cfg["patience"]
    )
    return store.publish(context, stage, result)


@gpu_asset(
    group_name="scores",
    kinds={"pytorch", "csv"},
    description="The property-score CNN's predictions for every scored image (all_scores_v2_cnn.csv).",
)
def property_scores_v2_cnn(
    context: dg.AssetExecutionContext,
    settings: RunSettings,
    store: ArtifactStore,
    property_score_cnn: PropertyScoreCnn,
    property_scores_v2: PropertyScoresV2,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    run = store.run(context, settings)
    stage = store.stage(context, device=run.device)
    result = scores.property_scores_v2_cnn(run, property_score_cnn, property_scores_v2, raw_images, stage)
    return store.publish(context, stage, result)


@dg.asset(
    group_name="scores",
    kinds={"csv"},
    description="v2 score vs CNN prediction per image and property (value, prediction, |diff|), with MAE/corr.",
)
def property_scores_v2_vs_cnn(
    context: dg.AssetExecutionContext,
    settings: RunSettings,
    store: ArtifactStore,
    property_scores_v2_cnn: PropertyScoresV2Cnn,
    property_scores_v2: PropertyScoresV2,
) -> dg.MaterializeResult:
    stage = store.stage(context)
    result = scores.property_scores_v2_vs_cnn(
        store.run(context, settings), property_scores_v2_cnn, property_scores_v2, stage
    )
    return store.publish(context, stage, result)
