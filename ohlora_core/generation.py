"""Latent codes and image generation (the original's `run_original_generator.py`).

Two guarantees the rest of the pipeline builds on:

* z for image i is a pure function of (seed, i): a PCG64 stream seeded with the
  SeedSequence entropy [seed, i]. Any image can be regenerated alone.
* An image's bytes do not depend on which other images were requested: batches are
  aligned to absolute indices (batch b always holds images b*B .. b*B+B-1), so
  regenerating image 123 alone runs exactly the batch it ran in the first time.
  (Float kernels may pick different algorithms for different batch sizes; aligned
  batches make the question moot.)

Files are written atomically and named by index (`000123.jpg`), so a killed run
leaves no partial image. `generate_missing` keeps a ledger of finished batches (input z and
output sha256), so a rerun redoes exactly what is missing, damaged or made from other z.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ohlora_core.artifacts import image_name
from ohlora_core.io import atomic_path, atomic_write_bytes, clean_partial_files, sha256_file
from ohlora_core.progress import Progress

LATENT_DIM = 512
JPEG_QUALITY = 95  # OpenCV's default, what the original's cv2.imwrite used
# The original generated with these settings (truncation off, stored noise buffers).
GENERATOR_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)
# Batches generated but not yet written, at most: the device runs ahead of the JPEG writers by this much,
# and no further (without a bound a fast device queued every image of the run in memory: O(n)).
MAX_BATCHES_IN_FLIGHT = 4


def latent_for_index(seed: int, index: int, dim: int = LATENT_DIM) -> np.ndarray:
    """z for image `index`: float32 [dim], depends only on (seed, index)."""
    out = np.empty(dim, np.float32)
    _fill_latent(seed, index, out)
    return out


def _fill_latent(seed: int, index: int, out: np.ndarray) -> None:
    """Write z of image `index` into `out` (float32 [dim]) in place: the same values as a fresh array."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))
    rng.standard_normal(dtype=np.float32, out=out)


def latent_codes(seed: int, indices: Iterable[int], dim: int = LATENT_DIM) -> np.ndarray:
    """z of `indices`, row k = `latent_for_index(seed, indices[k])`: float32 [N, dim]. Rows are drawn
    into one preallocated array (no per-row arrays, no stacking copy): peak memory is the result."""
    idx = indices if isinstance(indices, range) else np.fromiter((int(i) for i in indices), np.int64)
    out = np.empty((len(idx), dim), np.float32)
    for k, i in enumerate(idx):
        _fill_latent(seed, int(i), out[k])
    return out


def write_latent_codes(path: str | os.PathLike, seed: int, n: int, chunk: int = 4096, dim: int = LATENT_DIM) -> None:
    """Write `latent_codes(seed, range(n))` to `path` as `.npy`, byte-identical to `np.save` of that
    array, holding at most `chunk` rows in memory (10^6 images: a 2 GB file, ~8 MB in memory).
    Atomic: the file appears complete or not at all (a killed run leaves only a temp file)."""
    if n < 0 or chunk < 1:
        raise ValueError(f"n must be >= 0 and chunk >= 1, got n={n}, chunk={chunk}")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (n, dim)}
    buf = np.empty((max(1, min(chunk, n)), dim), np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)  # the header np.save writes for this shape
        for lo in range(0, n, chunk):
            rows = buf[: min(chunk, n - lo)]
            for k in range(len(rows)):
                _fill_latent(seed, lo + k, rows[k])
            f.write(memoryview(rows).cast("B"))


@dataclass
class LatentPreview:
    """Histogram inputs of a latents file from an evenly spaced sample of rows (bounded memory),
    and the mean / std of every value (float64 sums over chunks)."""

    values: np.ndarray  # every value of the sampled rows
    norms: np.ndarray  # |z| of each sampled row
    mean: float
    std: float
    rows: int  # rows in the file
    sampled: int  # rows in the sample

    def histograms(self) -> dict[str, np.ndarray]:
        suffix = "" if self.sampled == self.rows else f" ({self.sampled} of {self.rows} rows)"
        return {f"z (all values){suffix}": self.values, f"|z| per image{suffix}": self.norms}


