"""Per-image bookkeeping of every stage at 10^3 .. 10^6 images: time per image, peak memory, growth order.

    python bench/scale.py [--sizes 1000,10000,100000,1000000] [--dir /tmp] [--batch 64]

No model runs: a stub generator (tanh of z's first 48 values as a 4x4 image) makes tiny JPEGs through
the real `generate_missing`, and segmentation writes two tiny PNG stand-ins per image through the real
plan/ledger/manifest code (`plan_segmentation`, `write_outputs`, `Ledger.write_manifest`,
`remove_outputs_except`). What is timed is everything that grows with the number of images besides the
models: latents written in chunks + the preview, the generation ledger, manifest and promote (with
ledger compaction), a rerun that finds everything intact, the consumers' verification (all images in
one call, and one image per call), the segmentation ledger and manifest, its rerun and its consumers'
verification, and the score tables (DataFrame, normalisation, CSV).

Each size runs in a fresh child process; each stage's peak memory is the growth of the process's
peak RSS (VmHWM, reset before the stage through /proc/self/clear_refs) over its RSS when the stage
started. Files go to a temporary folder under --dir (about 14 KB of disk blocks per image: 10^6
images need ~15 GB and ~3.1 million inodes), deleted at the end. The bench asserts that every stage
did its work (files written, manifests complete, reruns redid nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED, SEG_BATCH = 0, 8


def _status(field: str) -> int:
    """A VmRSS / VmHWM figure of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure(name: str, n: int, fn) -> dict:
    """Run fn() once; its seconds and peak RSS growth (bytes) as one result row."""
    import gc

    gc.collect()
    reset = _reset_peak()
    start_rss = _status("VmRSS")
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    row = {
        "stage": name,
        "n": n,
        "seconds": seconds,
        "peak_growth": _status("VmHWM") - start_rss,
        "peak_rss": _status("VmHWM"),
        "peak_reset": reset,
    }
    print(json.dumps(row), flush=True)
    return row


class StubGenerator:
    """Stands in for StyleGAN: a 4x4 RGB image per z (so every JPEG is tiny and depends on its z)."""

    def to(self, device):
        return self

    def eval(self):
        return self

    def __call__(self, z, **kwargs):
        import torch

        return {"image": torch.tanh(z[:, :48].reshape(-1, 3, 4, 4))}


