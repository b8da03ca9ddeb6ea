"""Stage 2 — hand labels, gender/quality CNNs, scores for every image, the filtered set."""

import dagster as dg
from pydantic import Field

from ohlora_core.artifacts import GenderQualityModels, GenderQualityScores, HandLabels, RawImages
from ohlora_core.pipeline import filtering
from ohlora_dagster.gpu import gpu_asset
from ohlora_dagster.presets import resolve
from ohlora_dagster.resources import ArtifactStore, RunSettings, mode_of


class CnnTrainingConfig(dg.Config):
    """The original's training choices; smoke mode caps epochs and does not enforce thresholds (presets)."""

    max_epochs: int | None = Field(default=None, gt=0, description="Epoch cap; unset = unlimited (full) / 1 (smoke).")
    patience: int = Field(default=20, gt=0, description="Early stopping: epochs without a better validation loss.")
    max_attempts: int = Field(default=3, gt=0, description="Fresh retrainings of a fold that misses its threshold.")
    gender_threshold: float = Field(default=0.35, gt=0, description="A gender fold must reach this best val loss.")
    quality_threshold: float = Field(default=0.13, gt=0, description="A quality fold must reach this best val loss.")


class FilterConfig(dg.Config):
    gender_min: float = Field(
        default=0.7, ge=0, le=1, description="Keep images with gender_score >= this (1 = female)."
    )
    quality_min: float = Field(default=0.9, ge=0, le=1, description="Keep images with quality_score >= this.")


@dg.asset(
    group_name="filtering",
    kinds={"csv"},
    description="Human gender/quality labels (0/1) for the first images, validated; stand-ins in smoke mode.",
)
def hand_labels(context: dg.AssetExecutionContext, settings: RunSettings, store: ArtifactStore) -> dg.MaterializeResult:
    from ohlora_core.io import sha256_file

    run, (n_images, n_labelled) = store.run(context, settings), settings.counts(mode_of(context))
    csv = None if run.smoke else store.sources(run.mode).labels_csv()  # smoke: stand-in labels, never a file
    source = {"smoke_labels": n_labelled, "seed": settings.seed} if csv is None else {"csv_sha256": sha256_file(csv)}
    stage = store.stage(context, images=n_images, labelled=n_labelled, **source)
    return store.publish(context, stage, filtering.hand_labels(run, stage, n_labelled, n_images, csv))


@dg.asset_check(
    asset=hand_labels, description="The label CSV parses: columns, 0/1 values, unique in-range image numbers."
)
def hand_labels_valid(
    context: dg.AssetCheckExecutionContext, settings: RunSettings, hand_labels: HandLabels
) -> dg.AssetCheckResult:
    from ohlora_core.cnn.labels import LabelError

    try:
        labels = filtering.read_labels(hand_labels, settings.counts(context.check_specs[0].asset_key.path[0])[0])
    except (LabelError, FileNotFoundError) as exc:
        return dg.AssetCheckResult(passed=False, metadata={"error": str(exc)})
    return dg.AssetCheckResult(passed=True, metadata={"rows": len(labels)})


@gpu_asset(
    group_name="filtering",
    kinds={"pytorch"},
    description="5 gender + 5 quality CNNs (K-fold, best epoch) with the original's training logs.",
)
def gender_quality_models(
    context: dg.AssetExecutionContext,
    config: CnnTrainingConfig,
    settings: RunSettings,
    store: ArtifactStore,
    hand_labels: HandLabels,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    run, cfg = store.run(context, settings), resolve(mode_of(context), "cnn", config)
    thresholds = {"gender": cfg["gender_threshold"], "quality": cfg["quality_threshold"]}
    stage = store.stage(context, config=cfg, seed=run.seed, device=run.device)
    result = filtering.gender_quality_models(
        run,
        hand_labels,
        raw_images,
        stage,
        n_images=settings.counts(run.mode)[0],
        max_epochs=cfg["max_epochs"],
        patience=cfg["patience"],
        max_attempts=cfg["max_attempts"],
        thresholds=thresholds if cfg["enforce_thresholds"] else None,
    )
    return store.publish(context, stage, result)


@gpu_asset(
    sharded=True,
    group_name="filtering",
    kinds={"pytorch", "csv"},
    check_specs=[dg.AssetCheckSpec("every_image_scored_once", asset="gender_quality_scores")],
    description="Gender and quality for every image: hand label where labelled, 5-model mean elsewhere.",
)
def gender_quality_scores(
    context: dg.AssetExecutionContext,
    settings: RunSettings,
    store: ArtifactStore,
    gender_quality_models: GenderQualityModels,
    hand_labels: HandLabels,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    run = store.run(context, settings)
    stage = store.stage(context, device=run.device)
    result = filtering.gender_quality_scores(
        run,
        gender_quality_models,
        hand_labels,
        raw_images,
        stage,
        settings.counts(run.mode)[0],
        shard_devices=settings.shard_list(),
    )
    return store.publish(context, stage, result)


@dg.asset(
    group_name="filtering",
    kinds={"csv"},
    check_specs=[dg.AssetCheckSpec("filtered_not_empty", asset="filtered_images", blocking=True)],
    description="Images with gender >= 0.7 and quality >= 0.9: a table pointing at raw_images (no copies).",
)
def filtered_images(
    context: dg.AssetExecutionContext,
    config: FilterConfig,
    store: ArtifactStore,
    settings: RunSettings,
    gender_quality_scores: GenderQualityScores,
) -> dg.MaterializeResult:
    stage = store.stage(context, config=config.model_dump())
    result = filtering.filtered_images(
        store.run(context, settings), gender_quality_scores, stage, config.gender_min, config.quality_min
    )
    return store.publish(context, stage, result)
