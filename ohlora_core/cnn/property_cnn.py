"""Property-score CNN (the original's stylegan_generator_v2_cnn.py): train, predict, compare with v2.

Trained with the shared loop (training.fit): MSELoss(mean) over all 7 outputs, AdamW 5e-5, cosine
T_max 10, batch 16, early stopping (20) on the validation loss excluding background_std,
`(7 * val_loss - back_std_mse) / 6`; a 90/10 split (seeded; the original's random_split was not).
Inputs are ToTensor + Normalize(0.5, 0.5), i.e. [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..artifacts import PropertyScoreCnn
from ..io import atomic_torch_save, atomic_write_csv
from ..seeding import derive_seed, seeded
from .data import as_image_bank, eval_batch_size, to_signed_float
from .inference import predict
from .models import PropertyScoreCNN
from .training import PATIENCE, TRAIN_BATCH_SIZE, fit

PROPERTIES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean", "background_std")
SCORE_COLUMNS = [f"{p}_score" for p in PROPERTIES]  # all_scores_v2.csv column names
# names used in the original's train_log_v2_cnn.csv
_LOG_NAMES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "back_mean", "back_std")
VAL_LOG_SAMPLES = 30  # the original logged the first 30 validation samples of every epoch


def regression_metrics(outputs: np.ndarray, labels: np.ndarray) -> dict:
    """The original's per-epoch validation log: valid_loss (MSE over all), per-property MSE, mean |diff|,
    Pearson corr, and val_loss_except_back_std = (7 * valid_loss - back_std_mse) / 6."""
    out, lab = np.asarray(outputs, np.float64), np.asarray(labels, np.float64)
    err = out - lab
    mse = (err**2).mean(axis=0)
    row = {"valid_loss": float(mse.mean())}
    row["val_loss_except_back_std"] = (row["valid_loss"] * 7 - float(mse[6])) / 6
    for j, name in enumerate(_LOG_NAMES):
        row[f"{name}_score_loss"] = float(mse[j])
    for j, name in enumerate(_LOG_NAMES):
        row[f"{name}_score_abs_diff"] = float(np.abs(err[:, j]).mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, name in enumerate(_LOG_NAMES):
            row[f"{name}_score_corr"] = float(np.corrcoef(out[:, j], lab[:, j])[0, 1]) if len(out) > 1 else float("nan")
    return row


@dataclass
class PropertyCNNResult:
    model: PropertyScoreCNN  # best-epoch weights, eval mode
    log: pd.DataFrame  # train_log_v2_cnn.csv (rounded 4 dp)
    best_epoch: int
    best_val_loss_except_back_std: float
    train_index: np.ndarray
    valid_index: np.ndarray
    val_log: pd.DataFrame  # train_log_v2_cnn_val_log.csv
    checkpoint_path: Path


def split_90_10(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split with the original's sizes: train = int(0.9 n), valid = the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "property_split"))).numpy()
    n_train = int(n * 0.9)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def train_property_score_cnn(
    images_uint8: torch.Tensor | np.ndarray,
    scores: np.ndarray | pd.DataFrame,
    files: PropertyScoreCnn,
    seed: int,
    device: torch.device | str = "cpu",
    *,
    max_epochs: int | None = None,
    patience: int = PATIENCE,
    train_batch_size: int = TRAIN_BATCH_SIZE,
    valid_batch_size: int | None = None,
    img_paths: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> PropertyCNNResult:
    """Train the property-score CNN on v2 scores [N, 7] (a DataFrame must have the `{p}_score` columns).

    Writes, atomically, into `files`' folder: the best-epoch state_dict
    (`stylegan_gen_fine_tuned_v2_cnn.pth`), the per-epoch log (`train_log_v2_cnn.csv`) and the
    original's `train_log_v2_cnn_val_log.csv` (outputs and labels of the first 30 validation
    samples every epoch; `img_paths` name them).
    """
    device = torch.device(device)
    y = np.array(scores[SCORE_COLUMNS] if isinstance(scores, pd.DataFrame) else scores, dtype=np.float32)
    bank = as_image_bank(images_uint8, device)
    if y.shape != (bank.shape[0], 7):
        raise ValueError(f"expected scores [{bank.shape[0]}, 7], got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(
            f"scores contain {int((~np.isfinite(y)).sum())} NaN/inf values; drop or fix those images first"
        )
    train_idx, valid_idx = split_90_10(bank.shape[0], seed)
    valid_batch_size = eval_batch_size(device, valid_batch_size)
    targets = torch.from_numpy(y).to(device)
    valid_t = torch.as_tensor(valid_idx)

    first = valid_idx[:VAL_LOG_SAMPLES]
    paths = [str(img_paths[i]) for i in first] if img_paths is not None else [str(i) for i in first]
    val_rows: list[pd.DataFrame] = []

    def validate(model: nn.Module) -> dict:
        out = predict(model, bank, valid_t, to_signed_float, valid_batch_size).cpu().numpy()
        val_rows.append(val_log_rows(len(val_rows), paths, out[: len(first)], y[first]))
        return regression_metrics(out, y[valid_idx])

    run_seed = derive_seed(seed, "property_cnn")
    with seeded(run_seed, device):
        model = PropertyScoreCNN().to(device)
        result = fit(
            model,
            bank,
            targets,
            train_idx,
            to_signed_float,
            nn.MSELoss(reduction="mean"),
            validate,
            "val_loss_except_back_std",
            shuffle_seed=derive_seed(run_seed, "shuffle"),
            max_epochs=max_epochs,
            patience=patience,
            batch_size=train_batch_size,
            loss_is_sum=False,
            log=log,
            name="property-score CNN",
        )
    cols = ["epoch", "valid_loss", "val_loss_except_back_std"] + [
        f"{n}_score_{m}" for m in ("loss", "abs_diff", "corr") for n in _LOG_NAMES
    ]
    log_df = result.history[cols].copy()
    log_df[cols[1:]] = log_df[cols[1:]].round(4)
    val_log = pd.concat(val_rows, ignore_index=True)
    atomic_torch_save(files.checkpoint, result.best_state)
    atomic_write_csv(files.train_log, log_df)
    atomic_write_csv(files.val_log, val_log)
    model.load_state_dict(result.best_state)
    return PropertyCNNResult(
        model.eval(), log_df, result.best_epoch, result.best_loss, train_idx, valid_idx, files.checkpoint, val_log
    )


def val_log_rows(epoch: int, img_paths: Sequence[str], outputs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One epoch of train_log_v2_cnn_val_log.csv: epoch, img_path, then `{p}_score_output` (4 dp) and
    `{p}_score_label` per property, in the original's column order."""
    df = pd.DataFrame({"epoch": [epoch] * len(img_paths), "img_path": list(img_paths)})
    for j, name in enumerate(_LOG_NAMES):
        df[f"{name}_score_output"] = np.round(np.asarray(outputs, np.float32)[:, j], 4)
        df[f"{name}_score_label"] = np.asarray(labels)[:, j]
    return df