class LatentFile:
    """Rows of a latents `.npy` read on demand (`len`, `[lo:hi]`, `[[i, j, ...]]`), without a memory
    map: resident memory holds only the rows asked for (a 2 GB memory-mapped file read once counts
    fully in the process's RSS). Usable wherever `generate_missing` / `batch_input_digests` take
    latents."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{self.path}: expected a C-ordered 2-d array, got shape {shape} (fortran {fortran})")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        with open(self.path, "rb") as f:
            if isinstance(key, slice):
                lo, hi, step = key.indices(len(self))
                if step != 1:
                    raise IndexError("LatentFile slices must have step 1")
                return self._read(f, lo, max(hi - lo, 0))
            if np.ndim(key) == 0:
                return self._read(f, int(key), 1)[0]
            rows = [self._read(f, int(i), 1) for i in np.asarray(key).ravel()]
            return np.concatenate(rows) if rows else np.zeros((0, self.shape[1]), self.dtype)

    def _read(self, f, lo: int, count: int) -> np.ndarray:
        if not 0 <= lo <= len(self) or lo + count > len(self):
            raise IndexError(f"rows {lo}..{lo + count} outside the {len(self)} rows of {self.path}")
        out = np.empty((count, self.shape[1]), self.dtype)
        f.seek(self.offset + lo * self.row_bytes)
        if f.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise ValueError(f"{self.path} is shorter than its header says")
        return out


def latent_preview_values(path: str | os.PathLike, max_rows: int = 4096, chunk: int = 2048) -> LatentPreview:
    """Preview figures of a latents `.npy`: at most `max_rows` evenly spaced rows for the histograms,
    `chunk` rows at a time for mean and std (memory: the sample and one chunk, whatever the size)."""
    z = LatentFile(path)
    n = len(z)
    rows = np.unique(np.linspace(0, n - 1, min(n, max_rows)).round().astype(np.int64)) if n else np.zeros(0, np.int64)
    sample = z[rows]
    total = total_sq = 0.0
    for lo in range(0, n, chunk):
        block = z[lo : lo + chunk].astype(np.float64)
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
    count = n * z.shape[1]
    mean = total / count if count else float("nan")
    std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0))) if count else float("nan")
    return LatentPreview(sample.ravel(), np.linalg.norm(sample, axis=1), mean, std, n, len(rows))


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB uint8 HxWx3 -> JPEG bytes, encoded as the original's cv2.imwrite did."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


@dataclass
class GenerationResult:
    written: list[int] = field(default_factory=list)  # indices generated by this call
    skipped: list[int] = field(default_factory=list)  # recorded as done with intact bytes, left untouched
    seconds: float = 0.0
    generator_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.written) / self.seconds if self.seconds > 0 else float("nan")


def aligned_batches(indices: Sequence[int], batch_size: int) -> dict[int, list[int]]:
    """Group wanted indices by the aligned batch they belong to: {batch_no: [indices]}."""
    groups: dict[int, list[int]] = {}
    for i in sorted(set(int(i) for i in indices)):
        groups.setdefault(i // batch_size, []).append(i)
    return groups


def batch_bounds(batch_no: int, batch_size: int, n_total: int) -> tuple[int, int]:
    return batch_no * batch_size, min((batch_no + 1) * batch_size, n_total)


def batch_input_digests(latents: np.ndarray, indices: Iterable[int], batch_size: int):
    """{index: sha256 of the z rows of its aligned batch} — what an image's bytes depend on. A
    `store.BatchDigests` mapping: one digest per batch, not one entry per image."""
    from ohlora_core.store import BatchDigests

    items = (
        indices
        if isinstance(indices, range) and indices.step == 1
        else np.unique(np.fromiter((int(i) for i in indices), np.int64))
    )
    digests = {}
    for b in np.unique(np.asarray(items, dtype=np.int64) // batch_size).tolist() if len(items) else []:
        lo, hi = batch_bounds(b, batch_size, len(latents))
        digests[b] = hashlib.sha256(np.ascontiguousarray(latents[lo:hi], dtype=np.float32).tobytes()).hexdigest()
    return BatchDigests(items, batch_size, digests)


def generate_images(
    generator,
    latents: np.ndarray,
    indices: Sequence[int],
    out_dir: str | Path,
    batch_size: int = 16,
    device: str = "cpu",
    io_workers: int | None = None,
    tf32: bool = True,
    on_batch: Callable[[dict[int, str]], None] | None = None,
    log: Callable[[str], None] | None = None,
    stats: dict[int, tuple[int, int] | None] | None = None,
    clean: bool = True,
) -> GenerationResult:
    """Generate images `indices` from rows of `latents` ([N, 512], row i = z of image i).

    Writes `out_dir/000123.jpg` atomically (overwriting). `on_batch({index: sha256})` is called,
    in batch order, once a batch's files are all on disk (what a ledger records). JPEG encoding
    and writing run on a thread pool (OpenCV releases the GIL) while the next batch is on the
    device; on a GPU they are the bottleneck, so the pool defaults to one thread per CPU core.
    On CUDA, cuDNN runs deterministic kernels, so repeat runs give the same bytes.
    `tf32=True` (PyTorch's default, what genforce and the original ran with) lets them use
    TF32: ~±1 grey level on ~5 % of pixels against the CPU; `tf32=False` keeps full fp32
    (within ~1e-4 of genforce on the CPU) at ~4.5x the generator time (measured on an H200).
    `stats`: a dict to fill with {index: (size, mtime_ns)} of each file, taken right after its
    write (before `on_batch` sees the batch), for a ledger's cheap re-checks.
    `clean=False`: leave other writers' temp files alone (a shard's worker; its parent cleaned the folder).
    """
    import torch

    from ohlora_core.store import file_stat
    from ohlora_core.stylegan import postprocess

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if clean:
        clean_partial_files(out_dir)
    n_total = len(latents)
    _check_indices(indices, n_total)
    result = GenerationResult()
    start = time.perf_counter()
    generator = generator.to(device).eval()
    progress = Progress(len(indices), log, "raw_images", unit="images")

    def write(i: int, rgb: np.ndarray) -> str:
        data = encode_jpeg(rgb)
        atomic_write_bytes(out_dir / image_name(i), data)
        if stats is not None:
            stats[i] = file_stat(out_dir / image_name(i))
        return hashlib.sha256(data).hexdigest()  # the one hash of this image: from the bytes in memory

    def drain(pending: list, keep: int) -> None:
        """Hand finished batches to on_batch in order; wait while more than `keep` are in flight."""
        while pending and (len(pending) > keep or all(f.done() for f in pending[0].values())):
            shas = {i: f.result() for i, f in pending.pop(0).items()}  # re-raises write errors
            if on_batch:
                on_batch(shas)

    io_workers = io_workers or min(16, os.cpu_count() or 4)
    cudnn = torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=tf32)
    with ThreadPoolExecutor(max_workers=io_workers) as pool, torch.no_grad(), cudnn:
        pending: list[dict] = []
        for batch_no, want in aligned_batches(indices, batch_size).items():
            lo, hi = batch_bounds(batch_no, batch_size, n_total)
            t0 = time.perf_counter()
            # a copy: latents may be a read-only memory map
            z = torch.from_numpy(np.array(latents[lo:hi], dtype=np.float32)).to(device)
            rgb = postprocess(generator(z, **GENERATOR_KWARGS)["image"]).cpu().numpy()
            result.generator_seconds += time.perf_counter() - t0
            pending.append({i: pool.submit(write, i, rgb[i - lo]) for i in want})
            result.written += want
            drain(pending, keep=MAX_BATCHES_IN_FLIGHT)  # back-pressure: decoded images wait in memory
            progress.tick(len(want))
        drain(pending, keep=0)
    result.seconds = time.perf_counter() - start
    return result


def _check_indices(indices: Iterable[int], n_total: int) -> None:
    bad = [i for i in indices if not 0 <= int(i) < n_total]
    if bad:
        raise IndexError(f"image indices {bad[:10]} outside the {n_total} latent codes")


def generate_missing(
    generator,
    latents: np.ndarray,
    count: int,
    files,
    batch_size: int = 16,
    device: str = "cpu",
    tf32: bool = True,
    io_workers: int | None = None,
    log: Callable[[str], None] | None = None,
    *,
    inputs: Mapping[int, str] | None = None,
    verify: str = "stat",
    shard_devices: Sequence[str] = (),
    recipe: Callable[[str], object] | None = None,
) -> GenerationResult:
    """Bring `files` (an `artifacts.RawImages` folder of one recipe) to images 0..count-1.

    An image is reused only if the folder's ledger records it with the same input (the z rows of
    its aligned batch) and its file still has the recorded bytes (`store.file_intact`: size and
    mtime_ns unchanged, or the same sha256; `verify="full"` hashes every file); everything else —
    missing, truncated, edited, or made from other z — is (re)generated. Each image is hashed once,
    from its bytes in memory. Then `manifest.json` lists {images/000123.jpg: sha256} for
    0..count-1 (with its stat sidecar) and files beyond `count` are removed.
    `latents`: an array, a memory map or a `LatentFile`; `inputs`: `batch_input_digests(latents,
    range(count), batch_size)` if the caller has it already (one pass over z instead of two).
    `shard_devices`: more than one = the missing batches are split over one worker process per device
    (`ohlora_core.shards`), each building its generator with `recipe(device)` (picklable); the files are
    the same bytes as in one process, and this process alone writes the ledger.
    Returns what was done; the manifest's sha256 is the images' data version (`manifest_digest`).
    """
    from ohlora_core.store import Ledger, TableBuilder

    ledger = Ledger(files.dir)
    inputs = batch_input_digests(latents, range(count), batch_size) if inputs is None else inputs
    done = ledger.done(inputs, verify=verify, refresh=True)
    todo = [i for i in range(count) if i not in done]
    records, stats = TableBuilder(), {}
    records.add_table(done)

    def record(shas: dict[int, str]) -> None:
        for pair in ledger.record(
            {
                "item": i,
                "input": inputs[i],
                "files": {files.image_key(i): sha},
                "stat": {files.image_key(i): stats.pop(i, None)},
            }
            for i, sha in shas.items()
        ):
            records.add(*pair)

    if log:
        log(
            f"raw_images: {len(todo)} of {count} images to generate ({len(done)} intact already), batch {batch_size}, "
            f"on {device}"
        )
    if len(shard_devices) > 1 and len(aligned_batches(todo, batch_size)) > 1:
        result = generate_sharded(
            recipe,
            latents,
            todo,
            files.images_dir,
            batch_size,
            shard_devices,
            tf32=tf32,
            io_workers=io_workers,
            on_batch=record,
            log=log,
            stats=stats,
        )
    else:
        result = generate_images(
            generator,
            latents,
            todo,
            files.images_dir,
            batch_size=batch_size,
            device=device,
            io_workers=io_workers,
            tf32=tf32,
            on_batch=record,
            log=log,
            stats=stats,
        )
    result.skipped = done.items.tolist()
    records = records.build()  # what was intact plus what this call hashed in memory: nothing is read again
    if len(records) != count:
        missing = [i for i in range(count) if i not in records]
        raise RuntimeError(f"images {missing[:10]} were not written intact to {files.images_dir}")
    _write_manifest(files, records)
    _remove_images_from(files, count)
    return result


@dataclass(frozen=True)
class _ShardJob:
    """What one worker generates: picklable (the generator comes from `recipe`, the z rows from `latents`)."""

    recipe: Callable[[str], object]
    latents: object  # a LatentFile (rows read on demand) or an array
    indices: list[int]
    out_dir: Path
    batch_size: int
    tf32: bool
    io_workers: int


def generate_sharded(
    recipe: Callable[[str], object] | None,
    latents,
    indices: Sequence[int],
    out_dir: str | Path,
    batch_size: int,
    devices: Sequence[str],
    *,
    tf32: bool = True,
    io_workers: int | None = None,
    on_batch: Callable[[dict[int, str]], None] | None = None,
    log: Callable[[str], None] | None = None,
    stats: dict[int, tuple[int, int] | None] | None = None,
) -> GenerationResult:
    """`generate_images` with its aligned batches split over one worker process per device (contiguous shards
    of about equal image counts). `on_batch` and `stats` are served here, in this process, as each worker
    finishes a batch (batches of different shards interleave)."""
    from ohlora_core import shards

    if recipe is None:
        raise ValueError("sharded generation needs a recipe: a picklable device -> generator function")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(out_dir)  # once, here: a worker cleaning would delete another's file mid-write
    _check_indices(indices, len(latents))
    parts = shards.split(list(aligned_batches(indices, batch_size).values()), len(devices), weight=len)
    io = io_workers or max(1, min(16, os.cpu_count() or 4) // len(parts))
    jobs = [
        (device, _ShardJob(recipe, latents, [i for batch in part for i in batch], out_dir, batch_size, tf32, io))
        for device, part in zip(devices, parts, strict=False)
    ]  # fewer parts than devices: fewer workers
    if log:
        log(
            f"raw_images: {len(indices)} images in {len(jobs)} shards on {', '.join(d for d, _ in jobs)} "
            f"({', '.join(str(len(job.indices)) for _, job in jobs)} images)"
        )
    progress, start = Progress(len(indices), log, "raw_images", unit="images"), time.perf_counter()

    def finished(_shard: int, message) -> None:
        shas, shard_stats = message
        if stats is not None:
            stats.update(shard_stats)
        if on_batch:
            on_batch(shas)
        progress.tick(len(shas))

    seconds = shards.run(_generate_shard, jobs, finished, name="raw_images")
    return GenerationResult(
        written=sorted(int(i) for i in indices), seconds=time.perf_counter() - start, generator_seconds=sum(seconds)
    )


def _generate_shard(job: _ShardJob, device: str, emit: Callable) -> float:
    """One shard's worker: its own generator on its device; each finished batch goes to the parent as
    ({index: sha256}, {index: (size, mtime_ns)}). Returns its generator seconds."""
    stats: dict[int, tuple[int, int] | None] = {}

    def on_batch(shas: dict[int, str]) -> None:
        emit((shas, {i: stats.pop(i, None) for i in shas}))

    result = generate_images(
        job.recipe(device),
        job.latents,
        job.indices,
        job.out_dir,
        batch_size=job.batch_size,
        device=device,
        io_workers=job.io_workers,
        tf32=job.tf32,
        on_batch=on_batch,
        stats=stats,
        clean=False,
    )
    return result.generator_seconds


def _write_manifest(files, records) -> str:
    """`manifest.json` = {images/000123.jpg: sha256} of every record's files, the same bytes as
    json.dumps(indent=0, sort_keys=True), streamed; then its stat sidecar. Returns its sha256."""
    from ohlora_core.store import write_file_index, write_sorted_json

    order = np.argsort(records.names, kind="stable")  # the manifest's key order (names sort as strings)

    def entries():
        for f in order.tolist():
            yield records.file_at(f)

    digest = write_sorted_json(files.manifest, ((name, sha) for name, sha, _ in entries()))
    write_file_index(files.manifest, digest, entries())
    return digest


def _remove_images_from(files, count: int) -> None:
    """Delete images numbered >= count (left by an earlier, larger run), without a set of names."""
    with os.scandir(files.images_dir) as entries:  # streamed: Path.glob lists the whole folder first
        for entry in entries:
            stem = entry.name[:-4]
            if entry.name.endswith(".jpg") and not (
                stem.isdigit() and image_name(int(stem)) == entry.name and int(stem) < count
            ):
                os.unlink(entry.path)


def manifest_digest(files) -> str:
    return sha256_file(files.manifest)


def verified_images(files, indices: Iterable[int], verify: str = "stat") -> list[Path]:
    """Paths of raw images `indices` after checking each against the folder's manifest, so a
    consumer never reads an image that was damaged or edited after `raw_images` wrote it.
    The manifest is parsed once per version (`store.FileIndex`); an image whose size and mtime_ns
    are the ones raw_images recorded is not read again, any other is re-hashed (`verify="full"`:
    every one; see `store` for the one blind spot of the cheap check)."""
    from ohlora_core.store import FileIndex

    indices = [int(i) for i in indices]
    index = FileIndex.load(files.manifest)
    keys = [files.image_key(i) for i in indices]
    _require_listed(index, keys)
    index.verify(files.dir, keys, "raw_images", verify)
    return [files.image(i) for i in indices]


def raw_image_digests(files, indices: Iterable[int]) -> list[str]:
    """The sha256 raw_images recorded for each of `indices` (what a consumer's input digests are
    made of), from the cached manifest index: no file is read."""
    from ohlora_core.store import FileIndex

    index = FileIndex.load(files.manifest)
    keys = [files.image_key(int(i)) for i in indices]
    _require_listed(index, keys)
    return [index.sha(k) for k in keys]


def _require_listed(index, keys: list[str]) -> None:
    from ohlora_core.store import ArtifactChanged

    absent = [k for k in keys if k not in index]
    if absent:
        raise ArtifactChanged(
            f"{absent[:5]} are not part of raw_images (its manifest lists {len(index)} images); "
            f"materialize raw_images with enough images"
        )
