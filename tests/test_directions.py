"""w-space directions (InterFaceGAN) and the controllability report's arithmetic."""

import warnings

import numpy as np
import pytest
import torch

from ohlora_core.controllability import MethodReport, evaluate, pearson
from ohlora_core.directions import Directions, fit_directions, load_directions, save_directions
from ohlora_core.finetune import protocol


def _planted(n=3000, dim=64, props=3, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, dim))
    normals = rng.normal(size=(props, dim))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    scores = w @ normals.T * np.array([0.9, 1.5, 0.6]) + 0.3 + rng.normal(scale=noise, size=(n, props))
    return w, scores, normals


@pytest.mark.parametrize("method", ["svm", "ridge"])
def test_a_planted_direction_is_found(method):
    w, scores, normals = _planted()
    d = fit_directions(w, scores, ("eyes", "mouth", "pose"), method=method, seed=1)
    cos = (d.normals * normals).sum(axis=1)
    assert (cos > 0.99).all(), cos
    assert all(r["heldout_corr"] > 0.99 for r in d.metrics)
    if method == "svm":
        assert all(r["heldout_accuracy"] > 0.97 for r in d.metrics)
    np.testing.assert_allclose(d.scale, [0.9, 1.5, 0.6], rtol=0.05)  # the calibration recovers the slope


def test_a_conditional_move_is_the_requested_normal_with_the_kept_normals_projected_out():
    rng = np.random.default_rng(3)
    normals = rng.normal(size=(4, 32))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    d = Directions(("a", "b", "c", "e"), normals, np.ones(4), np.zeros(4), "test", [])
    w = rng.normal(size=(1, 32))
    step = (d.move(w, {"a": 2.0}) - w)[0]
    # InterFaceGAN by hand: a's normal minus its projection on span(b, c, e), scaled to reach a = 2
    q, _ = np.linalg.qr(normals[1:].T)
    n = normals[0] - q @ (q.T @ normals[0])
    expected = n * (2.0 - float(w[0] @ normals[0])) / float(normals[0] @ n)
    np.testing.assert_allclose(step, expected, atol=1e-12)
    assert d.rank() == 4


def test_dependent_normals_give_the_least_squares_compromise_not_an_error():
    rng = np.random.default_rng(4)
    n = rng.normal(size=32)
    n /= np.linalg.norm(n)
    d = Directions(("a", "b"), np.stack([n, n]), np.ones(2), np.zeros(2), "t", [])  # a and b cannot move apart
    assert d.rank() == 1
    w = np.zeros((1, 32))
    moved = d.move(w, {"a": 2.0})  # wants a = 2 and b = 0 along the same normal: meets halfway
    np.testing.assert_allclose(d.predict(moved), [[1.0, 1.0]], atol=1e-12)


def test_moving_w_by_the_calibrated_amount_sets_the_requested_values():
    w, scores, _ = _planted(props=3)
    names = ("eyes", "mouth", "pose")
    d = fit_directions(w, scores, names, method="ridge")
    start = w[:10]
    moved = d.move(start, {"eyes": 1.8, "pose": -1.2})
    pred, before = d.predict(moved), d.predict(start)
    np.testing.assert_allclose(pred[:, 0], 1.8, atol=1e-9)
    np.testing.assert_allclose(pred[:, 2], -1.2, atol=1e-9)
    np.testing.assert_allclose(pred[:, 1], before[:, 1], atol=1e-9)  # conditional: mouth not moved
    free = d.move(start, {"eyes": 1.8}, conditional=False)  # along the raw normal: exact for eyes only
    np.testing.assert_allclose(d.predict(free)[:, 0], 1.8, atol=1e-9)


def test_directions_round_trip_through_a_file(tmp_path):
    w, scores, _ = _planted()
    d = fit_directions(w, scores, ("eyes", "mouth", "pose"), method="ridge")
    save_directions(tmp_path / "d.npz", d)
    again = load_directions(tmp_path / "d.npz")
    assert again.names == d.names and again.method == "ridge"
    np.testing.assert_array_equal(again.predict(w[:3]), d.predict(w[:3]))


def test_report_figures_equal_a_hand_computation():
    combos = protocol.label_combinations()  # [50, 3]
    rng = np.random.default_rng(0)
    intended = np.stack([combos, combos])  # 2 z
    measured = rng.normal(size=(2, 50, 7))
    measured[:, :, 0] = combos[:, 0] * 0.8 + 0.1  # eyes follow, shrunk
    measured[:, :, 3] = combos[:, 1]  # mouth exact
    measured[1, :, 4] = 0.5  # pose constant for z 1
    measured[:, :, 1] = 0.3  # hair colour constant for every z
    per_z = [protocol.score_z(m) for m in measured]
    r = MethodReport("m", intended, measured, per_z, 0.25)
    s = r.summary()
    eyes_want, eyes_got = intended[:, :, 0].ravel(), measured[:, :, 0].ravel()
    assert s["eyes_corr"] == pytest.approx(np.corrcoef(eyes_want, eyes_got)[0, 1], abs=1e-12)
    assert s["eyes_mae"] == pytest.approx(np.abs(eyes_want - eyes_got).mean(), abs=1e-12)
    assert s["mouth_corr"] == pytest.approx(1.0) and s["mouth_mae"] == pytest.approx(0.0, abs=1e-12)
    assert s["pass_share"] == 0.0 and s["seconds_per_image"] == 0.25 and s["z"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" in a run's log
        leak = r.leakage()
    assert np.isnan(leak["eyes"]["hair_color"])  # no z defines that correlation
    want = np.mean([abs(np.corrcoef(intended[z, :, 0], measured[z, :, 3])[0, 1]) for z in range(2)])
    assert leak["eyes"]["mouth"] == pytest.approx(want, abs=1e-12) and "eyes" not in leak["eyes"]
    assert np.isnan(pearson(np.ones(3), np.arange(3)))


def test_evaluate_runs_a_method_through_the_cnn():
    """A stand-in method whose 'images' carry the intended values, and a 'CNN' that reads them back."""

    def method(z, intended):
        img = torch.zeros(len(intended), 3, 4, 4)
        img[:, 0, 0, :3] = torch.from_numpy(intended)
        return img

    class Reader(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 7)
            out[:, [0, 3, 4]] = x[:, 0, 0, :3]
            return out

    r = evaluate("echo", method, Reader(), torch.zeros(2, 512), "cpu")
    assert [z.passed for z in r.per_z] == [True, True] and r.summary()["pose_corr"] == pytest.approx(1.0)
    sub = evaluate("echo", method, Reader(), torch.zeros(1, 512), "cpu", stride=5)
    assert sub.measured.shape == (1, 10, 7)
