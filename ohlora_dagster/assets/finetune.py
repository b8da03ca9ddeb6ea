"""Stage 5 — StyleGAN fine-tuning: label-conditioned generators (the original's StyleGAN-FineTune v1..v4)
and the final images. Each version is a record in `ohlora_core.finetune.variants`, trained by the one
entry point `ohlora_core.finetune.train`; run config fields left unset are the original's choices (smoke
mode: a couple of small steps, `presets.py`)."""

import dataclasses
import functools

import dagster as dg
from pydantic import Field

from ohlora_core.artifacts import (
    GenderQualityModels,
    PropertyScoreCnn,
    PropertyScoresV1,
    PropertyScoresV2Cnn,
    RawImages,
    StyleganFinetuneV1,
    StyleganFinetuneV3,
)
from ohlora_core.finetune.request import MAX_IMAGES, NOISE_RANGE, PROPERTY_RANGE
from ohlora_core.finetune.variants import V1, V2, V3, V4
from ohlora_core.pipeline import finetune
from ohlora_dagster.gpu import gpu_asset
from ohlora_dagster.presets import resolve
from ohlora_dagster.resources import ArtifactStore, RunSettings, mode_of

finetune_asset = functools.partial(gpu_asset, group_name="finetune", kinds={"pytorch"})


class GanFinetuneConfig(dg.Config):
    """v1 / v4. Unset values are the original's choices (smoke mode: a couple of small steps)."""

    epochs: int | None = Field(
        default=None, gt=0, description="unset = 40 (v1) / 80 (v4), as the original ran them; 1 in smoke mode."
    )
    max_steps_per_epoch: int | None = Field(
        default=None, gt=0, description="Cap on batches per epoch; unset = all (full) / 2 (smoke)."
    )
    batch_size: int | None = Field(default=None, gt=0, description="unset = 16 (v1) / 8 (v4); 2 in smoke mode.")
    g_lr: float | None = Field(default=None, gt=0, description="Generator AdamW lr; unset = 1e-4.")
    d_lr: float | None = Field(default=None, gt=0, description="Discriminator AdamW lr; unset = 1e-4.")
    style_mixing_prob: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="unset = 0.9 (the original still mixes in v4, although its README says otherwise).",
    )
    mbstd_group: int | None = Field(default=None, gt=0, description="Minibatch-std group; unset = 16.")
    matching_aware: bool = Field(
        default=False,
        description="Also show D reals with shuffled labels as fakes, so it "
        "can punish label/image mismatch (the original cannot; README).",
    )
    snapshot_every: int = Field(default=100, gt=0, description="Steps between resumable snapshots (and every epoch).")
    samples_per_label: int | None = Field(
        default=None, gt=0, description="z per label row in the per-epoch sample grid; unset = 10 (full) / 1 (smoke)."
    )


class CnnLoopConfig(dg.Config):
    """v2; unset values are the original's (smoke mode: a couple of small steps)."""

    step_groups: int | None = Field(
        default=None,
        gt=0,
        description="Step groups of 50 steps (early stopping after "
        "100 without improvement ends it sooner); unset = 1000 (full) / 1 (smoke).",
    )
    max_steps_per_group: int | None = Field(default=None, gt=0, description="unset = 50 (full) / 2 (smoke).")
    batch_size: int | None = Field(default=None, gt=0, description="unset = 16; 2 in smoke mode.")
    freeze: bool = Field(
        default=False,
        description="Train only G's mapping network with the CNN frozen (the "
        "original's README intent; its code trains everything, the default).",
    )
    cnn_eval: bool = Field(default=False, description="Property CNN in eval mode (the original leaves dropout on).")
    keep_v1_dense0: bool = Field(
        default=False, description="Keep v1's learnt mapping.dense0 (the original re-initialises it)."
    )


class CvaeConfig(dg.Config):
    """v3; unset values are the original's (smoke mode: a couple of small steps, 1 test z)."""

    epochs: int | None = Field(
        default=None,
        gt=0,
        description="unset = 20 (full; the original stopped by hand and adopted epoch 5) / 1 (smoke).",
    )
    max_steps_per_epoch: int | None = Field(default=None, gt=0, description="unset = all (full) / 2 (smoke).")
    batch_size: int | None = Field(default=None, gt=0, description="unset = 8; 2 in smoke mode.")
    test_z: int | None = Field(default=None, gt=0, description="z's in the per-epoch test; unset = 30 / 1 (smoke).")
    cnn_eval: bool = Field(
        default=False, description="Both CNNs in eval mode in the loss and the test (the original leaves dropout on)."
    )
    gender_input_01: bool = Field(
        default=False,
        description="Feed the gender CNN [0, 1] images as it was trained (the original feeds the generator's [-1, 1]).",
    )
    keep_v1_dense0: bool = Field(
        default=False,
        description="Keep v1's learnt mapping.dense0 weights for z (the original re-initialises the whole layer).",
    )


def _value(default: float) -> float:
    low, high = PROPERTY_RANGE  # `ohlora generate`'s rule
    return Field(
        default=default,
        ge=low,
        le=high,
        allow_inf_nan=False,
        description=f"Requested normalised score, finite, in [{low:g}, {high:g}].",
    )


