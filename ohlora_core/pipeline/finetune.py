"""Stage 5 — StyleGAN fine-tuning (the original's StyleGAN-FineTune v1..v4) and the final images.

Every version goes through `ohlora_core.finetune.train` with its variant record; the functions here only
gather each version's inputs from the upstream artifacts and describe the result.
"""

from __future__ import annotations

from ohlora_core.artifacts import (
    FINETUNES,
    FinalSamples,
    GenderQualityModels,
    PropertyScoreCnn,
    PropertyScoresV1,
    PropertyScoresV2Cnn,
    RawImages,
    StyleganFinetuneV1,
    StyleganFinetuneV3,
)
from ohlora_core.pipeline import Run, StageResult
from ohlora_core.store import RecipeDir


def label_table(scores: PropertyScoresV1 | PropertyScoresV2Cnn):
    import pandas as pd

    return pd.read_csv(scores.table, index_col=0 if isinstance(scores, PropertyScoresV1) else None)


def v1_generator(v1: StyleganFinetuneV1) -> dict:
    from ohlora_core.io import load_checkpoint
    from ohlora_core.stylegan.checkpoint import select_state_dict

    return select_state_dict(load_checkpoint(v1.generator), "generator", str(v1.generator))


def v1_discriminator(v1: StyleganFinetuneV1) -> dict:
    from ohlora_core.io import load_checkpoint
    from ohlora_core.stylegan.checkpoint import select_state_dict

    return select_state_dict(load_checkpoint(v1.discriminator), "discriminator", str(v1.discriminator))


def cnn_state(path) -> dict:
    from ohlora_core.io import load_checkpoint, state_dict_in

    return state_dict_in(load_checkpoint(path), str(path))


def finetune(
    run: Run,
    variant,
    out: RecipeDir,
    *,
    start: dict,
    labels=None,
    raw_images: RawImages | None = None,
    property_score_cnn: PropertyScoreCnn | None = None,
    gender_quality_models: GenderQualityModels | None = None,
    epochs: int,
    max_steps: int | None,
    samples_per_label: int = 10,
    snapshot_every: int = 100,
) -> StageResult:
    """Fine-tune `variant` into `out`: `start` holds the starting weights ({'generator', 'discriminator'?, 'id'});
    `labels` the label table (rows with a NaN label are left out), `raw_images` their images; v2/v3 also take
    the property-score CNN (v3 the gender CNN, fold 0). A recipe trained before is verified and kept."""
    import numpy as np

    from ohlora_core.finetune import TrainInputs, train
    from ohlora_core.io import CheckpointError
    from ohlora_core.pictures import captioned

    files = FINETUNES[variant.name](out.open())
    usable, figures = _usable(labels, variant)
    if out.verified():
        run.log(f"{variant.name}: this recipe was trained before ({out.path}); not retraining")
        return _describe(None, list(out.complete["files"]), files, variant, figures, start["id"])
    inputs = TrainInputs(
        generator=start["generator"],
        discriminator=start.get("discriminator"),
        property_cnn=cnn_state(property_score_cnn.checkpoint) if property_score_cnn else None,
        gender_cnn=cnn_state(gender_quality_models.model("gender", 0)) if gender_quality_models else None,
        images=_images(raw_images, usable),
        labels=None if usable is None else usable[[f"{p}_score" for p in variant.labels]].to_numpy(np.float64),
    )
    run.log(
        f"fine-tune {variant.name}: "
        + (", ".join(f"{k} {v}" for k, v in figures.items()) or "random labels")
        + f", batch {variant.batch_size}, {epochs} epoch(s)"
        + (f" of at most {max_steps} step(s)" if max_steps else "")
        + f", on {run.device}"
    )
    try:
        with captioned(run.caption):  # its sample grids and loss plot are pictures of this mode too
            result = train(
                variant,
                inputs,
                files,
                epochs=epochs,
                seed=run.seed,
                device=run.device,
                max_steps=max_steps,
                snapshot_every=snapshot_every,
                samples_per_label=samples_per_label,
                log=run.log,
            )
    except CheckpointError as exc:
        raise CheckpointError(f"fine-tune {variant.name} cannot start from {start['id']}: {exc}") from exc
    return _describe(result, result.outputs, files, variant, figures, start["id"])


def _usable(labels, variant):
    if labels is None:
        return None, {}
    usable = labels.dropna(subset=[f"{p}_score" for p in variant.labels])
    return usable, {
        "images": len(usable),
        "left_out_nan_labels": len(labels) - len(usable),
        "labels": ", ".join(variant.labels),
    }


def _images(raw_images: RawImages | None, usable):
    from ohlora_core.cnn.data import decode_images
    from ohlora_core.generation import verified_images

    return (
        None if raw_images is None or usable is None else decode_images(verified_images(raw_images, usable["img_no"]))
    )


def _describe(train_result, outputs: list[str], files, variant, figures: dict, start: str) -> StageResult:
    """What the UI shows of a fine-tuning run (read back from its files when it was trained before)."""
    import pandas as pd
    from PIL import Image

    log = train_result.log if train_result is not None else pd.read_csv(files.train_log, index_col=0)
    resumed = train_result.resumed_from if train_result is not None else None
    figures = {
        **figures,
        "steps": len(log),
        "start_weights": start,
        "resumed_from": f"epoch {resumed[0]}, step {resumed[1]}" if resumed else "no (fresh run)",
        **_log_figures(log, train_result),
    }
    return StageResult(
        outputs,
        path=files.generator.name,
        figures=figures,
        tables={"last_steps": log.tail(5)[[c for c in log.columns if c != "epoch"]].round(4)},
        pictures={"loss_plot": (Image.open(files.loss_plot), f"{variant.name} losses")},
    )


