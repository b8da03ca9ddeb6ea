"""Stage 4 — property scores v1/v2, the property-score CNN, its predictions and the comparison.

Each score asset's code_version is its algorithm version in ohlora_core
(`ohlora_core.scores.v1/v2.ALGORITHM_VERSION`), and the assets built on the v2 scores carry
that version in their own code_version too. Dagster 1.13 does not carry a code change down
the graph by itself (a downstream asset only turns stale once its parent is re-materialized
with a new data version), so this is what makes one bump mark v2 *and* everything downstream
"Unsynced" in the UI at once (README, "Backfill after a score change").
"""
import dagster as dg
from pydantic import Field

from ohlora_core.scores import v1 as scores_v1
from ohlora_core.scores import v2 as scores_v2
from ohlora_dagster.assets.segmentation import segmentation_maps
from ohlora_core.pictures import histograms
from ohlora_dagster.previews import markdown_image, markdown_table
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.retry import retry_transient
from ohlora_dagster.tags import GPU_TAGS

PROPERTY_CNN_VERSION = "1"


def _score_checks(name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("no_unexpected_nan", asset=name, description="Every NaN raw score is a flagged original NaN/crash."),
        dg.AssetCheckSpec("standardised", asset=name, description="Normalised columns have mean 0 and std 1 (4-dp rounding)."),
        dg.AssetCheckSpec("one_row_per_parsed_image", asset=name, description="Rows = filtered images minus no-face images."),
    ]


def build_score_asset(version: str, algorithm_version: str) -> dg.AssetsDefinition:
    """`property_scores_<version>` for algorithm v1 or v2 (one body, two algorithms)."""
    name = f"property_scores_{version}"

    @dg.asset(
        name=name,
        group_name="scores",
        deps=[segmentation_maps],
        code_version=algorithm_version,
        kinds={"numpy", "csv"},
        check_specs=_score_checks(name),
        description=f"7 raw + 7 normalised property scores per parsed image, algorithm {version} "
        f"({'resized full image' if version == 'v1' else 'face crop'}).",
    )
    def _asset(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
        return compute_score_asset(version, settings, algorithm_version, context.log.info)

    return _asset


def compute_score_asset(version: str, settings: OhloraSettings, algorithm_version: str, log=print) -> dg.MaterializeResult:
    import json

    import pandas as pd

    from ohlora_core.artifacts import PROPERTY_SCORES, FilteredImages, RawImages, SegmentationMaps
    from ohlora_core.generation import verified_images
    from ohlora_core.io import atomic_write_csv
    from ohlora_core.scores import SCORE_COLUMNS
    from ohlora_core.scores.tables import score_parsed_images
    from ohlora_core.store import verify_files

    seg = settings.current(SegmentationMaps)
    parsed = pd.read_csv(seg.parsed)["img_no"].astype(int).tolist()
    kept = pd.read_csv(settings.current(FilteredImages).table)
    n_no_face = len(pd.read_csv(seg.no_face))
    records = json.loads(seg.manifest.read_text())
    verify_files(seg.dir, {k: v for n in parsed for k, v in records[str(n)]["files"].items()}, "segmentation_maps")
    raw = settings.current(RawImages)
    paths = verified_images(raw, parsed) if version == "v1" else [raw.image(n) for n in parsed]
    tables = score_parsed_images(version, parsed, paths, seg, [settings.relative(p) for p in paths])

    files_cls = PROPERTY_SCORES[version]
    stage, files = settings.stage(files_cls, {"algorithm": algorithm_version, "maps": settings.data_version(SegmentationMaps),
                                              "images": settings.data_version(RawImages)})
    atomic_write_csv(files.table, tables.normalised, index=True)  # the original's layout (pandas index)
    atomic_write_csv(files.raw, pd.concat([tables.raw, tables.flags], axis=1))
    digest = stage.promote([files.table.name, files.raw.name])
    stats, constant, standardised = tables.standardisation()
    unexpected, flagged = tables.unexpected_nan(), len(tables.result.flagged_rows())
    log(f"property scores {version} (algorithm {algorithm_version}): {len(tables.raw)} parsed images scored, "
        f"{flagged} with a NaN score where the original had none / crashed ({tables.result.flag_counts()})")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "rows": len(tables.raw),
            "flagged_images": flagged,
            "flags": dg.MetadataValue.json(tables.result.flag_counts()),
            "normalised_stats": markdown_table(stats),
            "histograms": markdown_image(histograms({c: tables.raw[c].to_numpy() for c in SCORE_COLUMNS}),
                                         "raw score histograms"),
            "algorithm_version": algorithm_version,
            "path": dg.MetadataValue.path(str(settings.current(files_cls).table)),
            **settings.mode_metadata(),
        },
        check_results=[
            dg.AssetCheckResult(check_name="no_unexpected_nan", passed=unexpected == 0,
                                metadata={"unexpected_nan": unexpected, "flagged_images": flagged}),
            dg.AssetCheckResult(check_name="standardised", passed=standardised,
                                severity=dg.AssetCheckSeverity.WARN if settings.is_smoke else dg.AssetCheckSeverity.ERROR,
                                metadata={"constant_columns": ", ".join(constant) or "none"}),
            dg.AssetCheckResult(check_name="one_row_per_parsed_image", passed=len(tables.raw) == len(kept) - n_no_face,
                                metadata={"rows": len(tables.raw), "filtered": len(kept), "no_face": n_no_face}),
        ],
    )


