"""Generation: z is a pure function of (seed, i); images are byte-stable and crash-safe."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ohlora_core.generation import aligned_batches, generate_images, image_name, latent_codes, latent_for_index


def test_latent_is_pure_function_of_seed_and_index():
    z = latent_codes(7, range(50))
    assert z.shape == (50, 512) and z.dtype == np.float32
    np.testing.assert_array_equal(z[37], latent_for_index(7, 37))
    np.testing.assert_array_equal(latent_codes(7, [37, 3])[0], z[37])  # order/subset independent
    assert not np.array_equal(latent_for_index(8, 37), z[37])
    assert not np.array_equal(z[36], z[37])
    # pinned values: a change of RNG would silently change every image
    np.testing.assert_allclose(latent_for_index(0, 0)[:3], [1.1176220, -1.3871249, -0.4265716], rtol=1e-6)


def test_aligned_batches_group_by_absolute_index():
    assert aligned_batches([9, 1, 2, 17, 8], 8) == {0: [1, 2], 1: [8, 9], 2: [17]}


@pytest.fixture(scope="module")
def generator():
    from ohlora_core.stylegan import smoke_generator

    return smoke_generator(seed=0, resolution=64)  # small and fast; 256 is covered by the Dagster test


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_regenerating_one_image_gives_the_same_bytes(generator, tmp_path):
    z = latent_codes(3, range(8))
    full = generate_images(generator, z, range(8), tmp_path / "all", batch_size=4)
    assert full.written == list(range(8)) and full.skipped == []
    alone = generate_images(generator, z, [6], tmp_path / "one", batch_size=4)
    assert alone.written == [6]
    assert (tmp_path / "one" / "000006.jpg").read_bytes() == (tmp_path / "all" / "000006.jpg").read_bytes()
    # images are real 256x256 RGB JPEGs, and different z give different images
    from PIL import Image

    a, b = (np.asarray(Image.open(tmp_path / "all" / image_name(i))) for i in (0, 1))
    assert a.shape == (64, 64, 3) and not np.array_equal(a, b)


def test_existing_images_are_skipped_and_temp_leftovers_removed(generator, tmp_path):
    z = latent_codes(3, range(4))
    generate_images(generator, z, range(4), tmp_path, batch_size=2)
    before = _bytes(tmp_path)
    (tmp_path / "000002.jpg").unlink()
    (tmp_path / "000002.jpg.tmp-crashed").write_bytes(b"half a jpeg")
    again = generate_images(generator, z, range(4), tmp_path, batch_size=2)
    assert again.written == [2] and again.skipped == [0, 1, 3]
    assert _bytes(tmp_path) == before


def test_out_of_range_index_is_a_clear_error(generator, tmp_path):
    with pytest.raises(IndexError, match=r"\[9\] outside the 4 latent codes"):
        generate_images(generator, latent_codes(0, range(4)), [9], tmp_path)


WORKER = textwrap.dedent(
    """
    import sys, numpy as np
    from ohlora_core.generation import generate_images, latent_codes
    from ohlora_core.stylegan import smoke_generator
    out, n = sys.argv[1], int(sys.argv[2])
    generate_images(smoke_generator(seed=0, resolution=64), latent_codes(5, range(n)), range(n), out,
                    batch_size=2, io_workers=1)
    """
)


def _run_worker(out: Path, n: int, kill_after_files: int | None = None) -> int:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(n)])
    if kill_after_files is None:
        return proc.wait(timeout=600)
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        if out.exists() and len(list(out.glob("*.jpg"))) >= kill_after_files:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    return proc.wait(timeout=60)


def test_killed_run_leaves_no_partial_file_and_rerun_is_identical(tmp_path):
    n = 60  # 30 batches after the 3rd file: far longer than one 2 ms poll, even on a fast machine
    assert _run_worker(tmp_path / "reference", n) == 0
    reference = _bytes(tmp_path / "reference")
    assert len(reference) == n

    crashed = tmp_path / "crashed"
    rc = _run_worker(crashed, n, kill_after_files=3)
    assert rc == -signal.SIGKILL, "the run finished before it could be killed; raise n"
    done = sorted(p.name for p in crashed.glob("*.jpg"))
    assert 3 <= len(done) < n
    for name in done:  # every visible image is complete, byte for byte
        assert (crashed / name).read_bytes() == reference[name]

    assert _run_worker(crashed, n) == 0
    assert _bytes(crashed) == reference  # no temp leftovers, identical files
