"""Generation: z is a pure function of (seed, i); images are byte-stable, verified and crash-safe."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ohlora_core.artifacts import RawImages, image_name
from ohlora_core.generation import (
    aligned_batches,
    generate_images,
    generate_missing,
    latent_codes,
    latent_for_index,
    verified_images,
)
from ohlora_core.store import ArtifactChanged, Ledger


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


def test_rerun_keeps_intact_images_and_regenerates_damaged_or_changed_ones(generator, tmp_path):
    files = RawImages(tmp_path)
    z = latent_codes(3, range(6))
    first = generate_missing(generator, z, 6, files, batch_size=2)
    assert first.written == list(range(6)) and first.skipped == []
    before = _bytes(files.images_dir)
    assert json.loads(files.manifest.read_text()) == {
        f"images/{image_name(i)}": hashlib.sha256(before[image_name(i)]).hexdigest() for i in range(6)
    }

    files.image(2).unlink()  # lost
    files.image(3).write_bytes(before[image_name(3)][:500])  # truncated
    files.image(4).write_bytes(before[image_name(0)])  # replaced by another valid image
    (files.images_dir / "000005.jpg.tmp-crashed").write_bytes(b"half a jpeg")  # a crashed write
    with pytest.raises(ArtifactChanged, match=r"000003\.jpg is missing or differs from what raw_images wrote"):
        verified_images(files, [0, 1, 3])  # consumers refuse damaged images, naming the file
    again = generate_missing(generator, z, 6, files, batch_size=2)
    assert again.written == [2, 3, 4] and again.skipped == [0, 1, 5]
    assert _bytes(files.images_dir) == before and verified_images(files, range(6))[5] == files.image(5)

    # other z for image 1 (e.g. another latents file): its aligned batch (0, 1) is redone, the rest kept
    z2 = z.copy()
    z2[1] += 1
    changed = generate_missing(generator, z2, 6, files, batch_size=2)
    assert changed.written == [0, 1] and changed.skipped == [2, 3, 4, 5]
    assert files.image(1).read_bytes() != before[image_name(1)]


def test_out_of_range_index_is_a_clear_error(generator, tmp_path):
    with pytest.raises(IndexError, match=r"\[9\] outside the 4 latent codes"):
        generate_images(generator, latent_codes(0, range(4)), [9], tmp_path)


WORKER = textwrap.dedent(
    """
    import sys, numpy as np
    from ohlora_core.artifacts import RawImages
    from ohlora_core.generation import generate_missing, latent_codes
    from ohlora_core.stylegan import smoke_generator
    out, n = sys.argv[1], int(sys.argv[2])
    result = generate_missing(smoke_generator(seed=0, resolution=64), latent_codes(5, range(n)), n, RawImages(out),
                              batch_size=2, io_workers=1)
    print("written", len(result.written))
    """
)


def _run_worker(out: Path, n: int, kill_after_files: int | None = None) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(n)], stdout=subprocess.PIPE, text=True)
    if kill_after_files is None:
        return proc.wait(timeout=600), proc.stdout.read()
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        # some images on disk, and a finished batch in the ledger (recorded after its files are written)
        if out.exists() and len(list((out / "images").glob("*.jpg"))) >= kill_after_files and Ledger(out).records():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    return proc.wait(timeout=60), proc.stdout.read()


def test_killed_run_leaves_no_partial_file_and_rerun_is_identical(tmp_path):
    n = 60  # 30 batches after the 3rd file: far longer than one 2 ms poll, even on a fast machine
    assert _run_worker(tmp_path / "reference", n)[0] == 0
    reference = _bytes(tmp_path / "reference" / "images")
    assert len(reference) == n

    crashed = tmp_path / "crashed"
    rc, _ = _run_worker(crashed, n, kill_after_files=3)
    assert rc == -signal.SIGKILL, "the run finished before it could be killed; raise n"
    done = sorted(p.name for p in (crashed / "images").glob("*.jpg"))
    assert 3 <= len(done) < n
    for name in done:  # every visible image is complete, byte for byte
        assert (crashed / "images" / name).read_bytes() == reference[name]

    recorded = len(Ledger(crashed).records())
    rc, out = _run_worker(crashed, n)
    assert rc == 0 and _bytes(crashed / "images") == reference  # no temp leftovers, identical files
    assert int(out.split()[-1]) == n - recorded < n  # exactly what the ledger had not recorded was redone
    assert (crashed / "manifest.json").read_bytes() == (tmp_path / "reference" / "manifest.json").read_bytes()


# --- bookkeeping at scale: one hash per image, cheap consumer checks, latents in chunks ---


def _count_hashes(monkeypatch) -> list:
    import ohlora_core.store as store

    hashed = []
    real = store.sha256_file

    def counted(path, *a, **k):
        hashed.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(store, "sha256_file", counted)
    return hashed


def test_each_image_is_hashed_once_by_its_producer_and_not_by_reruns(generator, tmp_path, monkeypatch):
    files = RawImages(tmp_path)
    z = latent_codes(3, range(6))
    hashed = _count_hashes(monkeypatch)
    generate_missing(generator, z, 6, files, batch_size=2)
    assert [h for h in hashed if h.endswith(".jpg")] == []  # hashed from the bytes in memory, never re-read
    again = generate_missing(generator, z, 6, files, batch_size=2)
    assert again.written == [] and [h for h in hashed if h.endswith(".jpg")] == []  # size + mtime_ns unchanged
    os.utime(files.image(4), ns=(1, 10**18))  # touched, same bytes: re-hashed once, then cheap again
    generate_missing(generator, z, 6, files, batch_size=2)
    generate_missing(generator, z, 6, files, batch_size=2)
    assert [h for h in hashed if h.endswith(".jpg")] == ["000004.jpg"]
    hashed.clear()
    assert generate_missing(generator, z, 6, files, batch_size=2, verify="full").written == []
    assert sorted(h for h in hashed if h.endswith(".jpg")) == [image_name(i) for i in range(6)]


def test_manifest_bytes_are_unchanged_by_the_stat_sidecar(generator, tmp_path):
    files = RawImages(tmp_path)
    generate_missing(generator, latent_codes(3, range(5)), 5, files, batch_size=2)
    expected = {f"images/{image_name(i)}": hashlib.sha256(files.image(i).read_bytes()).hexdigest() for i in range(5)}
    assert files.manifest.read_text() == json.dumps(expected, indent=0, sort_keys=True)  # same data version
    lines = (tmp_path / "manifest.stat.tsv").read_text().splitlines()
    assert lines[0].endswith(hashlib.sha256(files.manifest.read_bytes()).hexdigest()) and len(lines) == 6
    name, sha, size, mtime = lines[1].split("\t")
    st = files.image(0).stat()
    assert (name, sha, int(size), int(mtime)) == ("images/000000.jpg", expected[name], st.st_size, st.st_mtime_ns)


def test_consumers_check_stats_and_rehash_only_what_changed(generator, tmp_path, monkeypatch):
    files = RawImages(tmp_path)
    generate_missing(generator, latent_codes(3, range(6)), 6, files, batch_size=2)
    hashed = _count_hashes(monkeypatch)
    assert verified_images(files, range(6)) == [files.image(i) for i in range(6)]
    for i in range(6):
        verified_images(files, [i])  # one image per call: the manifest is not parsed again
    assert hashed == ["manifest.json"]
    data = files.image(2).read_bytes()
    files.image(2).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, new mtime: re-hashed, refused
    with pytest.raises(ArtifactChanged, match=r"000002\.jpg is missing or differs"):
        verified_images(files, [2])
    os.utime(files.image(3), ns=(1, 10**18))  # same bytes, touched: re-hashed once and accepted
    verified_images(files, [3])
    verified_images(files, [3])
    assert hashed == ["manifest.json", "000002.jpg", "000003.jpg"]
    with pytest.raises(ArtifactChanged, match="not part of raw_images"):
        verified_images(files, [6])
    from ohlora_core.generation import raw_image_digests

    assert raw_image_digests(files, [1, 0]) == [
        json.loads(files.manifest.read_text())[f"images/{image_name(i)}"] for i in (1, 0)
    ]


def test_a_rerun_after_a_crash_between_manifest_and_sidecar_still_verifies(generator, tmp_path):
    files = RawImages(tmp_path)
    z = latent_codes(3, range(4))
    generate_missing(generator, z, 4, files, batch_size=2)
    (tmp_path / "manifest.stat.tsv").write_text("ohlora-file-index 1 " + "0" * 64 + "\n")  # another manifest's
    st, data = files.image(1).stat(), files.image(1).read_bytes()
    files.image(1).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the blind spot: same size, mtime restored
    os.utime(files.image(1), ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ArtifactChanged, match=r"000001\.jpg"):
        verified_images(files, range(4))  # without a valid sidecar no stat is trusted: every file is hashed
    before = files.manifest.read_bytes()
    assert generate_missing(generator, z, 4, files, batch_size=2, verify="full").written == [1]
    assert files.manifest.read_bytes() == before and verified_images(files, range(4))


def test_chunked_latents_file_is_byte_identical_to_np_save(tmp_path):
    import io

    from ohlora_core.generation import LatentFile, latent_preview_values, write_latent_codes

    for n, chunk in ((0, 4), (1, 4), (9, 4), (1000, 128)):
        ref = io.BytesIO()
        np.save(ref, np.stack([latent_for_index(11, i) for i in range(n)]) if n else np.zeros((0, 512), np.float32))
        write_latent_codes(tmp_path / f"z{n}.npy", 11, n, chunk=chunk)
        assert (tmp_path / f"z{n}.npy").read_bytes() == ref.getvalue(), n
        assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    z = np.load(tmp_path / "z1000.npy")
    np.testing.assert_array_equal(latent_codes(11, range(1000)), z)  # the preallocated build: same values
    rows = LatentFile(tmp_path / "z1000.npy")
    np.testing.assert_array_equal(rows[10:20], z[10:20])
    np.testing.assert_array_equal(rows[[5, 999]], z[[5, 999]])
    preview = latent_preview_values(tmp_path / "z1000.npy", max_rows=100, chunk=64)
    assert preview.sampled == 100 and preview.values.shape == (100 * 512,) and preview.rows == 1000
    assert preview.mean == pytest.approx(float(z.astype(np.float64).mean()), abs=1e-12)
    assert preview.std == pytest.approx(float(z.astype(np.float64).std()), rel=1e-9)
    assert set(preview.histograms()) == {"z (all values) (100 of 1000 rows)", "|z| per image (100 of 1000 rows)"}


LATENT_WRITER = textwrap.dedent(
    """
    import sys
    from ohlora_core.generation import write_latent_codes
    write_latent_codes(sys.argv[1], 5, int(sys.argv[2]), chunk=256)
    """
)


def test_killed_latents_write_leaves_no_file_and_rerun_is_identical(tmp_path):
    n, target = 200_000, tmp_path / "latents.npy"  # ~400 MB, a few seconds: killed early
    proc = subprocess.Popen([sys.executable, "-c", LATENT_WRITER, str(target), str(n)])
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        temps = list(tmp_path.glob("latents.npy.tmp-*"))
        if temps and temps[0].stat().st_size > 1 << 20:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the write finished before it could be killed"
    assert not target.exists()  # only a temp file: readers never see half the rows
    subprocess.run([sys.executable, "-c", LATENT_WRITER, str(target), "3000"], check=True)
    ref = tmp_path / "ref.npy"
    np.save(ref, latent_codes(5, range(3000)))
    assert target.read_bytes() == ref.read_bytes()


def test_the_device_runs_at_most_a_few_batches_ahead_of_the_writers(tmp_path, monkeypatch):
    """Without back-pressure a device faster than the JPEG writers queued every image of the run in
    memory (O(n): ~200 KB per 256x256 image); now generated-but-unwritten batches stay bounded."""
    import torch

    import ohlora_core.generation as generation

    state = {"generated": 0, "written": 0, "most_ahead": 0}

    class Fast:
        def to(self, device):
            return self

        def eval(self):
            return self

        def __call__(self, z, **kw):
            state["generated"] += 1
            state["most_ahead"] = max(state["most_ahead"], state["generated"] - state["written"])
            return {"image": torch.zeros(len(z), 3, 4, 4)}

    real_write = generation.atomic_write_bytes
    monkeypatch.setattr(generation, "atomic_write_bytes", lambda p, d: (time.sleep(0.01), real_write(p, d)))
    on_batch = lambda shas: state.__setitem__("written", state["written"] + 1)  # noqa: E731
    result = generate_images(
        Fast(), latent_codes(0, range(80)), range(80), tmp_path, batch_size=2, io_workers=1, on_batch=on_batch
    )
    assert result.written == list(range(80)) and state["written"] == 40
    assert state["most_ahead"] <= generation.MAX_BATCHES_IN_FLIGHT + 1, state
