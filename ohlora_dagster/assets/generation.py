"""Stage 1 — latent codes and raw StyleGAN images (SPEC "Generation")."""

import dagster as dg

from ohlora_core.pictures import histograms, image_grid
from ohlora_dagster.previews import markdown_image, save_picture
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.retry import retry_transient
from ohlora_dagster.tags import GPU_TAGS

GENERATION_VERSION = "1"  # bump when generation code changes its output bytes
RESOLUTION = 256


def load_stylegan(settings: OhloraSettings):
    """The pretrained generator (full) or deterministic random weights (smoke), and its weights id.
    A checkpoint of another resolution is refused here, before any output is touched."""
    from ohlora_core.io import CheckpointError
    from ohlora_core.stylegan import load_generator, smoke_generator

    generator, weights = settings.load_model(smoke_generator, lambda path: load_generator(path, key="generator"),
                                             settings.stylegan_checkpoint,
                                             "StyleGAN checkpoint (genforce celeba_partial-256x256)")
    if generator.resolution != RESOLUTION or generator.z_space_dim != 512:
        raise CheckpointError(f"{weights}: a {generator.resolution}x{generator.resolution} generator with "
                              f"z of {generator.z_space_dim}; ohlora needs genforce's {RESOLUTION}x{RESOLUTION} "
                              f"celeba_partial model (z 512)")
    return generator, weights


@dg.asset(
    group_name="generation",
    code_version=GENERATION_VERSION,
    kinds={"numpy"},
    description="z for every image: row i = N(0, I) from a PCG64 stream seeded with (seed, i).",
)
def latent_codes(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np

    from ohlora_core.artifacts import LatentCodes
    from ohlora_core.generation import latent_codes as make_latents
    from ohlora_core.io import atomic_save_npy

    n = settings.image_count
    stage, files = settings.stage(LatentCodes, {"seed": settings.seed, "count": n, "version": GENERATION_VERSION})
    z = make_latents(settings.seed, range(n))
    atomic_save_npy(files.latents, z)
    digest = stage.promote([files.latents.name])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "preview": markdown_image(histograms({"z (all values)": z.ravel(), "|z| per image": np.linalg.norm(z, axis=1)}),
                                      "latent histograms"),
            "count": n,
            "path": dg.MetadataValue.path(str(settings.current(LatentCodes).latents)),
            "z_mean": float(z.mean()),
            "z_std": float(z.std()),
            **settings.mode_metadata(),
        },
    )


@dg.asset(
    group_name="generation",
    deps=[latent_codes],
    code_version=GENERATION_VERSION,
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    description="256x256 StyleGAN images, one JPEG per index (000123.jpg), generated from latent_codes.",
)
@retry_transient
def raw_images(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np
    from PIL import Image

    from ohlora_core.artifacts import LatentCodes, RawImages
    from ohlora_core.device import halving_batches
    from ohlora_core.generation import batch_input_digests, generate_missing, manifest_digest

    generator, weights = load_stylegan(settings)  # refuses a wrong checkpoint before anything is written
    z = np.load(settings.current(LatentCodes).latents, mmap_mode="r")
    n, device = len(z), settings.resolved_device

    def attempt(batch_size: int):
        # What fixes each image's bytes ("item"); the latents and count only pick which images. Another
        # recipe (another batch size too) gets its own folder, reusing intact images of the current one.
        item = {"weights": weights, "batch_size": batch_size, "device": device,
                "tf32": settings.tf32 and device.startswith("cuda"), "version": GENERATION_VERSION}
        stage, files = settings.stage(RawImages, {"item": item, "latents": settings.data_version(LatentCodes),
                                                  "count": n})
        reused = stage.reuse_items(batch_input_digests(z, range(n), batch_size))
        result = generate_missing(generator, z, n, files, batch_size=batch_size, device=device, tf32=settings.tf32,
                                  log=context.log.info)
        return stage, files, result, reused

    (stage, files, result, reused), batch_size, failed = halving_batches(attempt, settings.batch_size, context.log.info)
    context.log.info(f"generated {len(result.written)} images, {len(result.skipped)} intact already "
                     f"({reused} taken over from the previous recipe)")
    preview = [np.asarray(Image.open(files.image(i))) for i in range(min(n, 32))]
    save_picture(image_grid(preview, cols=8, thumb=None), files.preview)
    digest = stage.promote([files.manifest.name, files.preview.name], digest=manifest_digest(files))
    current = settings.current(RawImages)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "count": n,
            "generated_now": len(result.written),
            "already_present": len(result.skipped),
            "path": dg.MetadataValue.path(str(current.images_dir)),
            "seconds": round(result.seconds, 3),
            "images_per_second": round(result.images_per_second, 2) if result.written else 0.0,
            "preview": markdown_image(image_grid(preview, cols=8, thumb=64), "first images"),
            "preview_file": dg.MetadataValue.path(str(current.preview)),
            "batch_size": batch_size,
            "out_of_memory_at": ", ".join(map(str, failed)) or "none",
            "weights_source": weights,
            **settings.mode_metadata(),
        },
    )
