"""Stage 6 — property control without retraining (w-space directions) and one controllability report for
every method (fine-tuned v1..v4, directions), side by side."""

import dagster as dg
from pydantic import Field

from ohlora_core.artifacts import (
    ASSET_FILES,
    LatentCodes,
    LatentW,
    PropertyScoreCnn,
    PropertyScoresV2,
    PropertyScoresV2Cnn,
)
from ohlora_core.pipeline import control, generation
from ohlora_dagster.gpu import gpu_asset
from ohlora_dagster.presets import resolve
from ohlora_dagster.resources import ArtifactStore, RunSettings, mode_of

METHODS = [f"stylegan_finetune_{v}" for v in control.VERSIONS] + ["latent_directions"]


class DirectionsConfig(dg.Config):
    method: str = Field(
        default="svm",
        pattern="^(svm|ridge)$",
        description="svm (InterFaceGAN: linear SVM on the "
        "top / bottom quantile) or ridge (regression of the score on w).",
    )
    scores: str = Field(
        default="v2",
        pattern="^(v2|v2_cnn)$",
        description="Fit on the v2 scores or on the property CNN's predictions of them.",
    )
    quantile: float = Field(default=0.25, gt=0, lt=0.5, description="svm: share of images at each end used as classes.")


class ReportConfig(dg.Config):
    z: int | None = Field(
        default=None, gt=0, description="z's per method (the original's test: 30); unset = 30 / 1 (smoke)."
    )
    stride: int | None = Field(
        default=None, gt=0, le=50, description="Every stride-th of the 50 combinations; unset = 1 (full) / 7 (smoke)."
    )
    conditional: bool = Field(
        default=True,
        description="Directions: move each property along its normal with the "
        "other properties' normals projected out (InterFaceGAN's conditional manipulation).",
    )


@dg.asset(
    group_name="control",
    kinds={"pytorch", "numpy"},
    description="w = mapping(z) of every image under the pretrained generator (float32 [N, 512]).",
)
def latent_w(
    context: dg.AssetExecutionContext, settings: RunSettings, store: ArtifactStore, latent_codes: LatentCodes
) -> dg.MaterializeResult:
    run = store.run(context, settings)
    G, weights = store.sources(run.mode).stylegan(settings.seed)
    stage = store.stage(context, weights=weights)
    return store.publish(context, stage, generation.latent_w(run, latent_codes, stage, G))


@dg.asset(
    group_name="control",
    kinds={"scikitlearn", "numpy"},
    description="A unit direction per property in w space (InterFaceGAN), calibrated so that a requested value "
    "is the property's normalised score; held-out accuracy / correlation per property.",
)
def latent_directions(
    context: dg.AssetExecutionContext,
    config: DirectionsConfig,
    settings: RunSettings,
    store: ArtifactStore,
    latent_w: LatentW,
    property_scores_v2: PropertyScoresV2,
    property_scores_v2_cnn: PropertyScoresV2Cnn,
) -> dg.MaterializeResult:
    run = store.run(context, settings)
    stage = store.stage(context, config=config.model_dump(), seed=run.seed)
    scores = property_scores_v2 if config.scores == "v2" else property_scores_v2_cnn
    result = control.latent_directions(run, latent_w, scores, stage, method=config.method, quantile=config.quantile)
    return store.publish(context, stage, result)


@gpu_asset(
    group_name="control",
    kinds={"pytorch"},
    deps=METHODS,
    description="The original v3 test (30 z x 50 eyes/mouth/pose combinations, property CNN in eval mode) for "
    "every method present — fine-tuned v1..v4 and w directions — side by side: correlation, MAE, "
    "pass share, leakage, time per image.",
)
def controllability_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    settings: RunSettings,
    store: ArtifactStore,
    property_score_cnn: PropertyScoreCnn,
) -> dg.MaterializeResult:
    run, cfg = store.run(context, settings), resolve(mode_of(context), "report", config)
    layout, sources = store.layout(run.mode), store.sources(run.mode)
    present = {name: layout.current(ASSET_FILES[name]) if layout.has(ASSET_FILES[name]) else None for name in METHODS}
    stage = store.stage(context, config=cfg, seed=run.seed, device=run.device)
    result = control.controllability_report(
        run,
        property_score_cnn,
        {v: present[f"stylegan_finetune_{v}"] for v in control.VERSIONS},
        present["latent_directions"],
        lambda: sources.stylegan(settings.seed)[0],
        stage,
        z=cfg["z"],
        stride=cfg["stride"],
        conditional=cfg["conditional"],
    )
    return store.publish(context, stage, result)
