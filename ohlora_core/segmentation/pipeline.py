"""The segmentation stage: images -> face crops + FaceXFormer label maps on disk.

Files per image number `no` in the results folder of an `artifacts.SegmentationMaps` (same names
as the original):
* `parsing_{no:06d}.png`: 8-bit single-channel PNG, 224x224, values 0..10.
* `face_{no:06d}.png`: 224x224 RGB face crop (the model input un-normalised,
  byte-exact with the original). A normal colour PNG: `PIL.Image.open` gives RGB,
  `cv2.imread` gives BGR, as with the original's file (it flipped to BGR only
  because cv2.imwrite expects BGR).
* optionally `parsing_visualization_{no:06d}.png`: 50/50 overlay of face and palette.

The model and MTCNN are built once by the caller; images go through in batches fixed by image
number (a batch holds the images of one block of `batch_size` numbers), because batched kernels
round differently for different batch contents: fixed batches make an image's files the same
whether it was parsed in a full run, a resumed one, or alone. A ledger records each finished image
with its batch's input digest and its files' sha256; a rerun redoes exactly the batches whose
inputs changed or whose files are missing or damaged. Writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ohlora_core.artifacts import SegmentationMaps
from ohlora_core.io import atomic_write_bytes, clean_partial_files, sha256_file
from ohlora_core.progress import Progress
from ohlora_core.store import Ledger
from ohlora_core.segmentation.face_crop import crop_faces, face_uint8

# RGB colour per class (0 background .. 10 hair), the original's visualisation palette.
PALETTE = np.array([
    [0, 0, 0], [0, 153, 255], [102, 255, 153], [0, 204, 153], [255, 255, 102], [255, 255, 204],
    [255, 153, 0], [255, 102, 255], [102, 0, 51], [255, 204, 255], [255, 0, 102],
], dtype=np.uint8)


@dataclass
class SegmentationSummary:
    """What one `segment_images` call found (image numbers, sorted)."""

    written: list[int] = field(default_factory=list)  # parsed by this call
    skipped: list[int] = field(default_factory=list)  # recorded as done with intact files
    no_face: list[int] = field(default_factory=list)  # MTCNN found no face; nothing written
    fallback: list[int] = field(default_factory=list)  # no face, parsed from `fallback_box` instead
    seconds: float = 0.0

    @property
    def parsed(self) -> list[int]:
        return sorted(set(self.written) | set(self.skipped))


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


def batch_inputs(numbers: Sequence[int], digests: Sequence[str], batch_size: int) -> dict[int, str]:
    """{image number: digest of its batch's contents} — what an image's maps depend on besides the
    recipe. Batches are blocks of `batch_size` image numbers; a batch's digest covers every
    (number, image sha256) in it, so any change to a batch redoes the whole batch."""
    members: dict[int, list] = {}
    for no, d in sorted(zip(map(int, numbers), digests)):
        members.setdefault(no // batch_size, []).append([no, d])
    by_batch = {b: hashlib.sha256(json.dumps(m).encode()).hexdigest() for b, m in members.items()}
    return {int(no): by_batch[int(no) // batch_size] for no in numbers}


def segment_images(
    image_paths: Sequence[Path],
    image_numbers: Sequence[int],
    files: SegmentationMaps,
    model,
    mtcnn,
    device: str | torch.device,
    batch_size: int = 8,
    *,
    image_digests: Sequence[str] | None = None,
    visualizations: bool = False,
    batched_detection: bool = True,
    fallback_box: Sequence[float] | None = None,
    log=None,
) -> SegmentationSummary:
    """Detect, crop and parse every image into `files`' folder; record each in the folder's ledger.

    `model`: a FaceXFormer (eval) already on `device`; `mtcnn`: from `face_crop.make_mtcnn(device)`.
    `image_digests`: the images' sha256 as their producer recorded them (computed from the files if
    not given). Images without a face are listed in `no_face` and get no files.
    `batched_detection=False` runs MTCNN one image at a time like the original (batched
    convolutions shift box coordinates by ~1e-5 px, which can move an int()-truncated crop edge by
    one pixel in rare cases). `fallback_box`: see `face_crop.crop_faces` (smoke mode only); such
    images are listed in `fallback`.
    """
    if len(image_paths) != len(image_numbers):
        raise ValueError(f"{len(image_paths)} image paths but {len(image_numbers)} image numbers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files.results_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(files.results_dir)
    start = time.perf_counter()
    numbers = [int(n) for n in image_numbers]
    paths = dict(zip(numbers, map(Path, image_paths)))
    digests = list(image_digests) if image_digests is not None else [sha256_file(p) for p in image_paths]
    inputs = batch_inputs(numbers, digests, batch_size)
    ledger = Ledger(files.dir)
    done = ledger.done(inputs)
    summary = SegmentationSummary()
    batches: dict[int, list[int]] = {}
    for no in sorted(numbers):
        batches.setdefault(no // batch_size, []).append(no)

    work = [members for members in batches.values() if any(no not in done for no in members)]
    progress = Progress(sum(len(m) for m in work), log, "segmentation_maps", unit="images")
    if log:
        log(f"segmentation_maps: {sum(1 for n in numbers if n not in done)} of {len(numbers)} images to parse "
            f"({len(done)} intact already) in {len(work)} batch(es) of up to {batch_size}, on {device}")
    for members in work:
        todo = [no for no in members if no not in done]
        # the whole batch runs (same contents as a from-scratch run), only what is missing is written
        crops = dict(zip(members, crop_faces(mtcnn, [_load_rgb(paths[no]) for no in members],
                                             batched=batched_detection, fallback_box=fallback_box)))
        found = [no for no in members if crops[no] is not None]
        labels = faces = {}
        if found:
            x = torch.stack([crops[no].tensor for no in found])
            with torch.inference_mode():
                labels = dict(zip(found, model.parse_labels(x.to(device)).to("cpu", torch.uint8).numpy()))
            faces = dict(zip(found, face_uint8(x)))
        records = []
        for no in todo:
            crop = crops[no]
            record = {"item": no, "input": inputs[no], "files": {}}
            if crop is None:
                record["no_face"] = True
            else:
                record["fallback"] = crop.prob == 0.0
                outputs = [(files.face(no), encode_png(faces[no], rgb=True)),
                           (files.parsing(no), encode_png(labels[no]))]
                if visualizations:
                    outputs.append((files.visualization(no), encode_png(overlay(faces[no], labels[no]), rgb=True)))
                for path, data in outputs:
                    atomic_write_bytes(path, data)
                    record["files"][path.relative_to(files.dir).as_posix()] = hashlib.sha256(data).hexdigest()
                summary.written.append(no)
            records.append(record)
        ledger.record(records)
        progress.tick(len(members))

    final = ledger.done(inputs)
    summary.skipped = sorted(no for no, rec in done.items() if rec["files"])
    summary.no_face = sorted(no for no, rec in final.items() if rec.get("no_face"))
    summary.fallback = sorted(no for no, rec in final.items() if rec.get("fallback"))
    summary.written.sort()
    summary.seconds = time.perf_counter() - start
    return summary

