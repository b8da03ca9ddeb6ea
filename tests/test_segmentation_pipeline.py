"""segment_images end to end on a face + a blank image: files, no-face record, idempotent rerun."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from ohlora_core.segmentation.face_crop import make_mtcnn
from ohlora_core.segmentation.facexformer import smoke_facexformer
from ohlora_core.segmentation.pipeline import (
    PALETTE, colorize, face_path, overlay, parsing_path, read_label_map, segment_images, visualization_path,
)

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


@pytest.fixture(scope="module")
def first_run(images, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    (out / "parsing_000007.png.tmp-abc").write_bytes(b"half")  # a crashed run's leftover
    summary = segment_images(*images, out, model, make_mtcnn("cpu"), "cpu", batch_size=8, visualizations=True)
    return out, summary


def test_writes_label_map_and_face_and_records_no_face(first_run):
    out, summary = first_run
    assert summary.written == [7] and summary.no_face == [9] and summary.skipped == [] and summary.seconds > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "face_000007.png", "parsing_000007.png", "parsing_visualization_000007.png"]
    labels = cv2.imread(str(parsing_path(out, 7)), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint8 and labels.shape == (224, 224) and labels.max() <= 10
    np.testing.assert_array_equal(read_label_map(parsing_path(out, 7)), labels)


def test_face_png_is_the_original_crop_and_labels_match_the_official_parse(first_run):
    out, _ = first_run
    parity = np.load(FIX / "parity.npz")
    face = np.asarray(Image.open(face_path(out, 7)))  # RGB on disk
    np.testing.assert_array_equal(face, parity["images"][0])  # byte-exact with the original flow
    labels = read_label_map(parsing_path(out, 7))
    # same weights and face as the parity fixture; the fixture fed the re-normalised uint8 face,
    # the pipeline the float crop (<= 1/255 apart), so only random-weight near-ties may flip
    assert (labels != parity["labels"][0]).mean() < 1e-2
    vis = np.asarray(Image.open(visualization_path(out, 7)))
    np.testing.assert_array_equal(vis, overlay(face, labels))


def test_rerun_skips_done_work_and_finishes_after_a_crash(first_run, images, model):
    out, _ = first_run
    stamp = os.stat(face_path(out, 7)).st_mtime_ns
    again = segment_images(*images, out, model, make_mtcnn("cpu"), "cpu", visualizations=True)
    assert again.written == [] and again.skipped == [7] and again.no_face == [9]
    assert os.stat(face_path(out, 7)).st_mtime_ns == stamp

    before = parsing_path(out, 7).read_bytes()
    parsing_path(out, 7).unlink()  # crash between the face and the label map
    resumed = segment_images(*images, out, model, make_mtcnn("cpu"), "cpu", visualizations=True)
    assert resumed.written == [7] and parsing_path(out, 7).read_bytes() == before


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
        segment_images([tmp_path / "a.jpg", tmp_path / "b.jpg"], [1], tmp_path, model, None, "cpu")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        segment_images([tmp_path / "broken.jpg"], [3], tmp_path / "out", model, make_mtcnn("cpu"), "cpu")


def test_fallback_box_parses_faceless_images_and_lists_them(images, model, tmp_path):
    from ohlora_core.segmentation.face_crop import crop_box

    paths, numbers = images
    summary = segment_images([paths[1]], [numbers[1]], tmp_path, model, make_mtcnn("cpu"), "cpu",
                             fallback_box=(64.0, 64.0, 192.0, 192.0))
    assert summary.written == [9] and summary.fallback == [9] and summary.no_face == []
    assert crop_box((64.0, 64.0, 192.0, 192.0), 256, 256) == (32, 32, 224, 224)  # grown 50 %, like a face box
    face = np.asarray(Image.open(face_path(tmp_path, 9)))
    assert face.shape == (224, 224, 3) and abs(int(face.mean()) - 200) <= 1  # the blank grey image's centre


def test_prune_outputs_keeps_only_wanted_images(tmp_path):
    from ohlora_core.segmentation.pipeline import prune_outputs

    for no in (1, 2):
        for kind in ("parsing", "face"):
            (tmp_path / f"{kind}_{no:06d}.png").write_bytes(b"x")
    (tmp_path / "preview.png").write_bytes(b"x")
    assert prune_outputs(tmp_path, {2}) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face_000002.png", "parsing_000002.png", "preview.png"]