class FinalSamplesConfig(dg.Config):
    """The original's final inference (run_fine_tuned_generator.py) from the v3 generator."""

    eyes: float = _value(1.8)
    mouth: float = _value(1.6)
    pose: float = _value(-1.2)
    n: int | None = Field(default=None, gt=0, le=MAX_IMAGES, description="Images; unset = 20 (full) / 4 (smoke).")
    noise: float = Field(
        default=0.3,
        ge=NOISE_RANGE[0],
        le=NOISE_RANGE[1],
        allow_inf_nan=False,
        description="Std of the noise added to z for images 1..n-1.",
    )
    epoch: int | None = Field(
        default=None,
        ge=0,
        description="Use v3's checkpoint and passing z of this epoch; "
        "unset = the last epoch with a passing z, else the final generator with a seeded z.",
    )


def train_version(
    context: dg.AssetExecutionContext,
    settings: RunSettings,
    store: ArtifactStore,
    variant,
    preset: str,
    config: dg.Config,
    start: dict,
    **inputs,
) -> dg.MaterializeResult:
    """The body every version shares: resolve its settings, open its recipe folder, train, publish."""
    run = store.run(context, settings)
    variant, params = finetune.plan(variant, resolve(run.mode, preset, config))
    fixed = {k: v for k, v in params.items() if k != "snapshot_every"}  # how often to snapshot changes no bytes
    stage = store.stage(
        context, variant=dataclasses.asdict(variant), **fixed, start=start["id"], seed=run.seed, device=run.device
    )
    return store.publish(context, stage, finetune.finetune(run, variant, stage, start=start, **inputs, **params))


@finetune_asset(
    description="StyleGAN-FineTune-v1: GAN fine-tuning of the "
    "mapping network on the 7 v1 property scores, and its discriminator.",
)
def stylegan_finetune_v1(
    context: dg.AssetExecutionContext,
    config: GanFinetuneConfig,
    settings: RunSettings,
    store: ArtifactStore,
    property_scores_v1: PropertyScoresV1,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    start = store.sources(mode_of(context)).stylegan_start(settings.seed)
    return train_version(
        context,
        settings,
        store,
        V1,
        "gan_v1",
        config,
        start,
        labels=finetune.label_table(property_scores_v1),
        raw_images=raw_images,
    )


@finetune_asset(
    description="StyleGAN-FineTune-v4: v1 re-trained (GAN) on eyes, mouth and pose from the property-score CNN.",
)
def stylegan_finetune_v4(
    context: dg.AssetExecutionContext,
    config: GanFinetuneConfig,
    settings: RunSettings,
    store: ArtifactStore,
    stylegan_finetune_v1: StyleganFinetuneV1,
    property_scores_v2_cnn: PropertyScoresV2Cnn,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    return train_version(
        context,
        settings,
        store,
        V4,
        "gan_v4",
        config,
        finetune.start_from_v1(stylegan_finetune_v1, with_discriminator=True),
        labels=finetune.label_table(property_scores_v2_cnn),
        raw_images=raw_images,
    )


@finetune_asset(
    description="StyleGAN-FineTune-v2: v1's generator trained "
    "through the property-score CNN on random labels (the original's failed attempt, kept to show what it does).",
)
def stylegan_finetune_v2(
    context: dg.AssetExecutionContext,
    config: CnnLoopConfig,
    settings: RunSettings,
    store: ArtifactStore,
    stylegan_finetune_v1: StyleganFinetuneV1,
    property_score_cnn: PropertyScoreCnn,
) -> dg.MaterializeResult:
    return train_version(
        context,
        settings,
        store,
        V2,
        "cnn_loop",
        config,
        finetune.start_from_v1(stylegan_finetune_v1, with_discriminator=False),
        property_score_cnn=property_score_cnn,
    )


@finetune_asset(
    description="StyleGAN-FineTune-v3: conditional VAE: an encoder + "
    "v1's generator as decoder, trained so the property CNN sees the requested eyes/mouth/pose (the version the "
    "original adopted).",
)
def stylegan_finetune_v3(
    context: dg.AssetExecutionContext,
    config: CvaeConfig,
    settings: RunSettings,
    store: ArtifactStore,
    stylegan_finetune_v1: StyleganFinetuneV1,
    property_score_cnn: PropertyScoreCnn,
    gender_quality_models: GenderQualityModels,
    property_scores_v2_cnn: PropertyScoresV2Cnn,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    return train_version(
        context,
        settings,
        store,
        V3,
        "cvae",
        config,
        finetune.start_from_v1(stylegan_finetune_v1, with_discriminator=False),
        labels=finetune.label_table(property_scores_v2_cnn),
        raw_images=raw_images,
        property_score_cnn=property_score_cnn,
        gender_quality_models=gender_quality_models,
    )


@finetune_asset(
    description="The original's final images: 20 images around "
    "v3's passing z (0.3 noise), eyes 1.8, mouth 1.6, pose -1.2 (other versions and values: `ohlora generate`).",
)
def finetuned_samples(
    context: dg.AssetExecutionContext,
    config: FinalSamplesConfig,
    settings: RunSettings,
    store: ArtifactStore,
    stylegan_finetune_v3: StyleganFinetuneV3,
) -> dg.MaterializeResult:
    run = store.run(context, settings)
    cfg = resolve(run.mode, "final_samples", config)
    values = {p: cfg[p] for p in ("eyes", "mouth", "pose")}
    stage = store.stage(
        context, values=values, n=cfg["n"], noise=cfg["noise"], epoch=cfg["epoch"], seed=run.seed, device=run.device
    )
    result = finetune.finetuned_samples(
        run, stylegan_finetune_v3, stage, values=values, n=cfg["n"], noise=cfg["noise"], epoch=cfg["epoch"]
    )
    return store.publish(context, stage, result)