def predict_property_scores(
    model: nn.Module,
    images_uint8: torch.Tensor | np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
) -> np.ndarray:
    """[N, 7] float64 predictions rounded to 4 dp (eval mode: DEVIATION, the original left dropout on).

    Rounded like the original (np.round on the float32 outputs), then stored as the nearest float64.
    """
    device = torch.device(device)
    model.to(device)
    out = (
        predict(model, as_image_bank(images_uint8, device), None, to_signed_float, eval_batch_size(device, batch_size))
        .cpu()
        .numpy()
    )
    return np.round(np.round(out, 4).astype(np.float64), 4)


def property_scores_table(img_nos: Sequence[int], img_paths: Sequence[str], preds: np.ndarray) -> pd.DataFrame:
    """all_scores_v2_cnn.csv layout: img_no, img_path, {p}_score (sorted by img_no, no index)."""
    df = pd.DataFrame({"img_no": np.asarray(img_nos, np.int64), "img_path": list(img_paths)})
    for j, col in enumerate(SCORE_COLUMNS):
        df[col] = np.asarray(preds)[:, j]
    return df.sort_values("img_no", kind="stable").reset_index(drop=True)


def compare_v2_vs_cnn(v2_df: pd.DataFrame, cnn_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, summary). table = compare/all_scores_v2_vs_cnn.csv: img_no, img_path, then per property
    `{p}_v2, {p}_v2_cnn, {p}_diff` with diff = round(|v2 - cnn|, 4); rows follow v2_df, matched on img_no.
    summary: one row per property with MAE (mean |v2 - cnn|) and Pearson corr."""
    cnn = cnn_df.set_index("img_no")
    missing = sorted(set(v2_df["img_no"]) - set(cnn.index))
    if missing:
        raise ValueError(f"{len(missing)} image(s) of the v2 table have no CNN prediction, e.g. {missing[:10]}")
    table = v2_df[["img_no", "img_path"]].reset_index(drop=True).copy()
    summary = []
    for p, col in zip(PROPERTIES, SCORE_COLUMNS):
        v2 = v2_df[col].to_numpy(np.float64)
        pred = cnn[col].reindex(v2_df["img_no"]).to_numpy(np.float64)
        diff = np.abs(v2 - pred)
        table[f"{p}_v2"], table[f"{p}_v2_cnn"], table[f"{p}_diff"] = v2, np.round(pred, 4), np.round(diff, 4)
        corr = float(np.corrcoef(v2, pred)[0, 1]) if len(v2) > 1 else float("nan")
        summary.append({"property": p, "mae": float(diff.mean()), "corr": corr})
    return table, pd.DataFrame(summary)
