"""Property-score CNN: training via the shared loop, predictions, v2-vs-CNN comparison."""

import numpy as np
import pandas as pd
import pytest
import torch

from ohlora_core.artifacts import PropertyScoreCnn
from ohlora_core.cnn.models import PropertyScoreCNN
from ohlora_core.cnn.property_cnn import (
    PROPERTIES,
    SCORE_COLUMNS,
    compare_v2_vs_cnn,
    predict_property_scores,
    property_scores_table,
    regression_metrics,
    split_90_10,
    train_property_score_cnn,
)
from ohlora_core.io import load_checkpoint, load_state_dict_strict

torch.set_num_threads(2)


def test_train_predict_and_log(tmp_path):
    n = 3  # the full-image hair-colour head is heavy on CPU: keep this tiny
    imgs = torch.randint(0, 256, (n, 3, 256, 256), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    scores = pd.DataFrame(np.random.default_rng(0).normal(size=(n, 7)), columns=SCORE_COLUMNS)
    res = train_property_score_cnn(
        imgs,
        scores,
        PropertyScoreCnn(tmp_path),
        seed=0,
        max_epochs=2,
        valid_batch_size=4,
        img_paths=["a.jpg", "b.jpg", "c.jpg"],
    )
    assert (len(res.train_index), len(res.valid_index)) == (2, 1)
    log = pd.read_csv(tmp_path / "train_log_v2_cnn.csv")
    names = ["eyes", "hair_color", "hair_length", "mouth", "pose", "back_mean", "back_std"]
    assert log.columns.tolist() == ["epoch", "valid_loss", "val_loss_except_back_std"] + [
        f"{p}_score_{m}" for m in ("loss", "abs_diff", "corr") for p in names
    ]
    assert len(log) == 2 and res.best_epoch == int(log["val_loss_except_back_std"].idxmin())
    # the original's train_log_v2_cnn_val_log.csv: the first (up to 30) validation samples per epoch
    val = pd.read_csv(tmp_path / "train_log_v2_cnn_val_log.csv")
    assert val.columns.tolist() == ["epoch", "img_path"] + [
        f"{p}_score_{k}" for p in names for k in ("output", "label")
    ]
    assert (
        val["epoch"].tolist() == [0, 1]
        and val["img_path"].tolist() == [["a.jpg", "b.jpg", "c.jpg"][res.valid_index[0]]] * 2
    )
    np.testing.assert_allclose(val["eyes_score_label"], scores["eyes_score"].iloc[res.valid_index[0]], rtol=1e-6)
    m = PropertyScoreCNN()
    load_state_dict_strict(m, load_checkpoint(tmp_path / "stylegan_gen_fine_tuned_v2_cnn.pth"), "ckpt")
    preds = predict_property_scores(m, imgs[:2], "cpu", batch_size=1)
    assert preds.shape == (2, 7) and np.array_equal(preds, np.round(preds, 4))
    assert np.allclose(preds, predict_property_scores(res.model, imgs[:2], "cpu", batch_size=2), atol=1e-4)


def test_split_sizes_and_seed():
    tr, va = split_90_10(4703, seed=1)
    assert (len(tr), len(va)) == (4232, 471) and len(np.intersect1d(tr, va)) == 0
    assert np.array_equal(va, split_90_10(4703, seed=1)[1]) and not np.array_equal(va, split_90_10(4703, seed=2)[1])


def test_regression_metrics_except_back_std():
    out = np.zeros((4, 7))
    lab = np.zeros((4, 7))
    lab[:, 6] = 2.0  # back std error only
    lab[:, 0] = [1, -1, 1, -1]
    m = regression_metrics(out, lab)
    assert m["valid_loss"] == pytest.approx((1 + 4) / 7)
    assert m["back_std_score_loss"] == 4.0 and m["eyes_score_abs_diff"] == 1.0
    assert m["val_loss_except_back_std"] == pytest.approx(1 / 6)


def test_compare_table_and_summary():
    v2 = pd.DataFrame({"img_no": [4, 5, 9], "img_path": ["a", "b", "c"]})
    cnn = pd.DataFrame({"img_no": [9, 4, 5], "img_path": ["c", "a", "b"]})
    for j, col in enumerate(SCORE_COLUMNS):
        v2[col] = [0.1 * j, -0.0437, 1.0]
        cnn[col] = [1.5, -0.3743, 0.5 + j]
    table, summary = compare_v2_vs_cnn(v2, cnn)
    expected_cols = ["img_no", "img_path"] + [f"{p}_{s}" for p in PROPERTIES for s in ("v2", "v2_cnn", "diff")]
    assert table.columns.tolist() == expected_cols
    assert table["eyes_v2_cnn"].tolist() == [-0.3743, 0.5, 1.5]
    assert table["eyes_diff"].tolist() == [0.3743, 0.5437, 0.5]
    assert summary["property"].tolist() == list(PROPERTIES)
    assert summary.loc[0, "mae"] == pytest.approx((0.3743 + 0.5437 + 0.5) / 3)
    assert summary.loc[0, "corr"] == pytest.approx(np.corrcoef([0, -0.0437, 1.0], [-0.3743, 0.5, 1.5])[0, 1])
    with pytest.raises(ValueError, match="no CNN prediction"):
        compare_v2_vs_cnn(v2, cnn.iloc[:2])


def test_scores_table_sorted():
    df = property_scores_table([5, 4], ["b", "a"], np.arange(14, dtype=float).reshape(2, 7))
    assert df["img_no"].tolist() == [4, 5] and df.columns.tolist() == ["img_no", "img_path"] + SCORE_COLUMNS
    assert df.loc[0, "eyes_score"] == 7.0
