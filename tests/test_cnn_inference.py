"""Ensemble scoring (eval mode), original rounding, score table, labels-vs-CNN merge and the filter."""

import numpy as np
import pandas as pd
import pytest
import torch

from ohlora_core.cnn.inference import (
    combine_with_labels,
    ensemble_from_raw,
    filter_images,
    inference_table,
    load_fold_models,
    python_round,
    score_images,
)
from ohlora_core.cnn.models import QualityCNN
from ohlora_core.io import CheckpointError, atomic_torch_save

torch.set_num_threads(2)


def _models(k=5):
    out = []
    for i in range(k):
        torch.manual_seed(i)
        out.append(QualityCNN())
    return out


def test_mean_of_five_models_and_original_rounding():
    models = _models()
    imgs = torch.randint(0, 256, (6, 3, 256, 256), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    s = score_images(models, imgs, "cpu", batch_size=4)
    # the original's per-image bookkeeping, written out (eval mode instead of its dropout-on forward)
    final, per_model = [], []
    with torch.no_grad():
        outs = [m.eval()(imgs.float() / 255).float() for m in models]
    for i in range(6):
        scores = np.zeros(5)
        row = []
        for k in range(5):
            v = float(outs[k][i])
            row.append(round(v, 4))
            scores[k] = v
        per_model.append(row)
        final.append(round(np.mean(scores), 4))
    assert s.raw.shape == (6, 5) and s.per_model.tolist() == per_model and s.final.tolist() == final
    assert np.array_equal(s.raw.mean(axis=1), np.mean(s.raw, axis=1))
    again = score_images(models, imgs, "cpu", batch_size=3)  # eval mode: deterministic, batch-independent
    assert np.allclose(again.raw, s.raw, atol=1e-6)


def test_rounding_rules_differ_like_the_original():
    # round(python float) vs numpy rounding of an np.float64 mean -- both as the original used them
    assert python_round(np.array([0.12345]))[0] == 0.1235 == round(0.12345, 4)
    e = ensemble_from_raw(np.array([[0.12345]]))
    assert e.per_model[0, 0] == 0.1235 and e.final[0] == 0.1234 == round(np.float64(0.12345), 4)


def test_inference_table_combine_and_filter():
    raw_g = np.array([[0.9] * 5, [0.6] * 5, [0.7] * 5])
    raw_q = np.array([[0.95] * 5, [0.99] * 5, [0.9] * 5])
    g = inference_table("gender", [2, 3, 4], ["p2", "p3", "p4"], ensemble_from_raw(raw_g))
    q = inference_table("quality", [2, 3, 4], ["p2", "p3", "p4"], ensemble_from_raw(raw_q))
    assert g.columns.tolist() == ["img_no", "img_path", "property_gender_final_score"] + [
        f"score_model_{k}" for k in range(5)
    ]
    labels = pd.DataFrame({"img_no": [0, 1], "gender": [1, 0], "quality": [1, 1]})
    df = combine_with_labels(labels, g, q, [f"p{i}" for i in range(5)])
    assert df.columns.tolist()[:5] == ["img_no", "img_path", "gender_score", "quality_score", "source"]
    assert df["gender_score"].tolist() == [1, 0, 0.9, 0.6, 0.7]
    assert df["quality_score"].tolist() == [1, 1, 0.95, 0.99, 0.9]
    assert df["source"].tolist() == ["label", "label", "cnn", "cnn", "cnn"]
    assert np.isnan(df.loc[0, "gender_score_model_0"]) and df.loc[2, "quality_score_model_4"] == 0.95
    assert filter_images(df)["img_no"].tolist() == [0, 2, 4]  # >= on both thresholds
    with pytest.raises(ValueError, match="neither a gender label nor a CNN score"):
        combine_with_labels(labels, g.iloc[:2], q, [f"p{i}" for i in range(5)])


def test_load_fold_models_strict(tmp_path):
    models = _models(2)
    paths = []
    for i, m in enumerate(models):
        paths.append(tmp_path / f"quality_model_{i}.pt")
        atomic_torch_save(paths[-1], m.state_dict())
    loaded = load_fold_models("quality", paths)
    assert not loaded[0].training and torch.equal(loaded[1].fc1[0].weight, models[1].fc1[0].weight)
    with pytest.raises(CheckpointError, match="quality_model_0.pt"):
        load_fold_models("gender", paths[:1])