def run_child(n: int, work: Path, batch: int) -> None:
    import pandas as pd

    from ohlora_core.artifacts import RawImages, SegmentationMaps
    from ohlora_core.generation import (
        LatentFile,
        generate_missing,
        latent_preview_values,
        raw_image_digests,
        verified_images,
        write_latent_codes,
    )
    from ohlora_core.io import atomic_write_csv
    from ohlora_core.scores.common import scores_frame
    from ohlora_core.scores.normalize import normalize_scores
    from ohlora_core.segmentation.pipeline import plan_segmentation, remove_outputs_except, verified_maps, write_outputs
    from ohlora_core.store import CURRENT, Ledger, RecipeDir, current_dir

    latents = work / "latents.npy"
    raw_stage = RecipeDir(work / "raw_images", {"n": n})
    raw = RawImages(raw_stage.path)
    seg_stage = RecipeDir(work / "segmentation_maps", {"n": n})
    seg = SegmentationMaps(seg_stage.path)
    state: dict = {}

    def latent_codes():
        write_latent_codes(latents, SEED, n)
        state["preview"] = latent_preview_values(latents)

    def raw_images():
        raw_stage.open()
        result = generate_missing(StubGenerator(), LatentFile(latents), n, raw, batch_size=batch, io_workers=2)
        raw_stage.promote([raw.manifest.name])
        assert len(result.written) == n and len(list(raw.images_dir.iterdir())) == n

    def raw_images_rerun():
        result = generate_missing(StubGenerator(), LatentFile(latents), n, raw, batch_size=batch, io_workers=2)
        assert result.written == [] and len(result.skipped) == n

    current = RawImages(work / "raw_images" / CURRENT)  # what consumers open (the link exists once promoted)

    def verify_all():
        assert len(verified_images(current, range(n))) == n

    calls = min(n, 10_000)

    def verify_one_each():
        for i in range(0, n, max(1, n // calls)):
            verified_images(current, [i])

    def segmentation():
        numbers = list(range(n))
        seg_stage.open()
        plan = plan_segmentation(seg, numbers, raw_image_digests(current, numbers), SEG_BATCH)
        for members in plan.work:
            records = []
            for no in plan.missing(members):
                outputs = [(seg.face(no), b"face %d" % no), (seg.parsing(no), b"parsing %d" % no)]
                records.append({**write_outputs(seg, outputs), "item": no, "input": plan.inputs[no], "fallback": False})
            plan.record(records)
        summary = plan.summary()
        assert len(summary.written) == n
        remove_outputs_except(seg, summary.parsed)
        Ledger(seg.dir).write_manifest(seg.manifest, numbers, records=plan.records)
        seg_stage.promote([seg.manifest.name])
        state["parsed"] = summary.parsed

    def segmentation_rerun():
        numbers = list(range(n))
        plan = plan_segmentation(seg, numbers, raw_image_digests(current, numbers), SEG_BATCH)
        assert plan.work == [] and len(plan.summary().skipped) == n

    def verify_maps():
        verified_maps(SegmentationMaps(current_dir(work / "segmentation_maps")), state["parsed"])
        assert len(state["parsed"]) == n

    def score_tables():
        rng = np.random.default_rng(0)
        paths = [f"raw_images/images/{i:06d}.jpg" for i in state["parsed"]]
        raw_table = scores_frame(state["parsed"], paths, rng.normal(size=(len(paths), 7)))
        atomic_write_csv(work / "all_scores.csv", normalize_scores(raw_table), index=True)
        atomic_write_csv(work / "raw_scores.csv", raw_table)
        assert len(pd.read_csv(work / "raw_scores.csv", usecols=["img_no"])) == n

    for name, fn in (
        ("latent_codes (write + preview)", latent_codes),
        ("raw_images (ledger, manifest)", raw_images),
        ("raw_images rerun (all intact)", raw_images_rerun),
        ("consumers: verify all", verify_all),
        ("consumers: 1 image per call", verify_one_each),
        ("segmentation (ledger, manifest)", segmentation),
        ("segmentation rerun (all intact)", segmentation_rerun),
        ("consumers: verify maps", verify_maps),
        ("score tables (frame, normalise, csv)", score_tables),
    ):
        measure(name, calls if name == "consumers: 1 image per call" else n, fn)


def growth(rows: list[dict]) -> tuple[float, float]:
    """(e in time per image ~ n^e between the smallest and largest n, max/min time per image)."""
    rows = sorted(rows, key=lambda r: r["size"])
    per = [r["seconds"] / r["n"] for r in rows]
    a, b = rows[0]["size"], rows[-1]["size"]
    e = math.log(per[-1] / per[0]) / math.log(b / a) if b > a else 0.0
    return e, max(per) / min(per)


def report(rows: list[dict], sizes: list[int]) -> None:
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    head = "".join(f"{f'n={n:,}':>22}" for n in sizes)
    print(f"\n{'stage':<40}{head}{'per img':>10}{'max/min':>9}")
    print(f"{'':<40}" + "".join(f"{'us/img  peak MB':>22}" for _ in sizes) + f"{'~ n^e':>10}")
    for stage in stages:
        mine = [r for r in rows if r["stage"] == stage]
        cells = ""
        for n in sizes:
            r = next((r for r in mine if r["size"] == n), None)
            cells += f"{1e6 * r['seconds'] / r['n']:>12.1f}{r['peak_growth'] / 2**20:>10.1f}" if r else f"{'-':>22}"
        e, spread = growth(mine)
        print(f"{stage:<40}{cells}{f'n^{e:+.2f}':>10}{spread:>8.2f}x")
    print(
        "us/img: microseconds per image (per call for '1 image per call'); peak MB: growth of the peak RSS over "
        "the RSS at the stage's start; per img ~ n^e: how the time per image grows between the smallest and "
        "largest n (0 = flat, linear total time); max/min: spread of the time per image over the sizes"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the temporary files go")
    ap.add_argument("--batch", type=int, default=64, help="generation batch size")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        return run_child(args.child, args.work, args.batch)
    sizes = [int(s) for s in args.sizes.split(",")]
    need = max(sizes) * 15_000
    free = shutil.disk_usage(args.dir).free
    if free < need:
        sys.exit(f"{args.dir} has {free / 1e9:.1f} GB free; n={max(sizes):,} needs about {need / 1e9:.1f} GB")
    print(f"machine: {os.cpu_count()} CPU cores; files under {args.dir}; generation batch {args.batch}")
    rows = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"ohlora-scale-{n}-", dir=args.dir))
        try:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--work", str(work), "--batch", str(args.batch)],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            ).stdout
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for line in out.splitlines():
            if line.startswith("{"):
                rows.append({**json.loads(line), "size": n})
                r = rows[-1]
                print(
                    f"n={n:>9,}  {r['stage']:<42} {r['seconds']:>9.2f} s  peak +{r['peak_growth'] / 2**20:8.1f} MB "
                    f"(RSS {r['peak_rss'] / 2**20:.0f} MB)",
                    flush=True,
                )
    report(rows, sizes)


if __name__ == "__main__":
    main()