class PropertyCnnConfig(dg.Config):
    max_epochs: int | None = Field(default=None, gt=0, description="Epoch cap; default unlimited (full) / 2 (smoke).")
    patience: int = Field(default=20, gt=0, description="Early stopping on val loss excluding background_std.")


def _v2_table(settings: OhloraSettings):
    import pandas as pd

    from ohlora_core.artifacts import PropertyScoresV2

    return pd.read_csv(settings.current(PropertyScoresV2).table, index_col=0)


def _images_of(settings: OhloraSettings, table):
    from ohlora_core.cnn.data import decode_images
    from ohlora_dagster.assets.filtering import raw_image_paths

    return decode_images(raw_image_paths(settings, table["img_no"]))


def build_score_assets(v1_version: str | None = None, v2_version: str | None = None) -> list[dg.AssetsDefinition]:
    """The scores stage: v1, v2, the property CNN, its predictions and the comparison.

    Versions default to the algorithm versions in ohlora_core at call time; the assets fed by
    the v2 scores get `PROPERTY_CNN_VERSION+scores-<v2 version>` as their code_version.
    """
    v1_version = v1_version or scores_v1.ALGORITHM_VERSION
    v2_version = v2_version or scores_v2.ALGORITHM_VERSION
    cnn_version = f"{PROPERTY_CNN_VERSION}+scores-{v2_version}"

    @dg.asset(
        group_name="scores",
        deps=["property_scores_v2"],
        code_version=cnn_version,
        kinds={"pytorch"},
        pool="gpu",
        op_tags=GPU_TAGS,
        description="CNN predicting the 7 normalised v2 scores from image regions (the original's v2 CNN).",
    )
    @retry_transient
    def property_score_cnn(context: dg.AssetExecutionContext, config: PropertyCnnConfig, settings: OhloraSettings) -> dg.MaterializeResult:
        from ohlora_core.artifacts import PropertyScoreCnn, PropertyScoresV2, RawImages
        from ohlora_core.cnn.property_cnn import SCORE_COLUMNS, train_property_score_cnn

        table = _v2_table(settings)
        usable = table.dropna(subset=list(SCORE_COLUMNS))
        max_epochs = settings.epoch_cap(config.max_epochs)
        stage, files = settings.stage(PropertyScoreCnn, {
            "scores": settings.data_version(PropertyScoresV2), "images": settings.data_version(RawImages),
            "config": config.model_dump(), "max_epochs": max_epochs, "seed": settings.seed,
            "device": settings.resolved_device, "version": cnn_version})
        result = train_property_score_cnn(
            _images_of(settings, usable), usable, files, seed=settings.seed, device=settings.resolved_device,
            max_epochs=max_epochs, patience=config.patience, img_paths=usable["img_path"].tolist(),
            log=context.log.info,
        )
        digest = stage.promote([files.checkpoint.name, files.train_log.name, files.val_log.name])
        best = result.log.iloc[[result.best_epoch]] if len(result.log) > result.best_epoch else result.log.tail(1)
        corr_cols = [c for c in result.log.columns if c.endswith("_corr")]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "trained_on": len(usable),
                "left_out_nan_rows": len(table) - len(usable),
                "best_epoch": result.best_epoch,
                "best_val_loss_except_back_std": round(float(result.best_val_loss_except_back_std), 4),
                "best_epoch_val_corr": markdown_table(best[corr_cols]),
                "path": dg.MetadataValue.path(str(settings.current(PropertyScoreCnn).checkpoint)),
                **settings.mode_metadata(),
            },
        )


    @dg.asset(
        group_name="scores",
        deps=[property_score_cnn, "property_scores_v2"],
        code_version=cnn_version,
        kinds={"pytorch", "csv"},
        pool="gpu",
        op_tags=GPU_TAGS,
        description="The property-score CNN's predictions for every scored image (all_scores_v2_cnn.csv).",
    )
    @retry_transient
    def property_scores_v2_cnn(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
        from ohlora_core.artifacts import PropertyScoreCnn, PropertyScoresV2, PropertyScoresV2Cnn, RawImages
        from ohlora_core.cnn.models import PropertyScoreCNN
        from ohlora_core.cnn.property_cnn import predict_property_scores, property_scores_table
        from ohlora_core.io import atomic_write_csv, load_checkpoint, load_state_dict_strict

        table = _v2_table(settings)
        ckpt = settings.current(PropertyScoreCnn).checkpoint
        model = PropertyScoreCNN()
        load_state_dict_strict(model, load_checkpoint(ckpt), str(ckpt))
        preds = predict_property_scores(model.to(settings.resolved_device), _images_of(settings, table), settings.resolved_device)
        stage, files = settings.stage(PropertyScoresV2Cnn, {
            "model": settings.data_version(PropertyScoreCnn), "scores": settings.data_version(PropertyScoresV2),
            "images": settings.data_version(RawImages), "device": settings.resolved_device, "version": cnn_version})
        atomic_write_csv(files.table, property_scores_table(table["img_no"], table["img_path"], preds))
        digest = stage.promote([files.table.name])
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={"rows": len(table), "path": dg.MetadataValue.path(str(settings.current(PropertyScoresV2Cnn).table)),
                      **settings.mode_metadata()},
        )


    @dg.asset(
        group_name="scores",
        deps=[property_scores_v2_cnn, "property_scores_v2"],
        code_version=cnn_version,
        kinds={"csv"},
        description="v2 score vs CNN prediction per image and property (value, prediction, |diff|), with MAE/corr.",
    )
    def property_scores_v2_vs_cnn(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
        import pandas as pd

        from ohlora_core.artifacts import PropertyScoresV2, PropertyScoresV2Cnn, PropertyScoresV2VsCnn
        from ohlora_core.cnn.property_cnn import compare_v2_vs_cnn
        from ohlora_core.io import atomic_write_csv

        v2 = _v2_table(settings)
        cnn = pd.read_csv(settings.current(PropertyScoresV2Cnn).table)
        table, summary = compare_v2_vs_cnn(v2, cnn)
        stage, files = settings.stage(PropertyScoresV2VsCnn, {
            "cnn": settings.data_version(PropertyScoresV2Cnn), "scores": settings.data_version(PropertyScoresV2),
            "version": cnn_version})
        atomic_write_csv(files.table, table)
        atomic_write_csv(files.summary, summary)
        digest = stage.promote([files.table.name, files.summary.name])
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "rows": len(table),
                "summary": markdown_table(summary),
                **{f"mae_{r.property}": float(r.mae) for r in summary.itertuples()},
                **{f"corr_{r.property}": float(r.corr) for r in summary.itertuples()},
                "path": dg.MetadataValue.path(str(settings.current(PropertyScoresV2VsCnn).table)),
                **settings.mode_metadata(),
            },
        )

    return [build_score_asset("v1", v1_version), build_score_asset("v2", v2_version),
            property_score_cnn, property_scores_v2_cnn, property_scores_v2_vs_cnn]
