"""Stage 2 — hand labels, gender/quality CNNs, scores for every image, the filtered set."""
import dagster as dg
from pydantic import Field

from ohlora_dagster.assets.generation import raw_images
from ohlora_dagster.previews import markdown_table
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.retry import retry_transient
from ohlora_dagster.tags import GPU_TAGS

CNN_VERSION = "1"


class CnnTrainingConfig(dg.Config):
    """The original's training choices; smoke mode caps epochs and does not enforce thresholds."""

    max_epochs: int | None = Field(default=None, gt=0, description="Epoch cap; default unlimited (full) / 2 (smoke).")
    patience: int = Field(default=20, gt=0, description="Early stopping: epochs without a better validation loss.")
    max_attempts: int = Field(default=3, gt=0, description="Fresh retrainings of a fold that misses its threshold.")
    gender_threshold: float = Field(default=0.35, gt=0, description="A gender fold must reach this best val loss.")
    quality_threshold: float = Field(default=0.13, gt=0, description="A quality fold must reach this best val loss.")


class FilterConfig(dg.Config):
    gender_min: float = Field(default=0.7, ge=0, le=1, description="Keep images with gender_score >= this (1 = female).")
    quality_min: float = Field(default=0.9, ge=0, le=1, description="Keep images with quality_score >= this.")


def raw_image_paths(settings: OhloraSettings, numbers) -> list:
    """Paths of raw images, each checked against raw_images' manifest (a changed file is an error naming it)."""
    from ohlora_core.artifacts import RawImages
    from ohlora_core.generation import verified_images

    return verified_images(settings.current(RawImages), numbers)


def read_labels(settings: OhloraSettings):
    from ohlora_core.artifacts import HandLabels
    from ohlora_core.cnn.labels import load_hand_labels

    return load_hand_labels(settings.current(HandLabels).csv, settings.image_count)


@dg.asset(
    group_name="filtering",
    code_version=CNN_VERSION,
    kinds={"csv"},
    description="Human gender/quality labels (0/1) for the first images, validated; stand-ins in smoke mode.",
)
def hand_labels(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    from ohlora_core.artifacts import HandLabels
    from ohlora_core.cnn.labels import load_hand_labels, smoke_labels, write_hand_labels_csv
    from ohlora_core.io import atomic_write_text, sha256_file

    n = settings.labelled_count
    if settings.is_smoke:
        labels, source = smoke_labels(n, settings.seed), f"smoke_labels(n={n}, seed={settings.seed}) — stand-ins"
        recipe = {"smoke_labels": n, "seed": settings.seed}
    else:
        csv = settings.require_file(settings.hand_labels_csv, "hand-label CSV (img_name,quality,gender)")
        labels, source = load_hand_labels(csv, settings.image_count, expected_rows=n), str(csv)
        recipe = {"csv_sha256": sha256_file(csv)}
    stage, files = settings.stage(HandLabels, {**recipe, "images": settings.image_count, "version": CNN_VERSION})
    atomic_write_text(files.csv, write_hand_labels_csv(labels))
    digest = stage.promote([files.csv.name])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "labelled": len(labels),
            "female": int(labels["gender"].sum()),
            "good_quality": int(labels["quality"].sum()),
            "source": source,
            "stand_in_labels": settings.is_smoke,
            "path": dg.MetadataValue.path(str(settings.current(HandLabels).csv)),
            **settings.mode_metadata(),
        },
    )


@dg.asset_check(asset=hand_labels, description="The label CSV parses: columns, 0/1 values, unique in-range image numbers.")
def hand_labels_valid(settings: OhloraSettings) -> dg.AssetCheckResult:
    from ohlora_core.cnn.labels import LabelError

    try:
        labels = read_labels(settings)
    except (LabelError, FileNotFoundError) as exc:
        return dg.AssetCheckResult(passed=False, metadata={"error": str(exc)})
    return dg.AssetCheckResult(passed=True, metadata={"rows": len(labels)})


