"""normalize_scores == the original normalize_all_scores, plus the CSV table builder."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ohlora_core.scores import CSV_COLUMNS, SCORE_COLUMNS, normalize_scores, scores_frame

FIX = Path(__file__).parent / "fixtures" / "scores"


def _unhex(rows):
    return np.array([[np.nan if v is None else float.fromhex(v) for v in r] for r in rows])


@pytest.fixture(scope="module")
def expected():
    return json.loads((FIX / "expected.json").read_text())["normalize"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_matches_original_bit_for_bit(expected, version):
    raw = _unhex(expected[version]["raw"])
    want = _unhex(expected[version]["normalized"])
    assert np.isnan(raw[7, 4]) and np.isnan(want[7, 4])  # a NaN row stays NaN, others still normalised
    df = scores_frame(range(len(raw)), [f"{i:06d}.jpg" for i in range(len(raw))], raw)
    got = normalize_scores(df)
    assert list(got.columns) == list(CSV_COLUMNS)
    assert got["img_path"].tolist() == df["img_path"].tolist()
    vals = got[list(SCORE_COLUMNS)].to_numpy()
    same = (vals == want) | (np.isnan(vals) & np.isnan(want))
    assert same.all()
    np.testing.assert_array_equal(normalize_scores(raw).to_numpy(), vals)  # array input, same numbers


def test_inf_is_flagged_data_not_poison(expected):
    raw = _unhex(expected["v2"]["raw"])
    with_inf = raw.copy()
    with_inf[7, 4] = np.inf  # what the original gives for eye centroids in one column
    got = normalize_scores(with_inf)
    np.testing.assert_array_equal(got.to_numpy(), normalize_scores(raw).to_numpy())
    assert np.isnan(got.iloc[7, 4]) and np.isfinite(np.delete(got["pose_score"].to_numpy(), 7)).all()


def test_rounding_is_python_round_to_4_places():
    # reference: pandas mean/std then Python round() per value (what the original lambda does)
    x = np.array([[1, 2, 3, 4, 5, 6, 7], [2, 2, 3, 4, 5, 6, 8], [4, 3, 5, 4, 6, 6, 9]], float)
    got = normalize_scores(x).to_numpy()
    s = pd.DataFrame(x)
    ref = ((s - s.mean()) / s.std()).map(lambda v: round(v, 4)).to_numpy()
    np.testing.assert_array_equal(got[:, [0, 1, 2, 4, 6]], ref[:, [0, 1, 2, 4, 6]])
    assert np.isnan(got[:, 3]).all()  # zero std -> NaN, as pandas gives the original
    assert got[0, 0] == -0.8729 and got[2, 0] == 1.0911


def test_bad_input():
    with pytest.raises(ValueError, match=r"expected an \(N, 7\) array"):
        normalize_scores(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="lacks score columns"):
        normalize_scores(pd.DataFrame({"eyes_score": [1.0]}))
    with pytest.raises(ValueError, match="scores_frame: need N img_nos"):
        scores_frame([1, 2], ["a", "b"], np.zeros((3, 7)))
