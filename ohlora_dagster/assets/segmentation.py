"""Stage 3 — face detection (MTCNN) and FaceXFormer parsing of the filtered images."""
import dagster as dg

from ohlora_dagster.assets.filtering import filtered_images
from ohlora_dagster.previews import image_grid, markdown_image, save_picture
from ohlora_dagster.resources import OhloraSettings

SEGMENTATION_VERSION = "1"
# Smoke mode's random-weight StyleGAN draws no faces; parse the centre, where StyleGAN puts the face.
SMOKE_FACE_BOX = (64.0, 64.0, 192.0, 192.0)


def load_parser(settings: OhloraSettings):
    """FaceXFormer on the settings' device (full: the official checkpoint; smoke: random weights)."""
    from ohlora_core.segmentation.facexformer import load_facexformer, smoke_facexformer

    model, weights = settings.load_model(smoke_facexformer, load_facexformer, settings.facexformer_checkpoint,
                                         "FaceXFormer checkpoint (state_dict_backbone)")
    return model.to(settings.resolved_device).eval(), weights


def segmentation_dir(settings: OhloraSettings):
    return settings.artifact_dir("segmentation_maps") / "segmentation_results"


@dg.asset(
    group_name="segmentation",
    deps=[filtered_images],
    code_version=SEGMENTATION_VERSION,
    kinds={"pytorch"},
    pool="gpu",
    description="Per filtered image: 224x224 FaceXFormer label map (classes 0..10) and the 224x224 face crop.",
)
def segmentation_maps(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ohlora_core.io import atomic_write_csv, reset_if_recipe_changed, sha256_of_files
    from ohlora_core.segmentation.face_crop import make_mtcnn
    from ohlora_core.segmentation.pipeline import (face_path, overlay, parsing_path, prune_outputs, read_label_map,
                                                   segment_images)

    kept = pd.read_csv(settings.artifact_dir("filtered_images") / "filtered_images.csv")
    numbers = kept["img_no"].astype(int).tolist()
    out_dir = segmentation_dir(settings)
    model, weights = load_parser(settings)
    device = settings.resolved_device
    recipe = {"weights": weights, "version": SEGMENTATION_VERSION}
    reset_if_recipe_changed(out_dir.parent, recipe, "*.png")  # maps made with other weights go
    summary = segment_images(
        [settings.path(p) for p in kept["img_path"]], numbers, out_dir, model, make_mtcnn(device), device,
        batch_size=min(settings.batch_size, 32), fallback_box=SMOKE_FACE_BOX if settings.is_smoke else None,
    )
    prune_outputs(out_dir, set(numbers))  # images no longer in the filtered set
    parsed = sorted(n for n in numbers if parsing_path(out_dir, n).exists())
    no_face = sorted(set(numbers) - set(parsed))
    index = pd.DataFrame({"img_no": parsed})
    atomic_write_csv(out_dir.parent / "parsed_images.csv", index)
    atomic_write_csv(out_dir.parent / "no_face_images.csv", pd.DataFrame({"img_no": no_face}))
    digest = sha256_of_files(p for n in parsed for p in (parsing_path(out_dir, n), face_path(out_dir, n)))
    previews = [overlay(np.asarray(Image.open(face_path(out_dir, n)).convert("RGB")), read_label_map(parsing_path(out_dir, n)))
                for n in parsed[:8]]
    grid = image_grid(previews, cols=4, thumb=112)
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
            "preview": markdown_image(grid, "parsing overlays"),
            "preview_file": save_picture(image_grid(previews, cols=4, thumb=None), out_dir.parent / "preview.png"),
            "path": dg.MetadataValue.path(str(out_dir)),
            "weights_source": weights,
            **settings.mode_metadata(),
        },
    )