@dg.asset(
    group_name="filtering",
    deps=[hand_labels, raw_images],
    code_version=CNN_VERSION,
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    description="5 gender + 5 quality CNNs (K-fold, best epoch) with the original's training logs.",
)
@retry_transient
def gender_quality_models(
    context: dg.AssetExecutionContext, config: CnnTrainingConfig, settings: OhloraSettings
) -> dg.MaterializeResult:
    import pandas as pd

    from ohlora_core.artifacts import GenderQualityModels, HandLabels, RawImages
    from ohlora_core.cnn.data import decode_images
    from ohlora_core.cnn.training import K_FOLDS, train_property_models

    smoke, device = settings.is_smoke, settings.resolved_device
    max_epochs = settings.epoch_cap(config.max_epochs)
    thresholds = {"quality": config.quality_threshold, "gender": config.gender_threshold}
    recipe = {"labels": settings.data_version(HandLabels), "images": settings.data_version(RawImages),
              "config": config.model_dump(), "max_epochs": max_epochs, "thresholds_enforced": not smoke,
              "seed": settings.seed, "device": device, "version": CNN_VERSION}
    stage, files = settings.stage(GenderQualityModels, recipe)
    props = ("quality", "gender")
    if stage.verified():  # same labels, images, settings: the models on disk are this recipe's
        context.log.info(f"models for this recipe already trained ({stage.path}); not retraining")
    else:
        labels = read_labels(settings)
        images = decode_images(raw_image_paths(settings, labels["img_no"]))
        for prop in props:
            train_property_models(
                prop, images, labels[prop].to_numpy(), files, seed=settings.seed, device=device,
                max_epochs=max_epochs, patience=config.patience, max_attempts=config.max_attempts,
                val_loss_threshold=float("inf") if smoke else thresholds[prop], log=context.log.info,
            )
    outputs = [files.model(p, k) for p in props for k in range(K_FOLDS)] + \
              [files.train_log(p) for p in props] + [files.epoch_detail(p, k) for p in props for k in range(K_FOLDS)]
    digest = stage.promote(str(p.relative_to(files.dir)) for p in outputs)
    log = pd.concat([pd.read_csv(files.train_log(p), index_col=0).assign(property=p) for p in props], ignore_index=True)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "folds": markdown_table(log[["property", "fold_no", "attempt", "success", "min_val_loss", "total_epochs", "best_epoch"]]),
            "path": dg.MetadataValue.path(str(settings.current(GenderQualityModels).dir)),
            "thresholds": "not enforced (smoke mode: stand-in labels carry no signal)" if smoke
            else f"gender {config.gender_threshold}, quality {config.quality_threshold}",
            "max_epochs": max_epochs or 0,
            **settings.mode_metadata(),
        },
    )


