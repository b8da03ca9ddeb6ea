"""Face detection, cropping and FaceXFormer face parsing (the `segmentation_maps` stage).

* `face_crop`: facenet-pytorch MTCNN with the original settings and the original's crop maths.
* `facexformer`: FaceXFormer with the official state-dict layout; `parse` gives parsing logits.
* `pipeline`: `segment_images` writes `parsing_{no:06d}.png` + `face_{no:06d}.png` per image
  (file names: `ohlora_core.artifacts.SegmentationMaps`).
"""

from ohlora_core.segmentation.face_crop import FaceCrop, crop_faces, make_mtcnn
from ohlora_core.segmentation.facexformer import FaceXFormer, load_facexformer, smoke_facexformer
from ohlora_core.segmentation.pipeline import (
    PALETTE,
    SegmentationSummary,
    colorize,
    overlay,
    read_label_map,
    segment_images,
)

__all__ = [
    "FaceCrop",
    "crop_faces",
    "make_mtcnn",
    "FaceXFormer",
    "load_facexformer",
    "smoke_facexformer",
    "PALETTE",
    "SegmentationSummary",
    "colorize",
    "overlay",
    "read_label_map",
    "segment_images",
]
