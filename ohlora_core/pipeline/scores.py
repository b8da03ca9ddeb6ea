"""Stage 4 — property scores v1/v2, the property-score CNN, its predictions and the v2-vs-CNN comparison."""

from __future__ import annotations

from ohlora_core.artifacts import (
    PROPERTY_SCORES,
    FilteredImages,
    PropertyScoreCnn,
    PropertyScoresV2,
    PropertyScoresV2Cnn,
    PropertyScoresV2VsCnn,
    RawImages,
    SegmentationMaps,
)
from ohlora_core.pipeline import Check, Run, StageResult
from ohlora_core.store import RecipeDir


def property_scores(
    run: Run,
    version: str,
    segmentation_maps: SegmentationMaps,
    filtered_images: FilteredImages,
    raw_images: RawImages,
    out: RecipeDir,
) -> StageResult:
    """7 raw + 7 normalised scores per parsed image with algorithm `version` ('v1' or 'v2'), with the checks:
    every NaN is a flagged original NaN/crash, normalised columns are N(0, 1), one row per parsed image.
    The standardisation check only warns in smoke mode (random maps make constant columns)."""
    import pandas as pd

    from ohlora_core.generation import verified_images
    from ohlora_core.io import atomic_write_csv
    from ohlora_core.pictures import histograms
    from ohlora_core.scores import SCORE_COLUMNS
    from ohlora_core.scores.tables import score_parsed_images
    from ohlora_core.segmentation.pipeline import verified_maps

    seg = segmentation_maps
    parsed = pd.read_csv(seg.parsed)["img_no"].astype(int).tolist()
    verified_maps(seg, parsed)
    paths = verified_images(raw_images, parsed) if version == "v1" else [raw_images.image(n) for n in parsed]
    tables = score_parsed_images(version, parsed, paths, seg, [run.relative(p) for p in paths])
    files = PROPERTY_SCORES[version](out.open())
    atomic_write_csv(files.table, tables.normalised, index=True)  # the original's layout (pandas index)
    atomic_write_csv(files.raw, pd.concat([tables.raw, tables.flags], axis=1))
    stats, constant, standardised = tables.standardisation()
    unexpected, flagged = tables.unexpected_nan(), len(tables.result.flagged_rows())
    run.log(
        f"property scores {version}: {len(tables.raw)} parsed images scored, {flagged} with a NaN score where "
        f"the original had none / crashed ({tables.result.flag_counts()})"
    )
    kept, no_face = len(pd.read_csv(filtered_images.table)), len(pd.read_csv(seg.no_face))
    raw = {c: tables.raw[c].to_numpy() for c in SCORE_COLUMNS}
    return StageResult(
        [files.table.name, files.raw.name],
        path=files.table.name,
        tables={"normalised_stats": stats},
        figures={"rows": len(tables.raw), "flagged_images": flagged, "flags": tables.result.flag_counts()},
        pictures={"histograms": (histograms(raw, caption=run.caption), "raw score histograms")},
        checks={
            "no_unexpected_nan": Check(unexpected == 0, {"unexpected_nan": unexpected, "flagged_images": flagged}),
            "standardised": Check(standardised, {"constant_columns": ", ".join(constant) or "none"}, warn=run.smoke),
            "one_row_per_parsed_image": Check(
                len(tables.raw) == kept - no_face, {"rows": len(tables.raw), "filtered": kept, "no_face": no_face}
            ),
        },
    )


def read_v2(scores: PropertyScoresV2):
    import pandas as pd

    return pd.read_csv(scores.table, index_col=0)


def images_of(raw_images: RawImages, table):
    """The raw images of a score table's rows (uint8 [N, 3, 256, 256]), each checked against the manifest."""
    from ohlora_core.cnn.data import decode_images
    from ohlora_core.generation import verified_images

    return decode_images(verified_images(raw_images, table["img_no"]))


def property_score_cnn(
    run: Run,
    property_scores_v2: PropertyScoresV2,
    raw_images: RawImages,
    out: RecipeDir,
    *,
    max_epochs: int | None,
    patience: int,
) -> StageResult:
    """The original's v2 CNN (one small CNN per property region) trained on the rows without a NaN score."""
    from ohlora_core.cnn.property_cnn import SCORE_COLUMNS, train_property_score_cnn

    table = read_v2(property_scores_v2)
    usable = table.dropna(subset=list(SCORE_COLUMNS))
    files = PropertyScoreCnn(out.open())
    result = train_property_score_cnn(
        images_of(raw_images, usable),
        usable,
        files,
        seed=run.seed,
        device=run.device,
        max_epochs=max_epochs,
        patience=patience,
        img_paths=usable["img_path"].tolist(),
        log=run.log,
    )
    best = result.log.iloc[[result.best_epoch]] if len(result.log) > result.best_epoch else result.log.tail(1)
    return StageResult(
        [files.checkpoint.name, files.train_log.name, files.val_log.name],
        path=files.checkpoint.name,
        tables={"best_epoch_val_corr": best[[c for c in result.log.columns if c.endswith("_corr")]]},
        figures={
            "trained_on": len(usable),
            "left_out_nan_rows": len(table) - len(usable),
            "best_epoch": result.best_epoch,
            "best_val_loss_except_back_std": round(float(result.best_val_loss_except_back_std), 4),
        },
    )


def property_scores_v2_cnn(
    run: Run,
    property_score_cnn: PropertyScoreCnn,
    property_scores_v2: PropertyScoresV2,
    raw_images: RawImages,
    out: RecipeDir,
) -> StageResult:
    """The property-score CNN's predictions for every scored image (all_scores_v2_cnn.csv)."""
    from ohlora_core.cnn.models import PropertyScoreCNN
    from ohlora_core.cnn.property_cnn import predict_property_scores, property_scores_table
    from ohlora_core.io import atomic_write_csv, load_checkpoint, load_state_dict_strict

    table = read_v2(property_scores_v2)
    model = PropertyScoreCNN()
    load_state_dict_strict(model, load_checkpoint(property_score_cnn.checkpoint), str(property_score_cnn.checkpoint))
    preds = predict_property_scores(model.to(run.device), images_of(raw_images, table), run.device)
    files = PropertyScoresV2Cnn(out.open())
    atomic_write_csv(files.table, property_scores_table(table["img_no"], table["img_path"], preds))
    return StageResult([files.table.name], path=files.table.name, figures={"rows": len(table)})


def property_scores_v2_vs_cnn(
    run: Run, property_scores_v2_cnn: PropertyScoresV2Cnn, property_scores_v2: PropertyScoresV2, out: RecipeDir
) -> StageResult:
    """v2 score vs CNN prediction per image and property (value, prediction, |diff|), with MAE / corr."""
    import pandas as pd

    from ohlora_core.cnn.property_cnn import compare_v2_vs_cnn
    from ohlora_core.io import atomic_write_csv

    table, summary = compare_v2_vs_cnn(read_v2(property_scores_v2), pd.read_csv(property_scores_v2_cnn.table))
    files = PropertyScoresV2VsCnn(out.open())
    atomic_write_csv(files.table, table)
    atomic_write_csv(files.summary, summary)
    figures = {
        "rows": len(table),
        **{f"mae_{r.property}": float(r.mae) for r in summary.itertuples()},
        **{f"corr_{r.property}": float(r.corr) for r in summary.itertuples()},
    }
    return StageResult(
        [files.table.name, files.summary.name], path=files.table.name, figures=figures, tables={"summary": summary}
    )
