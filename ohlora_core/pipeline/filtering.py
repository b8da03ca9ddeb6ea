"""Stage 2 — hand labels, the gender/quality CNNs, scores for every image, the filtered set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ohlora_core.artifacts import FilteredImages, GenderQualityModels, GenderQualityScores, HandLabels, RawImages
from ohlora_core.pipeline import Check, Run, StageResult
from ohlora_core.store import RecipeDir

PROPERTIES = ("quality", "gender")  # the original's training order


def hand_labels(run: Run, out: RecipeDir, n_labelled: int, n_images: int, csv: Path | None) -> StageResult:
    """A validated copy of the hand-label CSV (full mode) or seeded stand-in labels (smoke mode, `csv` None)."""
    from ohlora_core.cnn.labels import load_hand_labels, smoke_labels, write_hand_labels_csv
    from ohlora_core.io import atomic_write_text

    if csv is None:
        labels = smoke_labels(n_labelled, run.seed)
        source = f"smoke_labels(n={n_labelled}, seed={run.seed}) — stand-ins"
    else:
        labels, source = load_hand_labels(csv, n_images, expected_rows=n_labelled), str(csv)
    files = HandLabels(out.open())
    atomic_write_text(files.csv, write_hand_labels_csv(labels))
    return StageResult(
        [files.csv.name],
        path=files.csv.name,
        figures={
            "labelled": len(labels),
            "female": int(labels["gender"].sum()),
            "good_quality": int(labels["quality"].sum()),
            "source": source,
            "stand_in_labels": csv is None,
        },
    )


def read_labels(labels: HandLabels, n_images: int):
    from ohlora_core.cnn.labels import load_hand_labels

    return load_hand_labels(labels.csv, n_images)


def gender_quality_models(
    run: Run,
    hand_labels: HandLabels,
    raw_images: RawImages,
    out: RecipeDir,
    *,
    n_images: int,
    max_epochs: int | None,
    patience: int,
    max_attempts: int,
    thresholds: dict[str, float] | None,
) -> StageResult:
    """5 gender + 5 quality CNNs (K-fold, best epoch) with the original's logs; `thresholds` None = not enforced.
    A recipe trained before (same labels, images, settings) is verified and kept, not retrained."""
    import pandas as pd

    from ohlora_core.cnn.data import decode_images
    from ohlora_core.cnn.training import K_FOLDS, train_property_models
    from ohlora_core.generation import verified_images

    files = GenderQualityModels(out.open())
    if out.verified():
        run.log(f"models for this recipe already trained ({out.path}); not retraining")
    else:
        labels = read_labels(hand_labels, n_images)
        images = decode_images(verified_images(raw_images, labels["img_no"]))
        for prop in PROPERTIES:
            train_property_models(
                prop,
                images,
                labels[prop].to_numpy(),
                files,
                seed=run.seed,
                device=run.device,
                max_epochs=max_epochs,
                patience=patience,
                max_attempts=max_attempts,
                val_loss_threshold=thresholds[prop] if thresholds else float("inf"),
                log=run.log,
            )
    outputs = (
        [files.model(p, k) for p in PROPERTIES for k in range(K_FOLDS)]
        + [files.train_log(p) for p in PROPERTIES]
        + [files.epoch_detail(p, k) for p in PROPERTIES for k in range(K_FOLDS)]
    )
    log = pd.concat(
        [pd.read_csv(files.train_log(p), index_col=0).assign(property=p) for p in PROPERTIES], ignore_index=True
    )
    folds = log[["property", "fold_no", "attempt", "success", "min_val_loss", "total_epochs", "best_epoch"]]
    enforced = (
        f"gender {thresholds['gender']}, quality {thresholds['quality']}"
        if thresholds
        else "not enforced (smoke mode: stand-in labels carry no signal)"
    )
    return StageResult(
        [str(p.relative_to(files.dir)) for p in outputs],
        tables={"folds": folds},
        figures={"thresholds": enforced, "max_epochs": max_epochs or 0},
    )


def gender_quality_scores(
    run: Run,
    gender_quality_models: GenderQualityModels,
    hand_labels: HandLabels,
    raw_images: RawImages,
    out: RecipeDir,
    n_images: int,
    shard_devices: Sequence[str] = (),
) -> StageResult:
    """Gender and quality for every image: the hand label where labelled, the 5-model mean elsewhere. More than
    one `shard_devices`: the unlabelled images are scored by one worker per device (the same numbers)."""
    from ohlora_core.cnn.inference import combine_with_labels, inference_table
    from ohlora_core.cnn.training import K_FOLDS
    from ohlora_core.io import atomic_write_csv

    labels = read_labels(hand_labels, n_images)
    unlabelled = np.setdiff1d(np.arange(n_images), labels["img_no"].to_numpy())
    model_files = {
        prop: [gender_quality_models.model(prop, k) for k in range(K_FOLDS)] for prop in ("gender", "quality")
    }
    scores = _cnn_scores(run, model_files, raw_images, unlabelled, shard_devices)
    paths = [run.relative(raw_images.image(i)) for i in range(n_images)]
    files, tables = GenderQualityScores(out.open()), {}
    for prop in ("gender", "quality"):
        tables[prop] = inference_table(prop, unlabelled, [paths[i] for i in unlabelled], scores[prop])
        atomic_write_csv(files.inference(prop), tables[prop])
    table = combine_with_labels(labels, tables["gender"], tables["quality"], paths)
    atomic_write_csv(files.table, table[["img_no", "img_path", "gender_score", "quality_score"]], index=True)
    atomic_write_csv(files.detail, table)
    written = [files.table, files.detail, files.inference("gender"), files.inference("quality")]
    once = table["img_no"].is_unique and sorted(table["img_no"]) == list(range(n_images))
    return StageResult(
        [str(p.relative_to(files.dir)) for p in written],
        path=files.table.name,
        figures={
            "images": len(table),
            "from_labels": int((table["source"] == "label").sum()),
            "from_cnn": int((table["source"] == "cnn").sum()),
            "gender_mean": float(table["gender_score"].mean()),
            "quality_median": float(table["quality_score"].median()),
            "shards": max(len(shard_devices), 1),
        },
        checks={"every_image_scored_once": Check(bool(once), {"rows": len(table), "expected": n_images})},
    )


def _cnn_scores(
    run: Run, model_files: dict[str, list], raw_images: RawImages, unlabelled: np.ndarray, shard_devices: Sequence[str]
) -> dict:
    """{property: EnsembleScores} of the fold models over the unlabelled images, in this process or, with more
    than one shard device and more than one evaluation batch of images, in one worker per device."""
    from ohlora_core.cnn.data import decode_images, eval_batch_size
    from ohlora_core.cnn.inference import EnsembleScores, load_fold_models, score_files_sharded, score_images
    from ohlora_core.generation import verified_images

    if not len(unlabelled):  # all labelled
        return {
            prop: EnsembleScores(*(np.zeros((0, len(files))),) * 2, np.zeros(0)) for prop, files in model_files.items()
        }
    paths = verified_images(raw_images, unlabelled)
    if len(shard_devices) > 1 and len(unlabelled) > eval_batch_size(run.device):
        return score_files_sharded(model_files, paths, shard_devices, log=run.log)  # each worker decodes its images
    images = decode_images(paths)
    return {
        prop: score_images(load_fold_models(prop, files, run.device), images, run.device)
        for prop, files in model_files.items()
    }


def filtered_images(
    run: Run, gender_quality_scores: GenderQualityScores, out: RecipeDir, gender_min: float, quality_min: float
) -> StageResult:
    """Images with gender >= gender_min and quality >= quality_min: a table pointing at raw_images (no copies)."""
    import pandas as pd

    from ohlora_core.cnn.inference import filter_images
    from ohlora_core.io import atomic_write_csv

    scores = pd.read_csv(gender_quality_scores.table, index_col=0)
    kept = filter_images(scores, gender_min, quality_min)
    files = FilteredImages(out.open())
    atomic_write_csv(files.table, kept)
    return StageResult(
        [files.table.name],
        path=files.table.name,
        figures={
            "kept": len(kept),
            "of": len(scores),
            "female_share": round(float((scores["gender_score"] >= gender_min).mean()), 4),
            "good_quality_share": round(float((scores["quality_score"] >= quality_min).mean()), 4),
            "thresholds": f"gender >= {gender_min}, quality >= {quality_min}",
        },
        checks={"filtered_not_empty": Check(len(kept) > 0, {"kept": len(kept)})},
    )
