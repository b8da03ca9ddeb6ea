"""v2 property scores == the original `compute_property_scores_v2.py`, value for value.

Expected values come from running the original functions on the committed maps
(tests/fixtures/scores/README.md). Every finite value must match bit for bit; where the original
gives +-inf / NaN (v2 pose with both eye centroids in one column) we give NaN and a flag.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_batch_composition_does_not_matter, assert_matches_original

from ohlora_core.scores import V2_VERSION, ScoreFlag, compute_scores_v2, load_face_crop
from ohlora_core.scores.v2 import farthest_pair_cos

FIX = Path(__file__).parent / "fixtures" / "scores"
FLAG_OF_STATUS = {
    "inf": ScoreFlag.EYES_SAME_COLUMN_POS_INF,
    "-inf": ScoreFlag.EYES_SAME_COLUMN_NEG_INF,
    "nan": ScoreFlag.EYES_SAME_CENTROID_NAN,
}


@pytest.fixture(scope="module")
def result(score_fixture):
    _, parsing, images, _ = score_fixture
    return compute_scores_v2(parsing, images)


def test_every_value_matches_the_original(score_fixture, result):
    names = score_fixture[0]

    def flag_for(map_name, score, status):
        assert score == "pose", (map_name, score, status)  # only v2 pose can be inf/NaN
        return FLAG_OF_STATUS[status]

    checked, flagged = assert_matches_original(result, score_fixture, "v2", flag_for)
    assert checked == 7 * len(names) - 3 and flagged == 3


def test_original_fallbacks_are_values_not_flags(score_fixture, result):
    names, _, _, _ = score_fixture
    row = {n: result.values[i] for i, n in enumerate(names)}
    assert row["no_hair"][1] == 127.5 and row["single_hair_pixel"][1] == 127.5  # nothing left after trimming
    assert row["empty_left_eye"][4] == 0.0 and row["empty_both_eyes"][0] == 0.0
    assert row["no_mouth"][3] == 0.0
    assert row["background_0_px"][5:].tolist() == [192.0, 0.0]
    assert row["background_1_px"][6] == 0.0 and row["background_2_px"][6] == 0.0
    # left eye: two diameter pairs tie; the original keeps the first in its loop order (cos 2/sqrt(13))
    assert row["tie_break_eyes"][0] == 3 * (2 / math.sqrt(13))
    assert result.flag_counts() == {
        "pose": {"EYES_SAME_COLUMN_POS_INF": 1, "EYES_SAME_COLUMN_NEG_INF": 1, "EYES_SAME_CENTROID_NAN": 1}
    }


def _farthest_pair_cos_bruteforce(mask: np.ndarray) -> float:
    """The original's rule on all pairs: column-major points, first (i, j<i) with the max distance."""
    xs, ys = np.nonzero(mask.T)  # column-major order
    pts = np.stack([ys, xs], axis=1)
    if len(pts) < 2:
        return 1.0
    d = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    low = np.tril(d, -1)
    i, j = np.argwhere(low == low.max())[0]
    dy, dx = abs(int(pts[i, 0] - pts[j, 0])), abs(int(pts[i, 1] - pts[j, 1]))
    return dx / math.sqrt(dy**2 + dx**2)


def test_hull_restricted_pair_search_equals_all_pairs():
    rng = np.random.default_rng(7)
    masks = np.zeros((400, 20, 24), bool)
    for m in masks:  # dense, sparse and tiny scatters: many tied diameters with different angles
        h, w = rng.integers(1, 20), rng.integers(1, 24)
        m[:h, :w] = rng.random((h, w)) < rng.choice([0.05, 0.2, 0.5, 0.9])
    ours = farthest_pair_cos(masks)
    ref = np.array([_farthest_pair_cos_bruteforce(m) for m in masks])
    assert (ours == ref).all()
    assert len(np.unique(ref)) > 30  # the cases are not trivial


def test_batch_composition_does_not_matter(score_fixture, result, monkeypatch):
    assert_batch_composition_does_not_matter(compute_scores_v2, score_fixture, result, monkeypatch, chunk=5, seed=1)


def test_bad_input_and_loader(tmp_path):
    assert V2_VERSION == "v2.0"
    with pytest.raises(ValueError, match="v2 face crops must be uint8"):
        compute_scores_v2(np.zeros((1, 224, 224), np.uint8), np.zeros((1, 224, 224), np.uint8))
    with pytest.raises(ValueError, match="parsing maps must be uint8 of shape"):
        compute_scores_v2(np.zeros((1, 256, 256), np.uint8), np.zeros((1, 256, 256, 3), np.uint8))
    import cv2

    crop = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.uint8)
    path = tmp_path / "face_000001.png"
    path.write_bytes(cv2.imencode(".png", crop)[1].tobytes())
    np.testing.assert_array_equal(load_face_crop(path), crop)
    missing = tmp_path / "face_000002.png"
    missing.write_bytes(b"")
    with pytest.raises(ValueError, match="face_000002.png: empty or unreadable file"):
        load_face_crop(missing)
