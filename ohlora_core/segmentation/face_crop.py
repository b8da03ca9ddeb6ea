"""Face detection (facenet-pytorch MTCNN) and the original's crop/normalise maths.

Original flow per image (`segmentation/inference.py` of Oh-LoRA, copied from
FaceXFormer's `inference.py`): MTCNN(keep_all=True).detect -> largest box ->
`adjust_bbox` (+25 % of the box size on each side, clipped to the image) ->
`PIL.crop` with int() truncation -> Resize((224, 224), BICUBIC) -> ToTensor ->
ImageNet Normalize. The saved face image is that tensor un-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

FACE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MARGIN_PERCENTAGE = 50

_TO_MODEL_INPUT = transforms.Compose(
    [
        transforms.Resize((FACE_SIZE, FACE_SIZE), interpolation=InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]
)


@dataclass(frozen=True)
class FaceCrop:
    """One detected face: the MTCNN box (float32 x1, y1, x2, y2), its probability,
    the integer crop box actually cut, and the normalised (3, 224, 224) model input."""

    box: tuple[float, float, float, float]
    prob: float
    crop_box: tuple[int, int, int, int]
    tensor: torch.Tensor


def make_mtcnn(device: str | torch.device = "cpu"):
    """facenet-pytorch MTCNN with the original's settings (its shipped P/R/O-Net weights).

    keep_all=True and the defaults min_face_size=20, thresholds=[0.6, 0.7, 0.7],
    factor=0.709, select_largest=True (boxes sorted by area, largest first).
    """
    from facenet_pytorch import MTCNN

    return MTCNN(
        keep_all=True,
        min_face_size=20,
        thresholds=[0.6, 0.7, 0.7],
        factor=0.709,
        select_largest=True,
        device=torch.device(device),
    )


def detect_largest_faces(
    mtcnn, images: Sequence[Image.Image], batched: bool = True
) -> list[tuple[np.ndarray, float] | None]:
    """Largest face box (float32 [x1, y1, x2, y2]) and its probability per image, None if no face.

    batched: images of equal size go through one MTCNN call (facenet's detect
    needs equal sizes in a batch, so mixed sizes are grouped). Batched
    convolutions round differently, so boxes can differ from one-image calls
    (the original's) by ~1e-5 px; batched=False gives the original's numbers.
    """
    out: list[tuple[np.ndarray, float] | None] = [None] * len(images)
    groups: dict[object, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.size if batched else i, []).append(i)
    for indices in groups.values():
        boxes, probs = mtcnn.detect([images[i] for i in indices])
        for i, b, p in zip(indices, boxes, probs):
            if b is not None and len(b):
                out[i] = (np.asarray(b[0], dtype=np.float32), float(p[0]))
    return out


def expand_box(
    box: Sequence[float], width: int, height: int, margin_percentage: float = MARGIN_PERCENTAGE
) -> tuple[float, float, float, float]:
    """The original's `adjust_bbox`: grow each side by margin/2 % of the box size, clip to the image.

    All in float64: for a single PIL image facenet's `detect` returns an object
    array of Python floats (the float32 box values widened), so the original's
    arithmetic was float64 whatever NumPy's promotion rules. `max`/`min` are
    Python's, as in the original.
    """
    x1, y1, x2, y2 = (float(np.float32(v)) for v in box)
    grow_w = (x2 - x1) * (margin_percentage / 100.0) / 2
    grow_h = (y2 - y1) * (margin_percentage / 100.0) / 2
    return (max(0, x1 - grow_w), max(0, y1 - grow_h), min(width, x2 + grow_w), min(height, y2 + grow_h))


def crop_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Expanded box with int() truncation, as passed to `PIL.Image.crop` by the original."""
    x1, y1, x2, y2 = expand_box(box, width, height)
    return int(x1), int(y1), int(x2), int(y2)


def face_tensor(image: Image.Image, box_int: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop -> 224x224 bicubic (PIL, aspect not kept) -> ToTensor -> ImageNet-normalise: (3, 224, 224)."""
    return _TO_MODEL_INPUT(image.convert("RGB").crop(box_int))


def crop_faces(
    mtcnn, images: Sequence[Image.Image], batched: bool = True, fallback_box: Sequence[float] | None = None
) -> list[FaceCrop | None]:
    """Detect and crop every image; None where no face was found.

    `fallback_box` (x1, y1, x2, y2, before the 50 % growth) is cropped instead where MTCNN finds
    no face, with prob 0.0 marking it. Only smoke mode uses it: random-weight StyleGAN images hold
    no faces, and the later stages still need maps to run on.
    """
    crops: list[FaceCrop | None] = []
    for img, det in zip(images, detect_largest_faces(mtcnn, images, batched=batched)):
        if det is None and fallback_box is not None:
            det = (np.asarray(fallback_box, dtype=np.float32), 0.0)
        if det is None:
            crops.append(None)
            continue
        box, prob = det
        cbox = crop_box(box, *img.size)
        crops.append(FaceCrop(tuple(float(v) for v in box), prob, cbox, face_tensor(img, cbox)))
    return crops


def face_uint8(x: torch.Tensor) -> np.ndarray:
    """Normalised (B, 3, H, W) or (3, H, W) tensor -> uint8 RGB (B, H, W, 3) / (H, W, 3) face image.

    Byte-exact with the original's `face_{no}.png`: float32 `x * std + mean`,
    clamp to [0, 1], `* 255`, then truncation to uint8 (not rounding).
    """
    x = x.detach().to("cpu", torch.float32)
    shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(shape)
    std = torch.tensor(IMAGENET_STD).view(shape)
    img = torch.clamp(x * std + mean, 0, 1)
    arr = img.movedim(-3, -1).numpy() * np.float32(255)
    return arr.astype(np.uint8)
