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
from ohlora_dagster.assets.segmentation import segmentation_dir, segmentation_maps
from ohlora_dagster.previews import histograms, markdown_image, markdown_table
from ohlora_dagster.resources import OhloraSettings

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
        return compute_score_asset(version, settings, algorithm_version)

    return _asset


def compute_score_asset(version: str, settings: OhloraSettings, algorithm_version: str) -> dg.MaterializeResult:
    import pandas as pd

    from ohlora_core.io import atomic_write_csv, sha256_file
    from ohlora_core.scores import SCORE_COLUMNS
    from ohlora_core.scores.tables import CSV_NAMES, score_parsed_images

    seg = segmentation_dir(settings)
    parsed = pd.read_csv(seg.parent / "parsed_images.csv")["img_no"].astype(int).tolist()
    kept = pd.read_csv(settings.artifact_dir("filtered_images") / "filtered_images.csv").set_index("img_no")
    n_no_face = len(pd.read_csv(seg.parent / "no_face_images.csv"))
    tables = score_parsed_images(version, parsed, [settings.path(kept.loc[n, "img_path"]) for n in parsed], seg)

    out = settings.artifact_dir(f"property_scores_{version}") / CSV_NAMES[version]
    atomic_write_csv(out, tables.normalised, index=True)  # the original's layout (pandas index)
    atomic_write_csv(out.parent / "raw_scores.csv", pd.concat([tables.raw, tables.flags], axis=1))
    stats, constant, standardised = tables.standardisation()
    unexpected, flagged = tables.unexpected_nan(), len(tables.result.flagged_rows())
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_file(out)),
        metadata={
            "rows": len(tables.raw),
            "flagged_images": flagged,
            "flags": dg.MetadataValue.json(tables.result.flag_counts()),
            "normalised_stats": markdown_table(stats),
            "histograms": markdown_image(histograms({c: tables.raw[c].to_numpy() for c in SCORE_COLUMNS}),
                                         "raw score histograms"),
            "algorithm_version": algorithm_version,
            "path": dg.MetadataValue.path(str(out)),
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
    max_epochs: int | None = Field(default=None, description="Epoch cap; default unlimited (full) / 2 (smoke).")
    patience: int = Field(default=20, description="Early stopping on val loss excluding background_std.")


def _v2_table(settings: OhloraSettings):
    import pandas as pd

    return pd.read_csv(settings.artifact_dir("property_scores_v2") / "all_scores_v2.csv", index_col=0)


def _images_of(settings: OhloraSettings, table):
    from ohlora_core.cnn.data import decode_images

    return decode_images([settings.path(p) for p in table["img_path"]])


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
        description="CNN predicting the 7 normalised v2 scores from image regions (the original's v2 CNN).",
    )
    def property_score_cnn(context: dg.AssetExecutionContext, config: PropertyCnnConfig, settings: OhloraSettings) -> dg.MaterializeResult:
        from ohlora_core.cnn.property_cnn import SCORE_COLUMNS, train_property_score_cnn
        from ohlora_core.io import sha256_file

        table = _v2_table(settings)
        usable = table.dropna(subset=list(SCORE_COLUMNS))
        out_dir = settings.artifact_dir("property_score_cnn")
        max_epochs = settings.epoch_cap(config.max_epochs)
        result = train_property_score_cnn(
            _images_of(settings, usable), usable, out_dir, seed=settings.seed, device=settings.resolved_device,
            max_epochs=max_epochs, patience=config.patience, log=context.log.info,
        )
        best = result.log.iloc[[result.best_epoch]] if len(result.log) > result.best_epoch else result.log.tail(1)
        corr_cols = [c for c in result.log.columns if c.endswith("_corr")]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(sha256_file(result.checkpoint_path)),
            metadata={
                "trained_on": len(usable),
                "left_out_nan_rows": len(table) - len(usable),
                "best_epoch": result.best_epoch,
                "best_val_loss_except_back_std": round(float(result.best_val_loss_except_back_std), 4),
                "best_epoch_val_corr": markdown_table(best[corr_cols]),
                "path": dg.MetadataValue.path(str(result.checkpoint_path)),
                **settings.mode_metadata(),
            },
        )


    @dg.asset(
        group_name="scores",
        deps=[property_score_cnn, "property_scores_v2"],
        code_version=cnn_version,
        kinds={"pytorch", "csv"},
        pool="gpu",
        description="The property-score CNN's predictions for every scored image (all_scores_v2_cnn.csv).",
    )
    def property_scores_v2_cnn(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
        from ohlora_core.cnn.models import PropertyScoreCNN
        from ohlora_core.cnn.property_cnn import CHECKPOINT_NAME, predict_property_scores, property_scores_table
        from ohlora_core.io import atomic_write_csv, load_checkpoint, load_state_dict_strict, sha256_file

        table = _v2_table(settings)
        ckpt = settings.artifact_dir("property_score_cnn") / CHECKPOINT_NAME
        model = PropertyScoreCNN()
        load_state_dict_strict(model, load_checkpoint(ckpt), str(ckpt))
        preds = predict_property_scores(model.to(settings.resolved_device), _images_of(settings, table), settings.resolved_device)
        out = settings.artifact_dir("property_scores_v2_cnn") / "all_scores_v2_cnn.csv"
        atomic_write_csv(out, property_scores_table(table["img_no"], table["img_path"], preds))
        return dg.MaterializeResult(
            data_version=dg.DataVersion(sha256_file(out)),
            metadata={"rows": len(table), "path": dg.MetadataValue.path(str(out)), **settings.mode_metadata()},
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

        from ohlora_core.cnn.property_cnn import compare_v2_vs_cnn
        from ohlora_core.io import atomic_write_csv, sha256_file

        v2 = _v2_table(settings)
        cnn = pd.read_csv(settings.artifact_dir("property_scores_v2_cnn") / "all_scores_v2_cnn.csv")
        table, summary = compare_v2_vs_cnn(v2, cnn)
        out = settings.artifact_dir("property_scores_v2_vs_cnn") / "all_scores_v2_vs_cnn.csv"
        atomic_write_csv(out, table)
        atomic_write_csv(out.parent / "summary.csv", summary)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(sha256_file(out)),
            metadata={
                "rows": len(table),
                "summary": markdown_table(summary),
                **{f"mae_{r.property}": float(r.mae) for r in summary.itertuples()},
                **{f"corr_{r.property}": float(r.corr) for r in summary.itertuples()},
                "path": dg.MetadataValue.path(str(out)),
                **settings.mode_metadata(),
            },
        )

    return [build_score_asset("v1", v1_version), build_score_asset("v2", v2_version),
            property_score_cnn, property_scores_v2_cnn, property_scores_v2_vs_cnn]
