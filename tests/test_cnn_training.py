"""Shared training loop, K-fold driver with retries, seeded reproducibility, per-epoch metrics."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ohlora_core.artifacts import GenderQualityModels
from ohlora_core.cnn.data import to_unit_float
from ohlora_core.cnn.training import (
    EPOCH_DETAIL_COLUMNS,
    TrainingFailed,
    binary_metrics,
    fit,
    kfold_splits,
    train_property_models,
)

torch.set_num_threads(2)


def _toy_quality(n: int, seed: int = 0):
    """Random images whose top band (the quality crop) is bright for label 1 and dark for label 0."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, 3, 256, 256), generator=g, dtype=torch.uint8)
    labels = np.array([1, 0] * (n // 2))
    imgs[labels == 1, :, :64, 64:192] = torch.randint(
        200, 256, (int(labels.sum()), 3, 64, 128), generator=g, dtype=torch.uint8
    )
    imgs[labels == 0, :, :64, 64:192] = torch.randint(
        0, 56, (int((1 - labels).sum()), 3, 64, 128), generator=g, dtype=torch.uint8
    )
    return imgs, labels


def test_quality_learns_separable_signal_and_writes_original_files(tmp_path):
    imgs, labels = _toy_quality(16)
    res = train_property_models(
        "quality",
        imgs,
        labels,
        GenderQualityModels(tmp_path),
        seed=0,
        n_splits=2,
        max_epochs=10,
        lr=1e-3,
        max_attempts=3,
    )
    assert all(d["val_loss"].min() <= 0.13 for d in res.epoch_details)  # quality threshold reached
    assert res.train_log["success"].iloc[-1] and len(res.train_log) == sum(res.attempts)
    for fold in range(2):
        assert (tmp_path / "models" / f"quality_model_{fold}.pt").is_file()
        detail = pd.read_csv(tmp_path / "log" / f"epoch_detail_quality_{fold}.csv")
        assert detail.columns.tolist() == EPOCH_DETAIL_COLUMNS
        assert (detail["tp"] + detail["tn"] + detail["fp"] + detail["fn"] == 8).all()
    log = pd.read_csv(tmp_path / "log" / "train_log_quality.csv")
    assert log.columns.tolist() == [
        "Unnamed: 0",
        "fold_no",
        "success",
        "min_val_loss",
        "total_epochs",
        "best_epoch",
        "elapsed_time (s)",
        "val_loss_list",
        "attempt",
    ]
    best = [res.epoch_details[f]["val_loss"].idxmin() for f in range(2)]
    assert log[log["success"]]["best_epoch"].tolist() == best
    # the returned models are the best-epoch weights: their val loss equals the logged minimum
    for fold, (_, valid_idx) in enumerate(res.folds):
        with torch.no_grad():
            p = res.models[fold](to_unit_float(imgs[valid_idx]))[:, 0].numpy()
        assert binary_metrics(p, labels[valid_idx], 0.9)["val_loss"] == pytest.approx(
            res.epoch_details[fold]["val_loss"].min(), abs=2e-5
        )


def test_stratified_folds_keep_rare_class_and_are_seeded():
    labels = np.ones(100, dtype=int)
    labels[[3, 17, 40, 66, 91]] = 0
    folds = kfold_splits(labels, stratified=True, seed=5)
    assert len(folds) == 5 and all((labels[v] == 0).sum() == 1 for _, v in folds)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(100))
    again = kfold_splits(labels, stratified=True, seed=5)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = kfold_splits(labels, stratified=True, seed=6)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    plain = kfold_splits(labels, stratified=False, seed=5)
    assert [len(v) for _, v in plain] == [20] * 5


def test_retry_then_gives_up_with_named_error(tmp_path):
    imgs, labels = _toy_quality(8)
    with pytest.raises(
        TrainingFailed, match=r"quality CNN fold 0: .* above 0.0 in all 2 attempts \(best losses \[0\.\d+, 0\.\d+\]\)"
    ):
        train_property_models(
            "quality",
            imgs,
            labels,
            GenderQualityModels(tmp_path),
            seed=0,
            n_splits=2,
            max_epochs=1,
            max_attempts=2,
            val_loss_threshold=0.0,
        )
    log = pd.read_csv(tmp_path / "log" / "train_log_quality.csv")
    assert log["attempt"].tolist() == [0, 1] and log["fold_no"].tolist() == [0, 0] and not log["success"].any()
    assert log["min_val_loss"].iloc[0] != log["min_val_loss"].iloc[1]  # fresh init per attempt
    assert not (tmp_path / "models" / "quality_model_0.pt").exists()


def test_same_seed_same_bytes(tmp_path):
    imgs, labels = _toy_quality(8)
    kw = dict(n_splits=2, max_epochs=2, val_loss_threshold=10.0)
    torch.manual_seed(123)  # global state must not matter
    train_property_models("quality", imgs, labels, GenderQualityModels(tmp_path / "a"), seed=3, **kw)
    torch.manual_seed(999)
    train_property_models("quality", imgs, labels, GenderQualityModels(tmp_path / "b"), seed=3, **kw)
    train_property_models("quality", imgs, labels, GenderQualityModels(tmp_path / "c"), seed=4, **kw)
    for fold in range(2):
        name = f"models/quality_model_{fold}.pt"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_binary_metrics_values_and_single_class():
    m = binary_metrics(np.array([0.95, 0.5, 0.2, 0.92]), np.array([1, 1, 0, 0]), threshold=0.9)
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (1, 1, 1, 1)
    assert (
        m["val_accuracy"] == 0.5 and m["val_recall"] == 0.5 and m["val_precision"] == 0.5 and m["val_f1_score"] == 0.5
    )
    assert m["val_auroc"] == 0.75  # 3 of 4 positive-negative pairs ordered correctly
    expected = -(np.log(0.95) + np.log(0.5) + np.log(0.8) + np.log(0.08)) / 4
    assert m["val_loss"] == pytest.approx(expected, rel=1e-6)
    one = binary_metrics(np.array([0.1, 0.3]), np.array([0, 0]), 0.5)
    assert np.isnan(one["val_auroc"]) and np.isnan(one["val_recall"]) and np.isnan(one["val_f1_score"])
    assert one["val_accuracy"] == 1.0


def test_fit_early_stopping_keeps_best_epoch_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 1))
    imgs = torch.randint(0, 256, (8, 3, 2, 2), dtype=torch.uint8)
    targets = torch.rand(8, 1)
    script = [5.0, 4.0, 3.0, 3.5, 3.0, 3.1, 9.0, 0.1]  # best at epoch 2 (3.0 again at 4 is not better)
    seen = []

    def validate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"val_loss": script[len(seen) - 1]}

    res = fit(
        model,
        imgs,
        targets,
        np.arange(8),
        to_unit_float,
        nn.MSELoss(),
        validate,
        "val_loss",
        shuffle_seed=0,
        patience=3,
        loss_is_sum=False,
    )
    assert res.best_epoch == 2 and res.best_loss == 3.0 and len(res.history) == 6  # stops at epoch 2 + 3
    assert all(torch.equal(res.best_state[k], seen[2][k]) for k in seen[2])
    assert not torch.equal(res.best_state["1.weight"], seen[5]["1.weight"])
    capped = fit(
        model,
        imgs,
        targets,
        np.arange(8),
        to_unit_float,
        nn.MSELoss(),
        lambda m: {"val_loss": 1.0},
        "val_loss",
        shuffle_seed=0,
        max_epochs=2,
    )
    assert len(capped.history) == 2
