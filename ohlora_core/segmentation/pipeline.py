"""The segmentation stage: images -> face crops + FaceXFormer label maps on disk.

Files per image number `no` in `out_dir` (same names as the original):
* `parsing_{no:06d}.png`: 8-bit single-channel PNG, 224x224, values 0..10.
* `face_{no:06d}.png`: 224x224 RGB face crop (the model input un-normalised,
  byte-exact with the original). A normal colour PNG: `PIL.Image.open` gives RGB,
  `cv2.imread` gives BGR, as with the original's file (it flipped to BGR only
  because cv2.imwrite expects BGR).
* optionally `parsing_visualization_{no:06d}.png`: 50/50 overlay of face and palette.

The model and MTCNN are built once by the caller; images go through in batches.
An image is skipped when its files already exist, so a rerun after a crash
only does what is missing; writes are atomic.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ohlora_core.io import atomic_write_bytes, clean_partial_files
from ohlora_core.segmentation.face_crop import crop_faces, face_uint8

# RGB colour per class (0 background .. 10 hair), the original's visualisation palette.
PALETTE = np.array([
    [0, 0, 0], [0, 153, 255], [102, 255, 153], [0, 204, 153], [255, 255, 102], [255, 255, 204],
    [255, 153, 0], [255, 102, 255], [102, 0, 51], [255, 204, 255], [255, 0, 102],
], dtype=np.uint8)


@dataclass
class SegmentationSummary:
    """What one `segment_images` call did (image numbers, in input order)."""

    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # files already present
    no_face: list[int] = field(default_factory=list)  # MTCNN found no face; nothing written
    fallback: list[int] = field(default_factory=list)  # no face, parsed from `fallback_box` instead
    seconds: float = 0.0


def parsing_path(out_dir: Path, no: int) -> Path:
    return Path(out_dir) / f"parsing_{no:06d}.png"


def face_path(out_dir: Path, no: int) -> Path:
    return Path(out_dir) / f"face_{no:06d}.png"


def visualization_path(out_dir: Path, no: int) -> Path:
    return Path(out_dir) / f"parsing_visualization_{no:06d}.png"


def colorize(label_map: np.ndarray) -> np.ndarray:
    """(H, W) labels 0..10 -> (H, W, 3) uint8 RGB with the original palette."""
    label_map = np.asarray(label_map)
    if label_map.min(initial=0) < 0 or label_map.max(initial=0) >= len(PALETTE):
        raise ValueError(f"label map values must be in 0..{len(PALETTE) - 1}, got {label_map.min()}..{label_map.max()}")
    return PALETTE[label_map]


def overlay(face: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """50/50 blend of an RGB uint8 face and its colourised labels (cv2.addWeighted, as the original)."""
    return cv2.addWeighted(np.ascontiguousarray(face), 0.5, colorize(label_map), 0.5, 0)


def encode_png(array: np.ndarray, rgb: bool = False) -> bytes:
    """Lossless PNG bytes of a uint8 (H, W) or RGB (H, W, 3) array."""
    if rgb:
        array = array[:, :, ::-1]  # cv2 writes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a PNG")
    return buf.tobytes()


def prune_outputs(out_dir: Path, keep: set[int]) -> int:
    """Delete the files of images not in `keep` (e.g. no longer in the filtered set); return how many."""
    removed = 0
    for p in Path(out_dir).glob("*_[0-9][0-9][0-9][0-9][0-9][0-9].png"):
        if int(p.stem.rsplit("_", 1)[1]) not in keep:
            p.unlink()
            removed += 1
    return removed


def read_label_map(path: Path) -> np.ndarray:
    """Read a `parsing_*.png` back as (224, 224) uint8."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit single-channel PNG label map")
    return arr


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def segment_images(
    image_paths: Sequence[Path],
    image_numbers: Sequence[int],
    out_dir: Path,
    model,
    mtcnn,
    device: str | torch.device,
    batch_size: int = 8,
    *,
    visualizations: bool = False,
    batched_detection: bool = True,
    fallback_box: Sequence[float] | None = None,
) -> SegmentationSummary:
    """Detect, crop and parse every image; write its label map and face crop to `out_dir`.

    `model`: a FaceXFormer (eval) already on `device`; `mtcnn`: from
    `face_crop.make_mtcnn(device)`. Detection and parsing run `batch_size`
    images at a time. Images whose `parsing_*` and `face_*` files exist are
    skipped; images without a face are listed in `no_face` and get no files.
    `batched_detection=False` runs MTCNN one image at a time like the original
    (batched convolutions shift box coordinates by ~1e-5 px, which can move an
    int()-truncated crop edge by one pixel in rare cases). `fallback_box`: see
    `face_crop.crop_faces` (smoke mode only); such images are listed in `fallback`.
    """
    if len(image_paths) != len(image_numbers):
        raise ValueError(f"{len(image_paths)} image paths but {len(image_numbers)} image numbers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(out_dir)
    start = time.perf_counter()
    summary = SegmentationSummary()

    def done(no: int) -> bool:
        paths = [parsing_path(out_dir, no), face_path(out_dir, no)]
        if visualizations:
            paths.append(visualization_path(out_dir, no))
        return all(p.is_file() for p in paths)

    todo: list[tuple[Path, int]] = []
    for path, no in zip(image_paths, image_numbers):
        if done(int(no)):
            summary.skipped.append(int(no))
        else:
            todo.append((Path(path), int(no)))

    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        crops = crop_faces(mtcnn, [_load_rgb(p) for p, _ in chunk], batched=batched_detection,
                           fallback_box=fallback_box)
        summary.fallback += [no for (_, no), c in zip(chunk, crops) if c is not None and c.prob == 0.0]
        found = [(no, c) for (_, no), c in zip(chunk, crops) if c is not None]
        summary.no_face += [no for (_, no), c in zip(chunk, crops) if c is None]
        if not found:
            continue
        x = torch.stack([c.tensor for _, c in found])
        with torch.inference_mode():
            labels = model.parse_labels(x.to(device)).to("cpu", torch.uint8).numpy()
        faces = face_uint8(x)
        for (no, _), label_map, face in zip(found, labels, faces):
            # Face first: a label map on disk means its face is there too (parsing is written last).
            atomic_write_bytes(face_path(out_dir, no), encode_png(face, rgb=True))
            if visualizations:
                atomic_write_bytes(visualization_path(out_dir, no), encode_png(overlay(face, label_map), rgb=True))
            atomic_write_bytes(parsing_path(out_dir, no), encode_png(label_map))
            summary.written.append(no)
    summary.seconds = time.perf_counter() - start
    return summary
