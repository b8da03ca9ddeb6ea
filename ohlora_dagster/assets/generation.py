"""Stage 1 — latent codes and raw StyleGAN images (SPEC "Generation")."""

import dagster as dg

from ohlora_core.artifacts import LatentCodes
from ohlora_core.pipeline import generation
from ohlora_dagster.gpu import gpu_asset
from ohlora_dagster.resources import ArtifactStore, RunSettings, mode_of


@dg.asset(
    group_name="generation",
    kinds={"numpy"},
    description="z for every image: row i = N(0, I) from a PCG64 stream seeded with (seed, i).",
)
def latent_codes(
    context: dg.AssetExecutionContext, settings: RunSettings, store: ArtifactStore
) -> dg.MaterializeResult:
    n, _ = settings.counts(mode_of(context))
    stage = store.stage(context, seed=settings.seed, count=n)
    return store.publish(context, stage, generation.latent_codes(store.run(context, settings), stage, n))


@gpu_asset(
    sharded=True,
    group_name="generation",
    kinds={"pytorch"},
    description="256x256 StyleGAN images, one JPEG per index (000123.jpg), generated from latent_codes.",
)
def raw_images(
    context: dg.AssetExecutionContext, settings: RunSettings, store: ArtifactStore, latent_codes: LatentCodes
) -> dg.MaterializeResult:
    run, sources = store.run(context, settings), store.sources(mode_of(context))
    G, weights = sources.stylegan(settings.seed)  # a wrong checkpoint is refused before any write
    tf32 = settings.tf32 and run.device.startswith("cuda")
    shards = {"shard_devices": settings.shard_list(), "recipe": generation.stylegan_recipe(sources, settings.seed)}
    stage, result = store.stage_halving(  # the shards are not in the recipe: they give the same bytes
        context,
        settings.batch_size,
        lambda b: {"weights": weights, "batch_size": b, "device": run.device, "tf32": tf32},
        lambda stage, b: generation.raw_images(run, latent_codes, stage, G, b, settings.tf32, **shards),
    )
    return store.publish(context, stage, result)
