"""Stage 1 — latent codes and raw StyleGAN images (SPEC "Generation")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ohlora_core.artifacts import LatentCodes, RawImages
from ohlora_core.pipeline import Run, StageResult
from ohlora_core.store import RecipeDir

PREVIEW_IMAGES = 32


def latent_codes(run: Run, out: RecipeDir, n: int) -> StageResult:
    """z for images 0..n-1: row i = N(0, I) from a PCG64 stream seeded with (seed, i)."""
    from ohlora_core.generation import latent_preview_values, write_latent_codes
    from ohlora_core.pictures import histograms

    files = LatentCodes(out.open())
    write_latent_codes(files.latents, run.seed, n)  # in chunks: memory stays small whatever n is
    z = latent_preview_values(files.latents)  # histograms of a sample of rows, mean / std of all
    preview = histograms({"z (sampled rows)": z.values, "|z| per image (sampled)": z.norms}, caption=run.caption)
    return StageResult(
        [files.latents.name],
        path=files.latents.name,
        pictures={"preview": (preview, "latent histograms")},
        figures={"count": n, "z_mean": z.mean, "z_std": z.std},
    )


def stylegan_recipe(sources, seed: int):
    """How a shard's worker builds the pretrained generator (picklable: the sources and the seed, no weights)."""
    import functools

    return functools.partial(_stylegan, sources, seed)


def _stylegan(sources, seed: int, device: str):
    return sources.stylegan(seed)[0].to(device)


def raw_images(
    run: Run,
    latent_codes: LatentCodes,
    out: RecipeDir,
    generator,
    batch_size: int,
    tf32: bool,
    shard_devices: Sequence[str] = (),
    recipe=None,
) -> StageResult:
    """Images 0..n-1 of `generator` for the latent codes, one JPEG each; intact images of this recipe (or of
    the previous one with the same per-image recipe) are kept, everything else is (re)generated. More than one
    `shard_devices`: the images are made by one worker per device, each building its generator with `recipe`
    (`stylegan_recipe`); the same bytes as one process."""
    from PIL import Image

    from ohlora_core.generation import LatentFile, batch_input_digests, generate_missing, manifest_digest
    from ohlora_core.pictures import image_grid, save_png

    z = LatentFile(latent_codes.latents)  # rows read on demand
    n, files = len(z), RawImages(out.open())
    inputs = batch_input_digests(z, range(n), batch_size)
    reused = out.reuse_items(inputs)
    result = generate_missing(
        generator,
        z,
        n,
        files,
        batch_size=batch_size,
        device=run.device,
        tf32=tf32,
        log=run.log,
        inputs=inputs,
        shard_devices=shard_devices,
        recipe=recipe,
    )
    run.log(
        f"generated {len(result.written)} images, {len(result.skipped)} intact already "
        f"({reused} taken over from the previous recipe)"
    )
    first = [np.asarray(Image.open(files.image(i))) for i in range(min(n, PREVIEW_IMAGES))]
    save_png(image_grid(first, cols=8, thumb=None, caption=run.caption), files.preview)
    return StageResult(
        [files.manifest.name, files.preview.name],
        digest=manifest_digest(files),
        path=RawImages.IMAGES,
        pictures={"preview": (image_grid(first, cols=8, thumb=64, caption=run.caption), "first images")},
        figures={
            "count": n,
            "generated_now": len(result.written),
            "already_present": len(result.skipped),
            "seconds": round(result.seconds, 3),
            "shards": max(len(shard_devices), 1),
            "images_per_second": round(result.images_per_second, 2) if result.written else 0.0,
        },
    )


def latent_w(run: Run, latent_codes: LatentCodes, out: RecipeDir, generator) -> StageResult:
    """w = mapping(z) of every image's z under the pretrained generator (float32 [N, 512])."""
    import torch

    from ohlora_core.artifacts import LatentW
    from ohlora_core.io import atomic_save_npy

    files = LatentW(out.open())
    from ohlora_core.generation import LatentFile

    z = LatentFile(latent_codes.latents)
    G = generator.to(run.device).eval()
    with torch.no_grad():
        w = np.concatenate(
            [
                G.mapping(torch.from_numpy(np.array(z[i : i + 1024])).to(run.device))["w"].cpu().numpy()
                for i in range(0, len(z), 1024)
            ]
        ).astype(np.float32)
    atomic_save_npy(files.w, w)
    return StageResult([files.w.name], path=files.w.name, figures={"count": len(w), "w_std": float(w.std())})
