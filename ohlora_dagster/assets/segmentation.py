"""Stage 3 — face detection (MTCNN) and FaceXFormer parsing of the filtered images."""
import dagster as dg
from pydantic import Field

from ohlora_dagster.assets.filtering import filtered_images
from ohlora_core.pictures import image_grid
from ohlora_dagster.previews import markdown_image, save_picture
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.retry import retry_transient
from ohlora_dagster.tags import GPU_TAGS

SEGMENTATION_VERSION = "2"
# Smoke mode's random-weight StyleGAN draws no faces; parse the centre, where StyleGAN puts the face.
SMOKE_FACE_BOX = (64.0, 64.0, 192.0, 192.0)


class SegmentationConfig(dg.Config):
    batch_size: int | None = Field(default=None, gt=0, description="Images per batch: the filtered images of one "
                                   "block of this many image numbers; unset = settings.batch_size.")
    batched_detection: bool = Field(default=True, description="Run MTCNN on whole batches (fast). false = one image "
                                    "at a time as the original did: its exact crop boxes (batched boxes differ by "
                                    "~1e-5 px, which moves an int()-truncated crop edge in rare cases).")
    visualizations: bool = Field(default=True, description="Also write parsing_visualization_*.png (face + palette "
                                 "overlay), as the original did.")


def load_parser(settings: OhloraSettings):
    """FaceXFormer on the settings' device (full: the official checkpoint; smoke: random weights)."""
    from ohlora_core.segmentation.facexformer import load_facexformer, smoke_facexformer

    model, weights = settings.load_model(smoke_facexformer, load_facexformer, settings.facexformer_checkpoint,
                                         "FaceXFormer checkpoint (state_dict_backbone)")
    return model.to(settings.resolved_device).eval(), weights


@dg.asset(
    group_name="segmentation",
    deps=[filtered_images],
    code_version=SEGMENTATION_VERSION,
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    description="Per filtered image: 224x224 FaceXFormer label map (classes 0..10) and the 224x224 face crop.",
)
@retry_transient
def segmentation_maps(context: dg.AssetExecutionContext, config: SegmentationConfig,
                      settings: OhloraSettings) -> dg.MaterializeResult:
    import json

    import numpy as np
    import pandas as pd
    from PIL import Image

    from ohlora_core.artifacts import FilteredImages, RawImages, SegmentationMaps
    from ohlora_core.device import halving_batches
    from ohlora_core.generation import verified_images
    from ohlora_core.io import atomic_write_csv
    from ohlora_core.segmentation.face_crop import make_mtcnn
    from ohlora_core.segmentation.pipeline import batch_inputs, overlay, read_label_map, segment_images
    from ohlora_core.store import Ledger

    kept = pd.read_csv(settings.current(FilteredImages).table)
    numbers = kept["img_no"].astype(int).tolist()
    raw = settings.current(RawImages)
    manifest = json.loads(raw.manifest.read_text())
    digests = [manifest[raw.image_key(n)] for n in numbers]  # what raw_images wrote; checked below
    model, weights = load_parser(settings)
    device = settings.resolved_device
    paths = verified_images(raw, numbers)  # every input still has the bytes raw_images recorded

    def attempt(batch_size: int):
        # What fixes each image's files ("item"); the inputs pick which images and with which bytes.
        item = {"weights": weights, "device": device, "batch_size": batch_size, "version": SEGMENTATION_VERSION,
                "batched_detection": config.batched_detection, "visualizations": config.visualizations,
                "fallback_box": SMOKE_FACE_BOX if settings.is_smoke else None}
        stage, files = settings.stage(SegmentationMaps, {"item": item, "images": settings.data_version(RawImages),
                                                         "filtered": settings.data_version(FilteredImages)})
        reused = stage.reuse_items(batch_inputs(numbers, digests, batch_size))
        summary = segment_images(
            paths, numbers, files, model, make_mtcnn(device), device, batch_size=batch_size, image_digests=digests,
            visualizations=config.visualizations, batched_detection=config.batched_detection,
            fallback_box=SMOKE_FACE_BOX if settings.is_smoke else None, log=context.log.info,
        )
        return stage, files, summary, reused

    (stage, files, summary, reused), batch_size, failed = halving_batches(
        attempt, config.batch_size or settings.batch_size, context.log.info)
    parsed, no_face = summary.parsed, summary.no_face
    context.log.info(f"parsed {len(summary.written)} images now, {len(summary.skipped)} intact already "
                     f"({reused} taken over from the previous recipe); {len(no_face)} without a face")
    atomic_write_csv(files.parsed, pd.DataFrame({"img_no": parsed}))
    atomic_write_csv(files.no_face, pd.DataFrame({"img_no": no_face}))
    for extra in files.results_dir.glob("*.png"):  # images that left the filtered set
        if int(extra.stem.rsplit("_", 1)[1]) not in set(parsed):
            extra.unlink()
    previews = [overlay(np.asarray(Image.open(files.face(n)).convert("RGB")), read_label_map(files.parsing(n)))
                for n in parsed[:8]]
    save_picture(image_grid(previews, cols=4, thumb=None), files.preview)
    digest = Ledger(files.dir).write_manifest(files.manifest, numbers)
    digest = stage.promote([files.manifest.name, files.parsed.name, files.no_face.name, files.preview.name],
                           digest=digest)
    current = settings.current(SegmentationMaps)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "parsed": len(parsed),
            "no_face_count": len(no_face),
            "no_face_images": ", ".join(map(str, no_face[:100])) or "none",
            "parsed_now": len(summary.written),
            "smoke_centre_crops": len(summary.fallback),
            "seconds": round(summary.seconds, 2),
            "images_per_second": round(len(summary.written) / summary.seconds, 2) if summary.written else 0.0,
            "preview": markdown_image(image_grid(previews, cols=4, thumb=112), "parsing overlays"),
            "preview_file": dg.MetadataValue.path(str(current.preview)),
            "path": dg.MetadataValue.path(str(current.results_dir)),
            "batch_size": batch_size,
            "out_of_memory_at": ", ".join(map(str, failed)) or "none",
            "weights_source": weights,
            **settings.mode_metadata(),
        },
    )
