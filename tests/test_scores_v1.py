"""v1 property scores == the original `compute_property_scores.py`, value for value.

Expected values come from running the original functions on the committed maps
(tests/fixtures/scores/README.md). Every finite value must match bit for bit; where the original
crashed / returned None / gave NaN we must give NaN and the matching flag.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_batch_composition_does_not_matter, assert_matches_original

from ohlora_core.scores import V1_VERSION, ScoreFlag, compute_scores_v1, load_parsing_png, load_v1_image

FIX = Path(__file__).parent / "fixtures" / "scores"


@pytest.fixture(scope="module")
def result(score_fixture):
    _, parsing, images, _ = score_fixture
    return compute_scores_v1(parsing, images)


# What the original did (status in expected.json) -> the flag we must raise.
NOSE_LT2 = {"no_nose", "single_nose_pixel", "all_background", "all_hair"}


def expected_flag(map_name: str, score: str, status: str) -> ScoreFlag:
    if status.startswith("crash"):
        assert score == "hair_color" and status == "crash:AxisError"
        return ScoreFlag.NO_HAIR_CRASH
    if status == "none":
        assert score == "hair_length"
        return ScoreFlag.NO_HAIR_NONE
    assert status == "nan" and score == "pose", (map_name, score, status)
    return ScoreFlag.NOSE_FEWER_THAN_2 if map_name in NOSE_LT2 else ScoreFlag.NOSE_ONE_ROW_OR_COLUMN


def test_every_value_matches_the_original(score_fixture, result):
    checked, flagged = assert_matches_original(result, score_fixture, "v1", expected_flag)
    assert checked > 400 and flagged == 10


def test_flag_summary(result, score_fixture):
    names = score_fixture[0]
    counts = result.flag_counts()
    assert counts == {
        "hair_color": {"NO_HAIR_CRASH": 2},
        "hair_length": {"NO_HAIR_NONE": 2},
        "pose": {"NOSE_FEWER_THAN_2": 4, "NOSE_ONE_ROW_OR_COLUMN": 2},
    }
    assert sorted(names[i] for i in result.flagged_rows()) == sorted(
        ["no_hair", "all_background", "no_nose", "single_nose_pixel", "nose_one_column", "nose_one_row", "all_hair"]
    )


def test_batch_composition_does_not_matter(score_fixture, result, monkeypatch):
    assert_batch_composition_does_not_matter(compute_scores_v1, score_fixture, result, monkeypatch, chunk=7, seed=0)
    _, parsing, images, _ = score_fixture
    single = compute_scores_v1(parsing[3:4], images[3:4])
    np.testing.assert_array_equal(single.values, result.values[3:4])


def test_channel_order_is_irrelevant(score_fixture, result):
    _, parsing, images, _ = score_fixture
    rgb = compute_scores_v1(parsing[:5], np.ascontiguousarray(images[:5, :, :, ::-1]))
    np.testing.assert_array_equal(rgb.values, result.values[:5])


def test_empty_batch_and_bad_input():
    empty = compute_scores_v1(np.zeros((0, 224, 224), np.uint8), np.zeros((0, 224, 224, 3), np.uint8))
    assert empty.values.shape == (0, 7) and empty.flags.shape == (0, 7)
    with pytest.raises(ValueError, match="parsing maps must be uint8"):
        compute_scores_v1(np.zeros((1, 224, 224), np.int64), np.zeros((1, 224, 224, 3), np.uint8))
    with pytest.raises(ValueError, match=r"v1 images must be uint8 of shape \(2, 224, 224, 3\)"):
        compute_scores_v1(np.zeros((2, 224, 224), np.uint8), np.zeros((1, 224, 224, 3), np.uint8))
    assert V1_VERSION == "v1.0"


def test_loaders_decode_like_the_original(tmp_path, score_fixture):
    _, parsing, images, _ = score_fixture
    big = cv2.resize(images[0], (256, 256), interpolation=cv2.INTER_NEAREST)
    jpg = tmp_path / "000123.jpg"
    jpg.write_bytes(cv2.imencode(".jpg", big)[1].tobytes())
    # the original's compute_all_image_scores: imdecode(fromfile) then resize INTER_LINEAR
    ref = cv2.resize(
        cv2.imdecode(np.fromfile(jpg, dtype=np.uint8), cv2.IMREAD_COLOR),
        dsize=(224, 224),
        interpolation=cv2.INTER_LINEAR,
    )
    ours = load_v1_image(jpg)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)
    png = tmp_path / "parsing_000123.png"
    png.write_bytes(cv2.imencode(".png", parsing[0])[1].tobytes())
    np.testing.assert_array_equal(load_parsing_png(png), parsing[0])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: not a decodable image"):
        load_v1_image(bad)
    with pytest.raises(ValueError, match="expected a 224x224 parsing PNG"):
        small = tmp_path / "small.png"
        small.write_bytes(cv2.imencode(".png", parsing[0, :100])[1].tobytes())
        load_parsing_png(small)
