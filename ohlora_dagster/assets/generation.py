"""Stage 1 — latent codes and raw StyleGAN images (SPEC "Generation")."""

import dagster as dg

from ohlora_dagster.previews import image_grid, markdown_image, save_picture
from ohlora_dagster.resources import OhloraSettings

GENERATION_VERSION = "1"  # bump when generation code changes its output bytes


def load_stylegan(settings: OhloraSettings):
    """The pretrained generator (full) or deterministic random weights (smoke), and its weights id."""
    from ohlora_core.stylegan import load_generator, smoke_generator

    return settings.load_model(smoke_generator, lambda path: load_generator(path, key="generator"),
                               settings.stylegan_checkpoint, "StyleGAN checkpoint (genforce celeba_partial-256x256)")


@dg.asset(
    group_name="generation",
    code_version=GENERATION_VERSION,
    kinds={"numpy"},
    description="z for every image: row i = N(0, I) from a PCG64 stream seeded with (seed, i).",
)
def latent_codes(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np

    from ohlora_core.generation import latent_codes as make_latents
    from ohlora_core.io import atomic_path, sha256_file

    n = settings.image_count
    z = make_latents(settings.seed, range(n))
    path = settings.artifact_dir("latent_codes") / "latents.npy"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, z)
    digest = sha256_file(path)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "count": n,
            "path": dg.MetadataValue.path(str(path)),
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
    description="256x256 StyleGAN images, one JPEG per index (000123.jpg), generated from latent_codes.",
)
def raw_images(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np

    from ohlora_core.generation import generate_images, image_name, write_manifest
    from ohlora_core.io import reset_if_recipe_changed

    z = np.load(settings.artifact_dir("latent_codes") / "latents.npy", mmap_mode="r")
    out_dir = settings.artifact_dir("raw_images")
    images_dir = out_dir / "images"
    generator, weights = load_stylegan(settings)
    # The recipe fixes the bytes of every image; files made under another recipe are removed.
    # z_i depends only on (seed, i), so a larger n keeps the images already made.
    recipe = {
        "weights": weights,
        "latent_seed": settings.seed,
        "batch_size": settings.batch_size,
        "device": settings.resolved_device,
        "tf32": settings.tf32 and settings.resolved_device.startswith("cuda"),
        "version": GENERATION_VERSION,
    }
    removed = reset_if_recipe_changed(out_dir, recipe, "*.jpg")
    if removed:
        context.log.info(f"recipe changed: removed {removed} images made under the old recipe")
    n = len(z)
    for extra in images_dir.glob("*.jpg") if images_dir.exists() else []:
        if not extra.stem.isdigit() or int(extra.stem) >= n:  # from a run with more images
            extra.unlink()

    result = generate_images(
        generator, z, range(n), images_dir, batch_size=settings.batch_size, device=settings.resolved_device,
        tf32=settings.tf32,
    )
    context.log.info(f"generated {len(result.written)} images, {len(result.skipped)} already present")
    digest = write_manifest(images_dir, range(n), out_dir / "manifest.json")

    from PIL import Image

    preview = [np.asarray(Image.open(images_dir / image_name(i))) for i in range(min(n, 32))]
    grid = image_grid(preview, cols=8, thumb=64)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "count": n,
            "generated_now": len(result.written),
            "already_present": len(result.skipped),
            "path": dg.MetadataValue.path(str(images_dir)),
            "seconds": round(result.seconds, 3),
            "images_per_second": round(result.images_per_second, 2) if result.written else 0.0,
            "preview": markdown_image(grid, "first images"),
            "preview_file": save_picture(image_grid(preview, cols=8, thumb=None), out_dir / "preview.png"),
            "weights_source": weights,
            **settings.mode_metadata(),
        },
    )