@dg.asset(
    group_name="filtering",
    deps=[gender_quality_models, hand_labels, raw_images],
    code_version=CNN_VERSION,
    kinds={"pytorch", "csv"},
    pool="gpu",
    op_tags=GPU_TAGS,
    check_specs=[dg.AssetCheckSpec("every_image_scored_once", asset="gender_quality_scores")],
    description="Gender and quality for every image: hand label where labelled, 5-model mean elsewhere.",
)
@retry_transient
def gender_quality_scores(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np

    from ohlora_core.artifacts import GenderQualityModels, GenderQualityScores, HandLabels, RawImages
    from ohlora_core.cnn.data import decode_images
    from ohlora_core.cnn.inference import (EnsembleScores, combine_with_labels, inference_table, load_fold_models,
                                          score_images)
    from ohlora_core.cnn.training import K_FOLDS
    from ohlora_core.io import atomic_write_csv

    n, device = settings.image_count, settings.resolved_device
    labels = read_labels(settings)
    models = settings.current(GenderQualityModels)
    unlabelled = np.setdiff1d(np.arange(n), labels["img_no"].to_numpy())
    images = decode_images(raw_image_paths(settings, unlabelled)) if len(unlabelled) else None  # all labelled: no CNN work
    raw = settings.current(RawImages)
    paths = [settings.relative(raw.image(i)) for i in range(n)]
    stage, files = settings.stage(GenderQualityScores, {
        "models": settings.data_version(GenderQualityModels), "labels": settings.data_version(HandLabels),
        "images": settings.data_version(RawImages), "device": device, "version": CNN_VERSION})
    tables = {}
    for prop in ("gender", "quality"):
        fold_models = load_fold_models(prop, [models.model(prop, k) for k in range(K_FOLDS)], device)
        scores = (score_images(fold_models, images, device) if images is not None
                  else EnsembleScores(*(np.zeros((0, K_FOLDS)),) * 2, np.zeros(0)))
        tables[prop] = inference_table(prop, unlabelled, [paths[i] for i in unlabelled], scores)
        atomic_write_csv(files.inference(prop), tables[prop])
    table = combine_with_labels(labels, tables["gender"], tables["quality"], paths)
    atomic_write_csv(files.table, table[["img_no", "img_path", "gender_score", "quality_score"]], index=True)
    atomic_write_csv(files.detail, table)
    written = [files.table, files.detail, files.inference("gender"), files.inference("quality")]
    digest = stage.promote(str(p.relative_to(files.dir)) for p in written)

    once = table["img_no"].is_unique and sorted(table["img_no"]) == list(range(n))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "images": len(table),
            "from_labels": int((table["source"] == "label").sum()),
            "from_cnn": int((table["source"] == "cnn").sum()),
            "gender_mean": float(table["gender_score"].mean()),
            "quality_median": float(table["quality_score"].median()),
            "path": dg.MetadataValue.path(str(settings.current(GenderQualityScores).table)),
            **settings.mode_metadata(),
        },
        check_results=[dg.AssetCheckResult(check_name="every_image_scored_once", passed=bool(once),
                                           metadata={"rows": len(table), "expected": n})],
    )


@dg.asset(
    group_name="filtering",
    deps=[gender_quality_scores],
    code_version=CNN_VERSION,
    kinds={"csv"},
    check_specs=[dg.AssetCheckSpec("filtered_not_empty", asset="filtered_images", blocking=True)],
    description="Images with gender >= 0.7 and quality >= 0.9: a table pointing at raw_images (no copies).",
)
def filtered_images(context: dg.AssetExecutionContext, config: FilterConfig, settings: OhloraSettings) -> dg.MaterializeResult:
    import pandas as pd

    from ohlora_core.artifacts import FilteredImages, GenderQualityScores
    from ohlora_core.cnn.inference import filter_images
    from ohlora_core.io import atomic_write_csv

    scores = pd.read_csv(settings.current(GenderQualityScores).table, index_col=0)
    kept = filter_images(scores, config.gender_min, config.quality_min)
    stage, files = settings.stage(FilteredImages, {"scores": settings.data_version(GenderQualityScores),
                                                   "config": config.model_dump(), "version": CNN_VERSION})
    atomic_write_csv(files.table, kept)
    digest = stage.promote([files.table.name])
    n = len(scores)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "kept": len(kept),
            "of": n,
            "female_share": round(float((scores["gender_score"] >= config.gender_min).mean()), 4),
            "good_quality_share": round(float((scores["quality_score"] >= config.quality_min).mean()), 4),
            "thresholds": f"gender >= {config.gender_min}, quality >= {config.quality_min}",
            "path": dg.MetadataValue.path(str(settings.current(FilteredImages).table)),
            **settings.mode_metadata(),
        },
        check_results=[dg.AssetCheckResult(check_name="filtered_not_empty", passed=len(kept) > 0,
                                           metadata={"kept": len(kept)})],
    )
