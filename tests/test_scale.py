"""Memory of the bookkeeping at large n (tracemalloc: exact and unaffected by machine load), and
bench/scale.py doing its work at a small n. No timings are asserted here: bench/scale.py reports them."""

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ohlora_core.generation import LATENT_DIM, latent_codes, latent_preview_values, write_latent_codes

N = 50_000  # z of 50k images: 102 MB; the bounds below scale with it, so the ratios hold at 10^6 too
Z_BYTES = N * LATENT_DIM * 4
ROOT = Path(__file__).resolve().parents[1]


def _peak(fn) -> int:
    """Peak bytes allocated while fn() runs (numpy buffers included: numpy reports them to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_latent_codes_in_memory_peak_is_the_array_itself():
    # was: a list of N row arrays, then np.stack copying them: ~2.1x the array
    peak = _peak(lambda: latent_codes(3, range(N)))
    assert Z_BYTES <= peak < 1.1 * Z_BYTES, peak / Z_BYTES
    peak = _peak(lambda: latent_codes(3, (i for i in range(N))))  # any iterable: 8 bytes per index more
    assert peak < 1.1 * Z_BYTES, peak / Z_BYTES


def test_latents_written_and_previewed_in_bounded_memory(tmp_path):
    path = tmp_path / "latents.npy"
    peak = _peak(lambda: write_latent_codes(path, 3, N, chunk=1024))
    assert peak < 4 * 1024 * LATENT_DIM * 4 + (1 << 20), peak  # about one chunk, not the 102 MB array
    assert path.stat().st_size == Z_BYTES + 128  # the .npy header is 128 bytes
    peak = _peak(lambda: latent_preview_values(path, max_rows=512, chunk=1024))
    assert peak < 16 * (1 << 20), peak  # the 512-row sample plus one float64 chunk and its square
    np.testing.assert_array_equal(np.load(path, mmap_mode="r")[N - 3 :], latent_codes(3, range(N - 3, N)))


@pytest.mark.parametrize("sizes", ["200,2000"])
def test_scale_bench_runs_every_stage_and_reports_growth(tmp_path, sizes):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--sizes", sizes, "--dir", str(tmp_path), "--batch", "16"],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    stages = [
        "latent_codes (write + preview)",
        "raw_images (ledger, manifest)",
        "raw_images rerun (all intact)",
        "consumers: verify all",
        "consumers: 1 image per call",
        "segmentation (ledger, manifest)",
        "segmentation rerun (all intact)",
        "consumers: verify maps",
        "score tables (frame, normalise, csv)",
    ]
    table = out[out.index("\nstage") :]
    for stage in stages:  # each stage asserted its own work inside the bench (files, manifests, reruns)
        assert sum(line.startswith(stage) for line in table.splitlines()) == 1, stage
    assert "n=200" in table and "n=2,000" in table and "~ n^e" in table
    assert list(tmp_path.iterdir()) == []  # its files are deleted
