"""Stage 3 — face detection (MTCNN) and FaceXFormer parsing of the filtered images."""

from __future__ import annotations

from collections.abc import Sequence

from ohlora_core.artifacts import FilteredImages, RawImages, SegmentationMaps
from ohlora_core.pipeline import Run, StageResult
from ohlora_core.store import RecipeDir

PREVIEW_FACES = 8


def filtered_numbers(filtered: FilteredImages) -> list[int]:
    import pandas as pd

    return pd.read_csv(filtered.table)["img_no"].astype(int).tolist()


def facexformer_recipe(sources, seed: int):
    """How a shard's worker builds the parser (picklable: the sources and the seed, no weights)."""
    import functools

    return functools.partial(_facexformer, sources, seed)


def _facexformer(sources, seed: int, device: str):
    return sources.facexformer(seed, device)[0]


def segmentation_maps(
    run: Run,
    filtered_images: FilteredImages,
    raw_images: RawImages,
    out: RecipeDir,
    parser,
    *,
    batch_size: int,
    batched_detection: bool,
    visualizations: bool,
    fallback_box: Sequence[float] | None,
    shard_devices: Sequence[str] = (),
    recipe=None,
) -> StageResult:
    """Per filtered image: the 224x224 label map and face crop (and visualisation); images without a face are
    recorded and left out. `parser`: FaceXFormer, eval mode, on the run's device. More than one `shard_devices`:
    one worker per device, each building its parser with `recipe` (`facexformer_recipe`); the same files."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ohlora_core.generation import raw_image_digests, verified_images
    from ohlora_core.io import atomic_write_csv
    from ohlora_core.pictures import image_grid, save_png
    from ohlora_core.segmentation.face_crop import make_mtcnn
    from ohlora_core.segmentation.pipeline import (
        batch_inputs,
        overlay,
        read_label_map,
        remove_outputs_except,
        segment_images,
    )
    from ohlora_core.store import Ledger

    numbers = filtered_numbers(filtered_images)
    paths = verified_images(raw_images, numbers)  # every input still has the bytes raw_images recorded
    digests = raw_image_digests(raw_images, numbers)  # what raw_images recorded
    files = SegmentationMaps(out.open())
    reused = out.reuse_items(batch_inputs(numbers, digests, batch_size))
    summary = segment_images(
        paths,
        numbers,
        files,
        parser,
        make_mtcnn(run.device),
        run.device,
        batch_size=batch_size,
        image_digests=digests,
        visualizations=visualizations,
        fallback_box=fallback_box,
        batched_detection=batched_detection,
        log=run.log,
        shard_devices=shard_devices,
        recipe=recipe,
    )
    parsed, no_face = summary.parsed, summary.no_face
    run.log(
        f"parsed {len(summary.written)} images now, {len(summary.skipped)} intact already ({reused} taken over "
        f"from the previous recipe); {len(no_face)} without a face"
    )
    atomic_write_csv(files.parsed, pd.DataFrame({"img_no": parsed}))
    atomic_write_csv(files.no_face, pd.DataFrame({"img_no": no_face}))
    remove_outputs_except(files, parsed)  # maps of images that left the filtered set
    faces = [
        overlay(np.asarray(Image.open(files.face(n)).convert("RGB")), read_label_map(files.parsing(n)))
        for n in parsed[:PREVIEW_FACES]
    ]
    save_png(image_grid(faces, cols=4, thumb=None, caption=run.caption), files.preview)
    digest = Ledger(files.dir).write_manifest(files.manifest, numbers)
    return StageResult(
        [files.manifest.name, files.parsed.name, files.no_face.name, files.preview.name],
        digest=digest,
        path=SegmentationMaps.RESULTS,
        pictures={"preview": (image_grid(faces, cols=4, thumb=112, caption=run.caption), "parsing overlays")},
        figures={
            "parsed": len(parsed),
            "no_face_count": len(no_face),
            "no_face_images": ", ".join(map(str, no_face[:100])) or "none",
            "parsed_now": len(summary.written),
            "smoke_centre_crops": len(summary.fallback),
            "seconds": round(summary.seconds, 2),
            "shards": max(len(shard_devices), 1),
            "images_per_second": round(len(summary.written) / summary.seconds, 2) if summary.written else 0.0,
        },
    )
