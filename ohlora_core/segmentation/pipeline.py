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
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ohlora_core.artifacts import SegmentationMaps
from ohlora_core.io import atomic_write_bytes, clean_partial_files, sha256_file
from ohlora_core.progress import Progress
from ohlora_core.segmentation.face_crop import crop_faces, face_uint8
from ohlora_core.store import (
    ArtifactChanged,
    BatchDigests,
    FileIndex,
    Ledger,
    RecordTable,
    TableBuilder,
    file_stat,
)

# RGB colour per class (0 background .. 10 hair), the original's visualisation palette.
PALETTE = np.array(
    [
        [0, 0, 0],
        [0, 153, 255],
        [102, 255, 153],
        [0, 204, 153],
        [255, 255, 102],
        [255, 255, 204],
        [255, 153, 0],
        [255, 102, 255],
        [102, 0, 51],
        [255, 204, 255],
        [255, 0, 102],
    ],
    dtype=np.uint8,
)


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


def batch_inputs(numbers: Sequence[int], digests: Sequence[str], batch_size: int) -> BatchDigests:
    """{image number: digest of its batch's contents} — what an image's maps depend on besides the
    recipe. Batches are blocks of `batch_size` image numbers; a batch's digest covers every
    (number, image sha256) in it, so any change to a batch redoes the whole batch. A
    `store.BatchDigests` mapping (one digest per batch, not one entry per image)."""
    members: dict[int, list] = {}
    for no, d in sorted(zip(map(int, numbers), digests, strict=True)):
        members.setdefault(no // batch_size, []).append([no, d])
    by_batch = {b: hashlib.sha256(json.dumps(m).encode()).hexdigest() for b, m in members.items()}
    items = np.unique(np.fromiter((int(n) for n in numbers), np.int64, count=len(numbers)))
    return BatchDigests(items, batch_size, by_batch)


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
    verify: str = "stat",
    shard_devices: Sequence[str] = (),
    recipe=None,
) -> SegmentationSummary:
    """Detect, crop and parse every image into `files`' folder; record each in the folder's ledger.

    `model`: a FaceXFormer (eval) already on `device`; `mtcnn`: from `face_crop.make_mtcnn(device)`.
    `image_digests`: the images' sha256 as their producer recorded them (computed from the files if
    not given). Images without a face are listed in `no_face` and get no files.
    `batched_detection=False` runs MTCNN one image at a time like the original (batched
    convolutions shift box coordinates by ~1e-5 px, which can move an int()-truncated crop edge by
    one pixel in rare cases). `fallback_box`: see `face_crop.crop_faces` (smoke mode only); such
    images are listed in `fallback`. `verify`: how recorded outputs are re-checked (`store.file_intact`).
    `shard_devices`: more than one = the batches to run are split over one worker process per device
    (`ohlora_core.shards`), each with its own MTCNN and the parser `recipe(device)` builds (picklable); the
    same files as in one process, and this process alone writes the ledger.
    """
    if len(image_paths) != len(image_numbers):
        raise ValueError(f"{len(image_paths)} image paths but {len(image_numbers)} image numbers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    paths = dict(zip((int(n) for n in image_numbers), map(Path, image_paths), strict=True))
    digests = list(image_digests) if image_digests is not None else [sha256_file(p) for p in image_paths]
    plan = plan_segmentation(files, image_numbers, digests, batch_size, verify)
    progress = Progress(sum(len(m) for m in plan.work), log, "segmentation_maps", unit="images")
    if log:
        log(
            f"segmentation_maps: {plan.todo_count} of {len(paths)} images to parse ({len(plan.done)} intact already) "
            f"in {len(plan.work)} batch(es) of up to {batch_size}, on {device}"
        )
    options = BatchOptions(batched_detection, fallback_box, visualizations)
    if len(shard_devices) > 1 and len(plan.work) > 1:
        _segment_sharded(plan, files, paths, options, shard_devices, recipe, progress, log)
    else:
        for members in plan.work:
            plan.record(segment_batch(files, members, _wanted(plan, members), paths, model, mtcnn, device, options))
            progress.tick(len(members))
    summary = plan.summary()
    summary.seconds = time.perf_counter() - start
    return summary


@dataclass(frozen=True)
class BatchOptions:
    batched_detection: bool = True
    fallback_box: Sequence[float] | None = None
    visualizations: bool = False


def _wanted(plan: SegmentationPlan, members: Sequence[int]) -> dict[int, str]:
    """{image number: input digest} of the batch's images to write (the others are recorded intact)."""
    return {no: plan.inputs[no] for no in plan.missing(members)}


def segment_batch(
    files: SegmentationMaps,
    members: Sequence[int],
    wanted: Mapping[int, str],
    paths: Mapping[int, Path],
    model,
    mtcnn,
    device,
    options: BatchOptions,
) -> list[dict]:
    """Run one fixed batch (all of `members`: the same contents as a from-scratch run) and write the files of
    the images in `wanted` ({number: input digest}); return their ledger records."""
    crops = dict(
        zip(
            members,
            crop_faces(
                mtcnn,
                [_load_rgb(paths[no]) for no in members],
                batched=options.batched_detection,
                fallback_box=options.fallback_box,
            ),
            strict=True,
        )
    )
    found = [no for no in members if crops[no] is not None]
    labels = faces = {}
    if found:
        x = torch.stack([crops[no].tensor for no in found])
        with torch.inference_mode():
            labels = dict(zip(found, model.parse_labels(x.to(device)).to("cpu", torch.uint8).numpy(), strict=True))
        faces = dict(zip(found, face_uint8(x), strict=True))
    records = []
    for no, digest in wanted.items():
        crop = crops[no]
        if crop is None:
            records.append({"item": no, "input": digest, "files": {}, "no_face": True})
            continue
        outputs = [(files.face(no), encode_png(faces[no], rgb=True)), (files.parsing(no), encode_png(labels[no]))]
        if options.visualizations:
            outputs.append((files.visualization(no), encode_png(overlay(faces[no], labels[no]), rgb=True)))
        records.append({**write_outputs(files, outputs), "item": no, "input": digest, "fallback": crop.prob == 0.0})
    return records


@dataclass(frozen=True)
class _ShardJob:
    """One worker's batches: [(members, {number: input digest to write}, {number: image path})], picklable."""

    files: SegmentationMaps
    batches: list[tuple[list[int], dict[int, str], dict[int, Path]]]
    options: BatchOptions
    recipe: object  # device -> FaceXFormer


def _segment_sharded(
    plan: SegmentationPlan,
    files: SegmentationMaps,
    paths: Mapping[int, Path],
    options: BatchOptions,
    devices: Sequence[str],
    recipe,
    progress: Progress,
    log,
) -> None:
    """The plan's batches over one worker per device; each finished batch's records are written to the ledger
    here as they arrive (the folder was cleaned by `plan_segmentation`, before any worker started)."""
    from ohlora_core import shards

    if recipe is None:
        raise ValueError("sharded segmentation needs a recipe: a picklable device -> FaceXFormer function")
    batches = [(members, _wanted(plan, members), {no: paths[no] for no in members}) for members in plan.work]
    parts = shards.split(batches, len(devices), weight=lambda batch: len(batch[0]))
    jobs = [
        (device, _ShardJob(files, part, options, recipe)) for device, part in zip(devices, parts, strict=False)
    ]  # fewer parts than devices: fewer workers
    if log:
        log(f"segmentation_maps: {len(plan.work)} batches in {len(jobs)} shards on {', '.join(d for d, _ in jobs)}")

    def finished(_shard: int, message) -> None:
        count, records = message
        plan.record(records)
        progress.tick(count)

    shards.run(_segment_shard, jobs, finished, name="segmentation_maps")


def _segment_shard(job: _ShardJob, device: str, emit) -> None:
    """One shard's worker: its own MTCNN and parser on its device; each finished batch goes to the parent as
    (images in the batch, ledger records)."""
    from ohlora_core.segmentation.face_crop import make_mtcnn

    model, mtcnn = job.recipe(device), make_mtcnn(device)
    for members, wanted, paths in job.batches:
        emit((len(members), segment_batch(job.files, members, wanted, paths, model, mtcnn, device, job.options)))


def write_outputs(files: SegmentationMaps, outputs: Sequence[tuple[Path, bytes]]) -> dict:
    """Write each (path, bytes) atomically; return the ledger fields {"files": {name: sha256},
    "stat": {name: (size, mtime_ns)}}: the one hash of each file, from its bytes in memory, and its
    stat taken right after the write."""
    shas, stats = {}, {}
    for path, data in outputs:
        atomic_write_bytes(path, data)
        name = path.relative_to(files.dir).as_posix()
        shas[name], stats[name] = hashlib.sha256(data).hexdigest(), file_stat(path)
    return {"files": shas, "stat": stats}


@dataclass
class SegmentationPlan:
    """The bookkeeping of one `segment_images` call (everything but the model): which batches to
    run, which images to write, and the records, read once and kept column-wise in memory (no
    re-check at the end: what this call wrote it hashed from memory)."""

    ledger: Ledger
    inputs: Mapping[int, str]
    done: RecordTable
    work: list[list[int]]
    written: TableBuilder = field(default_factory=TableBuilder)  # records of this call, packed as they come
    parsed_now: list[int] = field(default_factory=list)  # images this call wrote files for
    _table: RecordTable | None = None

    @property
    def todo_count(self) -> int:
        return sum(1 for members in self.work for no in members if no not in self.done)

    def missing(self, members: Sequence[int]) -> list[int]:
        return [no for no in members if no not in self.done]

    def record(self, records: Sequence[dict]) -> None:
        for item, rec in self.ledger.record(records):
            self.written.add(item, rec)
            if rec.files:
                self.parsed_now.append(item)
        self._table = None

    @property
    def records(self) -> RecordTable:
        """Every requested image's current record (intact before, or written now)."""
        if self._table is None:
            self._table = RecordTable.merge(self.done, self.written.build())
        return self._table

    def summary(self) -> SegmentationSummary:
        final = self.records
        flags = {
            key: [i for i, extra in enumerate(final.extra_values) if dict(extra).get(key)]
            for key in ("no_face", "fallback")
        }
        return SegmentationSummary(
            written=sorted(self.parsed_now),
            skipped=self.done.items[self.done.counts > 0].tolist(),
            no_face=final.items[np.isin(final.extra_ids, flags["no_face"])].tolist(),
            fallback=final.items[np.isin(final.extra_ids, flags["fallback"])].tolist(),
        )


def plan_segmentation(
    files: SegmentationMaps,
    image_numbers: Sequence[int],
    image_digests: Sequence[str],
    batch_size: int,
    verify: str = "stat",
) -> SegmentationPlan:
    """Prepare the results folder (crash leftovers removed), read the ledger once and decide which
    fixed batches must run: those holding an image that is not recorded intact with its input."""
    files.results_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(files.results_dir)
    numbers = [int(n) for n in image_numbers]
    inputs = batch_inputs(numbers, image_digests, batch_size)
    ledger = Ledger(files.dir)
    done = ledger.done(inputs, verify=verify, refresh=True)
    batches: dict[int, list[int]] = {}
    for no in sorted(set(numbers)):
        batches.setdefault(no // batch_size, []).append(no)
    work = [members for members in batches.values() if any(no not in done for no in members)]
    return SegmentationPlan(ledger, inputs, done, work)


_OUTPUT_NAME = re.compile(r"^(?:parsing|face|parsing_visualization)_(\d{6,})\.png$")


def remove_outputs_except(files: SegmentationMaps, keep: Iterable[int]) -> int:
    """Delete the results folder's PNGs of image numbers not in `keep` (images that left the
    filtered set); files not named like our outputs are left alone. One pass, one set: O(files).
    Returns how many files were deleted."""
    keep = {int(n) for n in keep}
    removed = 0
    with os.scandir(files.results_dir) as entries:  # streamed: Path.glob lists the whole folder first
        for entry in entries:
            match = _OUTPUT_NAME.match(entry.name)
            if match and int(match.group(1)) not in keep:
                os.unlink(entry.path)
                removed += 1
    return removed


def verified_maps(files: SegmentationMaps, numbers: Iterable[int], verify: str = "stat") -> None:
    """Check the files of `numbers` (parsed images) against segmentation_maps' manifest before a
    consumer reads them; ArtifactChanged names the first image or file that is missing or changed.
    Files keep the stats recorded beside the manifest, so unchanged files are not read
    (`verify="full"` reads all)."""
    index = FileIndex.load(files.manifest)
    folder = files.results_dir.relative_to(files.dir).as_posix()
    names = []
    for no in map(int, numbers):
        candidates = (files.face(no), files.parsing(no), files.visualization(no))
        listed = [name for name in (f"{folder}/{p.name}" for p in candidates) if name in index]
        if not listed:
            raise ArtifactChanged(
                f"image {no} has no files in segmentation_maps' manifest "
                f"({files.manifest}); re-materialize segmentation_maps"
            )
        names += listed
    index.verify(files.dir, names, "segmentation_maps", verify)
