"""segment_images end to end on a face + a blank image: files, no-face record, ledger-driven reruns."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from ohlora_core.artifacts import SegmentationMaps
from ohlora_core.segmentation.face_crop import make_mtcnn
from ohlora_core.segmentation.facexformer import smoke_facexformer
from ohlora_core.segmentation.pipeline import PALETTE, batch_inputs, colorize, overlay, read_label_map, segment_images

FIX = Path(__file__).parent / "fixtures" / "facexformer"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.BICUBIC).save(d / "000007.png")
    Image.new("RGB", (256, 256), (200, 200, 200)).save(d / "000009.png")
    return [d / "000007.png", d / "000009.png"], [7, 9]


@pytest.fixture(scope="module")
def model():
    return smoke_facexformer(1234)  # the parity fixture's weights


def _run(images, model, out, **kw):
    return segment_images(*images, SegmentationMaps(out), model, make_mtcnn("cpu"), "cpu", **kw)


@pytest.fixture(scope="module")
def first_run(images, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    files = SegmentationMaps(out)
    files.results_dir.mkdir()
    (files.results_dir / "parsing_000007.png.tmp-abc").write_bytes(b"half")  # a crashed run's leftover
    summary = _run(images, model, out, batch_size=8, visualizations=True)
    return files, summary


def test_writes_label_map_and_face_and_records_no_face(first_run):
    files, summary = first_run
    assert summary.written == [7] and summary.no_face == [9] and summary.skipped == [] and summary.seconds > 0
    assert sorted(p.name for p in files.results_dir.iterdir()) == [
        "face_000007.png",
        "parsing_000007.png",
        "parsing_visualization_000007.png",
    ]
    labels = cv2.imread(str(files.parsing(7)), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint8 and labels.shape == (224, 224) and labels.max() <= 10
    np.testing.assert_array_equal(read_label_map(files.parsing(7)), labels)


def test_face_png_is_the_original_crop_and_labels_match_the_official_parse(first_run):
    files, _ = first_run
    parity = np.load(FIX / "parity.npz")
    face = np.asarray(Image.open(files.face(7)))  # RGB on disk
    np.testing.assert_array_equal(face, parity["images"][0])  # byte-exact with the original flow
    labels = read_label_map(files.parsing(7))
    # same weights and face as the parity fixture; the fixture fed the re-normalised uint8 face,
    # the pipeline the float crop (<= 1/255 apart), so only random-weight near-ties may flip
    assert (labels != parity["labels"][0]).mean() < 1e-2
    vis = np.asarray(Image.open(files.visualization(7)))
    np.testing.assert_array_equal(vis, overlay(face, labels))


def test_rerun_skips_done_work_and_redoes_damaged_or_changed_images(first_run, images, model, tmp_path):
    files, _ = first_run
    stamp = os.stat(files.face(7)).st_mtime_ns
    again = _run(images, model, files.dir, batch_size=8, visualizations=True)
    assert again.written == [] and again.skipped == [7] and again.no_face == [9]
    assert os.stat(files.face(7)).st_mtime_ns == stamp

    before = files.parsing(7).read_bytes()
    files.parsing(7).write_bytes(before[:100])  # damaged after the run: redone, never reused
    resumed = _run(images, model, files.dir, batch_size=8, visualizations=True)
    assert resumed.written == [7] and files.parsing(7).read_bytes() == before

    # the same number, another image (e.g. a new seed): its maps are recomputed, equal to a fresh run
    paths, numbers = images
    swapped = ([paths[1], paths[0]], numbers)  # 7 <- the grey image, 9 <- the face
    redo = _run(swapped, model, files.dir, batch_size=8, visualizations=True)
    fresh_files = SegmentationMaps(tmp_path)
    fresh = _run(swapped, model, tmp_path, batch_size=8, visualizations=True)
    assert redo.written == [9] and redo.no_face == [7] == fresh.no_face and fresh.written == [9]
    assert files.parsing(9).read_bytes() == fresh_files.parsing(9).read_bytes()
    assert files.face(9).read_bytes() == fresh_files.face(9).read_bytes()


def test_batches_are_fixed_by_image_number():
    digests = batch_inputs([3, 9, 1, 12], ["a", "b", "c", "d"], batch_size=8)
    assert digests[3] == digests[1] and digests[9] == digests[12] and digests[1] != digests[9]
    # changing one image changes its whole batch's input, and only that batch's
    other = batch_inputs([3, 9, 1, 12], ["a", "b", "X", "d"], batch_size=8)
    assert other[3] != digests[3] and other[9] == digests[9]


def test_colorize_and_overlay_use_the_original_palette():
    labels = np.arange(11, dtype=np.uint8).reshape(1, 11)
    np.testing.assert_array_equal(colorize(labels)[0], PALETTE)
    assert PALETTE[1].tolist() == [0, 153, 255] and PALETTE[10].tolist() == [255, 0, 102]
    face = np.full((1, 11, 3), 100, np.uint8)
    mixed = overlay(face, labels)
    # cv2.addWeighted: round-half-even of 0.5 * a + 0.5 * b
    np.testing.assert_array_equal(mixed[0, 1], [50, 126, 178])
    with pytest.raises(ValueError, match="0..10"):
        colorize(np.array([[11]]))


def test_bad_inputs_are_reported(tmp_path, model):
    with pytest.raises(ValueError, match="2 image paths but 1 image numbers"):
        segment_images([tmp_path / "a.jpg", tmp_path / "b.jpg"], [1], SegmentationMaps(tmp_path), model, None, "cpu")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        _run(([tmp_path / "broken.jpg"], [3]), model, tmp_path / "out")


def test_fallback_box_parses_faceless_images_and_lists_them(images, model, tmp_path):
    from ohlora_core.segmentation.face_crop import crop_box

    paths, numbers = images
    summary = _run(([paths[1]], [numbers[1]]), model, tmp_path, fallback_box=(64.0, 64.0, 192.0, 192.0))
    assert summary.written == [9] and summary.fallback == [9] and summary.no_face == []
    assert crop_box((64.0, 64.0, 192.0, 192.0), 256, 256) == (32, 32, 224, 224)  # grown 50 %, like a face box
    face = np.asarray(Image.open(SegmentationMaps(tmp_path).face(9)))
    assert face.shape == (224, 224, 3) and abs(int(face.mean()) - 200) <= 1  # the blank grey image's centre


def test_outputs_are_hashed_once_and_the_manifest_keeps_its_bytes(images, model, tmp_path, monkeypatch):
    import hashlib
    import json

    import ohlora_core.store as store
    from ohlora_core.store import Ledger

    hashed = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p, *a, **k: hashed.append(Path(p).name) or real(p, *a, **k))
    files = SegmentationMaps(tmp_path)
    digests = ["d7", "d9"]
    first = _run(images, model, tmp_path, batch_size=8, visualizations=True, image_digests=digests)
    again = _run(images, model, tmp_path, batch_size=8, visualizations=True, image_digests=digests)
    assert first.written == [7] and again.skipped == [7] and again.no_face == [9]
    assert [h for h in hashed if h.endswith(".png")] == []  # hashed from memory once, re-checked by stat

    digest = Ledger(files.dir).write_manifest(files.manifest, [9, 7])
    names = ["face_000007.png", "parsing_000007.png", "parsing_visualization_000007.png"]
    inputs = batch_inputs([7, 9], digests, 8)
    rec7 = {
        "item": 7,
        "input": inputs[7],
        "fallback": False,
        "files": {
            f"segmentation_results/{n}": hashlib.sha256((files.results_dir / n).read_bytes()).hexdigest() for n in names
        },
    }
    rec9 = {"item": 9, "input": inputs[9], "files": {}, "no_face": True}
    text = json.dumps({"7": rec7, "9": rec9}, indent=0, sort_keys=True)
    assert files.manifest.read_text() == text and digest == hashlib.sha256(text.encode()).hexdigest()


def test_consumers_verify_maps_by_stat_and_detect_damage(images, model, tmp_path):
    from ohlora_core.segmentation.pipeline import verified_maps
    from ohlora_core.store import ArtifactChanged, Ledger

    files = SegmentationMaps(tmp_path)
    _run(images, model, tmp_path, batch_size=8, visualizations=True)
    Ledger(files.dir).write_manifest(files.manifest, [7, 9])
    verified_maps(files, [7])
    with pytest.raises(ArtifactChanged, match="image 9 has no files"):
        verified_maps(files, [9])  # no face: nothing a consumer could read
    data = files.parsing(7).read_bytes()
    files.parsing(7).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArtifactChanged, match=r"parsing_000007\.png is missing or differs"):
        verified_maps(files, [7])


def test_remove_outputs_except_keeps_the_kept_numbers_and_foreign_files(tmp_path):
    from ohlora_core.segmentation.pipeline import remove_outputs_except

    files = SegmentationMaps(tmp_path)
    files.results_dir.mkdir()
    for no in (1, 2, 1000000):
        for path in (files.face(no), files.parsing(no), files.visualization(no)):
            path.write_bytes(b"x")
    (files.results_dir / "notes.png").write_bytes(b"mine")  # not one of our names: left alone
    assert remove_outputs_except(files, [2, 1000000]) == 3
    assert sorted(p.name for p in files.results_dir.iterdir()) == sorted(
        ["notes.png"]
        + [p.name for no in (2, 1000000) for p in (files.face(no), files.parsing(no), files.visualization(no))]
    )
