"""Stage 3 — face detection (MTCNN) and FaceXFormer parsing of the filtered images."""

import dagster as dg
from pydantic import Field

from ohlora_core.artifacts import FilteredImages, RawImages
from ohlora_core.pipeline import segmentation
from ohlora_dagster.gpu import gpu_asset
from ohlora_dagster.presets import resolve
from ohlora_dagster.resources import ArtifactStore, RunSettings, mode_of


class SegmentationConfig(dg.Config):
    batch_size: int | None = Field(
        default=None,
        gt=0,
        description="Images per batch: the filtered images of one "
        "block of this many image numbers; unset = settings.batch_size.",
    )
    batched_detection: bool = Field(
        default=True,
        description="Run MTCNN on whole batches (fast). false = one image "
        "at a time as the original did: its exact crop boxes (batched boxes differ by "
        "~1e-5 px, which moves an int()-truncated crop edge in rare cases).",
    )
    visualizations: bool = Field(
        default=True,
        description="Also write parsing_visualization_*.png (face + palette overlay), as the original did.",
    )


@gpu_asset(
    sharded=True,
    group_name="segmentation",
    kinds={"pytorch"},
    description="Per filtered image: 224x224 FaceXFormer label map (classes 0..10) and the 224x224 face crop.",
)
def segmentation_maps(
    context: dg.AssetExecutionContext,
    config: SegmentationConfig,
    settings: RunSettings,
    store: ArtifactStore,
    filtered_images: FilteredImages,
    raw_images: RawImages,
) -> dg.MaterializeResult:
    run, cfg = store.run(context, settings), resolve(mode_of(context), "segmentation", config)
    sources = store.sources(run.mode)
    parser, weights = sources.facexformer(settings.seed, run.device)
    options = {k: cfg[k] for k in ("batched_detection", "visualizations", "fallback_box")}
    shards = {"shard_devices": settings.shard_list(), "recipe": segmentation.facexformer_recipe(sources, settings.seed)}
    stage, result = store.stage_halving(  # the shards are not in the recipe: they give the same bytes
        context,
        cfg["batch_size"] or settings.batch_size,
        lambda b: {"weights": weights, "device": run.device, "batch_size": b, **options},
        lambda stage, b: segmentation.segmentation_maps(
            run, filtered_images, raw_images, stage, parser, batch_size=b, **options, **shards
        ),
    )
    return store.publish(context, stage, result)
