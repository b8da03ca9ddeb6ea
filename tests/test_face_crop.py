"""MTCNN settings/detection and the original's crop maths (adjust_bbox, int crop, resize, un-normalise)."""

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from ohlora_core.segmentation.face_crop import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_box,
    crop_faces,
    detect_largest_faces,
    expand_box,
    face_tensor,
    face_uint8,
    make_mtcnn,
)

FIX = Path(__file__).parent / "fixtures" / "facexformer"


@pytest.fixture(scope="module")
def mtcnn():
    return make_mtcnn("cpu")


def astronaut256() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.BICUBIC)


def astronaut_crop_flip() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).crop((100, 0, 400, 300)).transpose(Image.FLIP_LEFT_RIGHT)


def test_mtcnn_uses_the_original_settings(mtcnn):
    assert mtcnn.keep_all is True and mtcnn.select_largest is True
    assert mtcnn.min_face_size == 20 and mtcnn.thresholds == [0.6, 0.7, 0.7] and mtcnn.factor == 0.709


def test_astronaut_has_one_confident_face(mtcnn):
    boxes, probs = mtcnn.detect(Image.fromarray(skimage.data.astronaut()))
    assert len(boxes) == 1 and probs[0] > 0.999
    x1, y1, x2, y2 = boxes[0]
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200  # her face, upper middle of the 512x512 photo


def test_no_face_gives_none(mtcnn):
    dets = detect_largest_faces(mtcnn, [Image.new("RGB", (256, 256), (120, 120, 120)), astronaut256()])
    assert dets[0] is None and dets[1] is not None and dets[1][1] > 0.999


def test_expand_box_grows_each_side_by_a_quarter():
    # w = 39.25, h = 39.75 -> +9.8125 / +9.9375 on each side (exact in binary)
    assert expand_box((100.875, 50.5, 140.125, 90.25), 256, 256) == (91.0625, 40.5625, 149.9375, 100.1875)
    assert crop_box((100.875, 50.5, 140.125, 90.25), 256, 256) == (91, 40, 149, 100)


def test_expand_box_clips_to_the_image():
    assert expand_box((10, 20, 50, 100), 256, 256) == (0, 0, 60.0, 120.0)
    assert crop_box((2.5, 3.75, 250.0, 200.0), 256, 230) == (0, 0, 256, 230)
    # clipped only on the right/bottom edge
    assert crop_box((200.0, 180.0, 240.0, 220.0), 256, 230) == (190, 170, 250, 230)


def test_expand_box_uses_float64_like_the_original():
    # float32 arithmetic would round x2 + grow up to 154.0; the original (Python floats) gets 153.99999...
    box = (108.29660034179688, 0.0, 144.85931396484375, 10.0)
    assert expand_box(box, 256, 256)[2] == pytest.approx(153.99999237060547, abs=1e-12)
    assert crop_box(box, 256, 256)[2] == 153


def test_crop_is_resized_bicubic_without_keeping_aspect():
    img = Image.fromarray(skimage.data.astronaut())
    box = (180, 60, 280, 110)  # 100x50 crop
    ours = face_uint8(face_tensor(img, box))
    pil = np.asarray(img.crop(box).resize((224, 224), Image.BICUBIC)).astype(int)
    # the normalise/un-normalise float32 round trip + truncation loses at most one grey level
    diff = pil - ours.astype(int)
    assert ours.shape == (224, 224, 3) and diff.min() >= 0 and diff.max() <= 1 and (diff == 0).mean() > 0.5


def test_face_uint8_truncates_instead_of_rounding():
    target = np.array([127.9, 0.2, 254.99]) / 255  # un-normalised values in [0, 1]
    x = (torch.tensor(target, dtype=torch.float32) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    out = face_uint8(x.view(3, 1, 1).expand(3, 2, 2))
    assert out.shape == (2, 2, 3) and out[0, 0].tolist() == [127, 0, 254]
    assert face_uint8(torch.full((1, 3, 1, 1), 9.0))[0, 0, 0].tolist() == [255, 255, 255]  # clamped


BOX_TOLERANCE_PX = 1e-3  # MTCNN's float32 convolutions round differently across CPUs (seen: 7.6e-6 px)


def test_crops_match_the_original_flow(mtcnn):
    """fixtures: the official inference.py functions run on the same images (see README).

    Box floats are compared within BOX_TOLERANCE_PX (they depend on the CPU's vector units); the
    int() crop box and the face bytes are compared exactly where that tolerance cannot move an
    int() edge, i.e. where every grown coordinate is farther than it from an integer."""
    ref = np.load(FIX / "original_crop.npz")
    faces = np.load(FIX / "parity.npz")["images"]
    for i, (name, img) in enumerate((("astronaut256", astronaut256()), ("astronaut_crop_flip", astronaut_crop_flip()))):
        crop = crop_faces(mtcnn, [img], batched=False)[0]
        np.testing.assert_allclose(
            np.array(crop.box, dtype=np.float64), ref[f"{name}_box"], rtol=0, atol=BOX_TOLERANCE_PX
        )
        assert crop.prob == pytest.approx(float(ref[f"{name}_prob"]), abs=1e-5)
        adjusted = np.array(expand_box(crop.box, *img.size))
        np.testing.assert_allclose(adjusted, ref[f"{name}_adjusted"], rtol=0, atol=2 * BOX_TOLERANCE_PX)
        frac = np.abs(ref[f"{name}_adjusted"] - np.round(ref[f"{name}_adjusted"]))
        assert frac.min() > 2 * BOX_TOLERANCE_PX, f"{name}: an int() edge is ambiguous; pick another fixture image"
        assert crop.crop_box == tuple(int(v) for v in ref[f"{name}_crop_box"])
        np.testing.assert_array_equal(face_uint8(crop.tensor), faces[i])


def test_batched_detection_is_close_to_single(mtcnn):
    imgs = [astronaut256(), astronaut_crop_flip().resize((256, 256))]
    single = [crop_faces(mtcnn, [im], batched=False)[0] for im in imgs]
    batched = crop_faces(mtcnn, imgs, batched=True)
    for s, b in zip(single, batched):
        np.testing.assert_allclose(s.box, b.box, atol=1e-3)
        assert abs(s.prob - b.prob) < 1e-5