def _log_figures(log, train_result) -> dict:
    """The version's key figures from its training log."""
    if "d_loss" in log:  # GAN (v1, v4)
        last = log.iloc[-1]
        return {
            "final_d_loss": float(last["d_loss"]),
            "final_g_loss": float(last["g_loss"]),
            "final_real_fake_auroc": float(last["real_fake_auroc"]),
            "mean_g_updates_per_step": float(log["g_train_count"].mean()),
            "seconds_per_step": float(log["step_seconds"].mean()),
        }
    loss = "loss" if "loss" in log else "total_loss"
    per_epoch = log.groupby("epoch")[loss].mean()
    best = (
        train_result.best
        if train_result is not None and train_result.best
        else (int(per_epoch.idxmin()), float(per_epoch.min()))
    )
    learns = per_epoch.min() < per_epoch.iloc[0]
    return {
        "epochs_run": int(per_epoch.size),
        "best_epoch": int(best[0]),
        "best_loss": float(best[1]),
        "first_epoch_loss": float(per_epoch.iloc[0]),
        "learns": f"the epoch-mean loss fell from {per_epoch.iloc[0]:.4f} to {per_epoch.min():.4f}"
        if learns
        else "no: the loss never went below its first epoch's (the original reports that v2 does not learn)",
    }


def finetuned_samples(
    run: Run,
    stylegan_finetune_v3: StyleganFinetuneV3,
    out: RecipeDir,
    *,
    values: dict[str, float],
    n: int,
    noise: float,
    epoch: int | None,
) -> StageResult:
    """The original's final inference: n images around v3's passing z (row 0 = z) with one label row. `epoch`
    None = the last epoch with a passing z, else the final generator with a seeded z."""
    import numpy as np
    from PIL import Image

    from ohlora_core.finetune.generate import default_z, generate, load_z_csv
    from ohlora_core.pictures import image_grid
    from ohlora_core.stylegan import load_generator

    v3 = stylegan_finetune_v3
    epoch = pick_epoch(v3, epoch)
    checkpoint = v3.checkpoint(epoch, "gen") if epoch is not None else v3.generator
    z0 = load_z_csv(v3.test_z_vector(epoch)) if epoch is not None else default_z(run.seed)
    files = FinalSamples(out.open())
    G = load_generator(checkpoint, device=run.device)
    paths = generate(
        G, "v3", z0, values, files.dir, n=n, noise=noise, seed=run.seed, device=run.device, source=str(checkpoint)
    )
    grid = image_grid([np.asarray(Image.open(p)) for p in paths], cols=min(n, 10), thumb=96, caption=run.caption)
    return StageResult(
        [p.name for p in paths],
        pictures={"preview": (grid, "final samples")},
        figures={
            "images": n,
            "generator": checkpoint.name,
            "z": f"test_z_vector_{epoch:04d}.csv (passed v3's test)"
            if epoch is not None
            else "seeded N(0, I) (no test z passed in v3's run)",
            "labels": ", ".join(f"{k} {v:g}" for k, v in values.items()) + ", others 0",
        },
    )


def pick_epoch(v3: StyleganFinetuneV3, epoch: int | None) -> int | None:
    passing = sorted(int(p.stem.rsplit("_", 1)[1]) for p in v3.dir.glob("test_z_vector_*.csv"))
    if epoch is not None and epoch not in passing:
        raise ValueError(
            f"v3 kept no checkpoint for epoch {epoch} (no test z passed then); epochs with one: {passing or 'none'}"
        )
    return epoch if epoch is not None else (passing[-1] if passing else None)


# run-config names that are not fields of a variant record, and what `finetune` calls them
RUN_PARAMS = {
    "epochs": "epochs",
    "step_groups": "epochs",
    "max_steps_per_epoch": "max_steps",
    "max_steps_per_group": "max_steps",
    "samples_per_label": "samples_per_label",
    "snapshot_every": "snapshot_every",
}


def plan(variant, settings: dict) -> tuple[object, dict]:
    """(the variant with the settings that are its fields, the run parameters of `finetune`). A None setting
    keeps the variant's own value (the original's)."""
    fields = {k: v for k, v in settings.items() if k in variant.__dataclass_fields__ and v is not None}
    params = {RUN_PARAMS[k]: v for k, v in settings.items() if k in RUN_PARAMS}
    unknown = set(settings) - set(variant.__dataclass_fields__) - set(RUN_PARAMS)
    if unknown:
        raise ValueError(f"{variant.name}: unknown fine-tuning settings {sorted(unknown)}")
    return variant.with_overrides(**fields), params


def start_from_v1(v1: StyleganFinetuneV1, with_discriminator: bool) -> dict:
    """v2/v3/v4 start from v1's files (the recipe records v1's data version)."""
    start = {"generator": v1_generator(v1), "id": "stylegan_finetune_v1"}
    return {**start, "discriminator": v1_discriminator(v1)} if with_discriminator else start
