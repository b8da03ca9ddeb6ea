"""One training loop for all three CNNs, and the K-fold driver with retries for gender / quality.

Choices are the original's (`cnn/cnn_common.py`, `global_common/torch_training.py`): AdamW(lr 5e-5,
other defaults), CosineAnnealingLR(T_max 10, eta_min 0) stepped once per epoch, train batch 16,
early stopping when `epoch - best_epoch >= patience` (20) with strict-`<` improvement, best-epoch
weights kept. Gender/quality: BCELoss(reduction='sum') (reported loss = sum / n), 5-fold KFold /
StratifiedKFold; a fold whose best validation loss is > threshold is retrained from a fresh init.

Differences from the original: splits use `random_state` and all randomness (init, dropout, batch
order) comes from seeds derived from (seed, property, fold, attempt), so a CPU run is reproducible
byte for byte; retries are capped (`max_attempts`) and end in `TrainingFailed`; images are decoded
once (see data.py); `max_epochs` can cap training (smoke mode).

`fit` is the CNN stages' loop (gender / quality here, the property-score CNN in property_cnn.py), kept
apart from fine-tuning's `ohlora_core.finetune.loop.run_task`: it is driven by a validation metric after
every epoch, sums the loss on the device (no sync per step), and is neither resumed nor snapshotted (a
fold trains in minutes and a failed fold is retried whole), while the fine-tuning loop resumes step by
step with per-step seeded randomness. Both share `ohlora_core.early_stopping`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from torch import nn

from ..artifacts import GenderQualityModels
from ..early_stopping import EarlyStopping, cpu_copy
from ..io import atomic_torch_save, atomic_write_csv
from ..seeding import derive_seed, seeded
from .data import as_image_bank, eval_batch_size, iterate_batches, to_unit_float
from .inference import predict
from .models import MODEL_CLASSES

LR = 5e-5
T_MAX = 10
TRAIN_BATCH_SIZE = 16
PATIENCE = 20
K_FOLDS = 5


@dataclass(frozen=True)
class PropertySettings:
    val_loss_threshold: float  # a fold succeeds iff its best val loss <= this
    pos_neg_threshold: float  # output >= this counts as positive in the per-epoch metrics
    stratified: bool


SETTINGS = {
    "gender": PropertySettings(0.35, 0.5, stratified=False),
    "quality": PropertySettings(0.13, 0.9, stratified=True),
}


class TrainingFailed(RuntimeError):
    """A fold never reached its validation-loss threshold within `max_attempts` fresh trainings."""


# ---------------------------------------------------------------- the shared loop


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]  # CPU copies of the best epoch's weights
    best_epoch: int
    best_loss: float  # the early-stopping metric at best_epoch
    history: pd.DataFrame  # one row per epoch: epoch, train_loss, validation metrics
    elapsed_s: float

    @property
    def stop_losses(self) -> list[float]:
        return self.history.attrs["stop_losses"]


def fit(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    train_index: np.ndarray,
    transform: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    validate: Callable[[nn.Module], dict],
    stop_key: str,
    *,
    shuffle_seed: int,
    max_epochs: int | None = None,
    patience: int = PATIENCE,
    batch_size: int = TRAIN_BATCH_SIZE,
    lr: float = LR,
    t_max: int = T_MAX,
    loss_is_sum: bool = True,
    log: Callable[[str], None] | None = None,
    name: str = "",
) -> FitResult:
    """Train `model` until `patience` epochs pass without a strictly lower `validate(model)[stop_key]`.

    images: uint8 bank [N, 3, H, W] (any device); targets: float32 [N, k] on the model's device;
    loss_fn(outputs, targets) -> scalar, a sum over the batch (`loss_is_sum`, e.g. BCELoss(reduction='sum'))
    or a mean; `train_loss` is reported per sample either way.
    `max_epochs` (None = unbounded, as the original) caps the number of epochs.
    Dropout/initialisation randomness is the caller's (use `seeded`); batch order comes from `shuffle_seed`.
    `name` (e.g. "gender fold 2 attempt 0") starts every log line.
    """
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=0)
    order = torch.Generator().manual_seed(shuffle_seed)
    rows, stop_losses = [], []
    best = EarlyStopping(patience)
    start, epoch = time.perf_counter(), 0
    while True:
        model.train()
        loss_sum = torch.zeros((), device=device)
        for idx in iterate_batches(train_index, batch_size, order):
            x = transform(images[idx.to(images.device)].to(device, non_blocking=True))
            y = targets[idx.to(targets.device)]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x).float(), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() if loss_is_sum else loss.detach() * len(idx)
        metrics = validate(model)
        stop = float(metrics[stop_key])
        rows.append({"epoch": epoch, "train_loss": float(loss_sum) / len(train_index), **metrics})
        stop_losses.append(stop)
        scheduler.step()
        done = best.update(epoch, stop, lambda: cpu_copy(model.state_dict()))
        if log:
            log(
                f"{name + ' ' if name else ''}epoch {epoch}: train_loss {rows[-1]['train_loss']:.4f}, "
                f"{stop_key} {stop:.4f} (best {best.loss:.4f} @ {best.epoch})"
            )
        if done or (max_epochs is not None and epoch + 1 >= max_epochs):
            break
        epoch += 1
    history = pd.DataFrame(rows)
    history.attrs["stop_losses"] = stop_losses
    return FitResult(best.state, best.epoch, best.loss, history, time.perf_counter() - start)


# ---------------------------------------------------------------- binary metrics

EPOCH_DETAIL_COLUMNS = [
    "epoch",
    "val_loss",
    "val_accuracy",
    "tp",
    "tn",
    "fp",
    "fn",
    "val_recall",
    "val_precision",
    "val_f1_score",
    "val_auroc",
]


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """The original's run_validation_detail metrics (NaN where it wrote '' or crashed).

    val_loss = BCE sum / n (float32 as computed on the device); AUROC is NaN when the fold has one class.
    """
    p = np.asarray(probs, dtype=np.float32).ravel()
    y = np.asarray(labels, dtype=np.float32).ravel()
    pos, true = p >= threshold, y >= threshold
    tp, tn = int(np.sum(pos & true)), int(np.sum(~pos & ~true))
    fp, fn = int(np.sum(pos & ~true)), int(np.sum(~pos & true))
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * recall * precision / (recall + precision) if tp else float("nan")
    auroc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    loss = float(F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(y), reduction="sum")) / len(p)
    return {
        "val_loss": loss,
        "val_accuracy": (tp + tn) / len(p),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "val_recall": recall,
        "val_precision": precision,
        "val_f1_score": f1,
        "val_auroc": auroc,
    }


# ---------------------------------------------------------------- K-fold driver


def kfold_splits(
    labels: np.ndarray, stratified: bool, seed: int, n_splits: int = K_FOLDS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, valid_idx) per fold; shuffle=True with random_state=seed (the original had none)."""
    labels = np.asarray(labels)
    rs = int(seed) % (2**32)
    if stratified:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=rs)
        return list(splitter.split(np.zeros(len(labels)), labels))
    return list(KFold(n_splits=n_splits, shuffle=True, random_state=rs).split(np.zeros(len(labels))))


@dataclass
class KFoldResult:
    prop: str
    models: list[nn.Module]  # best-epoch model per fold, eval mode
    model_paths: list[Path]
    train_log: pd.DataFrame  # one row per attempt (original train_log_{prop}.csv + `attempt`)
    epoch_details: list[pd.DataFrame]  # per fold, successful attempt (epoch_detail_{prop}_{fold}.csv)
    folds: list[tuple[np.ndarray, np.ndarray]]
    attempts: list[int] = field(default_factory=list)


def _check_labels(prop: str, labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"{prop}: expected {n} labels (one per image), got shape {y.shape}")
    if not np.isin(y, [0, 1]).all():
        raise ValueError(f"{prop}: labels must be 0 or 1, got {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}")
    return y.astype(np.int64)


def _validator(bank, valid_t: torch.Tensor, valid_y: np.ndarray, batch_size: int, threshold: float):
    """One fold's validation: metrics of a model's probabilities on the fold's validation rows."""

    def validate(model: nn.Module) -> dict:
        probs = predict(model, bank, valid_t, to_unit_float, batch_size)[:, 0].cpu().numpy()
        return binary_metrics(probs, valid_y, threshold)

    return validate


def train_property_models(
    prop: str,
    images_uint8: torch.Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    files: GenderQualityModels,
    seed: int,
    device: torch.device | str = "cpu",
    *,
    max_epochs: int | None = None,
    patience: int = PATIENCE,
    max_attempts: int = 3,
    n_splits: int = K_FOLDS,
    val_loss_threshold: float | None = None,
    train_batch_size: int = TRAIN_BATCH_SIZE,
    valid_batch_size: int | None = None,
    lr: float = LR,
    log: Callable[[str], None] | None = None,
) -> KFoldResult:
    """K-fold train the gender or quality CNN; write checkpoints and logs into `files`' folder.

    images_uint8: [N, 3, 256, 256] uint8 (labelled images, row i <-> labels[i]).
    Writes (atomically) `models/{prop}_model_{fold}.pt` (best-epoch state_dict),
    `log/train_log_{prop}.csv` (rewritten after every attempt, pandas index kept as the
    original) and `log/epoch_detail_{prop}_{fold}.csv`.
    A fold is retried with a fresh init while its best val loss > threshold (default 0.35 gender,
    0.13 quality); after `max_attempts` failures `TrainingFailed` is raised (logs are written first).
    `lr` other than 5e-5 is only for tests; `max_epochs` caps training (smoke mode).
    """
    if prop not in SETTINGS:
        raise ValueError(f"prop must be 'gender' or 'quality', got {prop!r}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    cfg = SETTINGS[prop]
    threshold = cfg.val_loss_threshold if val_loss_threshold is None else val_loss_threshold
    device = torch.device(device)
    bank = as_image_bank(images_uint8, device)
    y = _check_labels(prop, labels, bank.shape[0])
    targets = torch.as_tensor(y, dtype=torch.float32, device=device).unsqueeze(1)
    folds = kfold_splits(y, cfg.stratified, seed, n_splits)
    valid_batch_size = eval_batch_size(device, valid_batch_size)
    bce_sum = nn.BCELoss(reduction="sum")

    log_rows, details, models, paths, attempts_used = [], [], [], [], []
    log_path = files.train_log(prop)
    for fold, (train_idx, valid_idx) in enumerate(folds):
        validate = _validator(bank, torch.as_tensor(valid_idx), y[valid_idx], valid_batch_size, cfg.pos_neg_threshold)
        losses_per_attempt = []
        for attempt in range(max_attempts):
            run_seed = derive_seed(seed, prop, fold, attempt)
            with seeded(run_seed, device):
                model = MODEL_CLASSES[prop]().to(device)
                result = fit(
                    model,
                    bank,
                    targets,
                    train_idx,
                    to_unit_float,
                    bce_sum,
                    validate,
                    "val_loss",
                    shuffle_seed=derive_seed(run_seed, "shuffle"),
                    max_epochs=max_epochs,
                    patience=patience,
                    batch_size=train_batch_size,
                    lr=lr,
                    log=log,
                    name=f"{prop} CNN fold {fold} attempt {attempt}",
                )
            val_losses = result.stop_losses
            success = result.best_loss <= threshold
            losses_per_attempt.append(result.best_loss)
            log_rows.append(
                {
                    "fold_no": fold,
                    "success": success,
                    "min_val_loss": round(result.best_loss, 4),
                    "total_epochs": len(val_losses),
                    "best_epoch": result.best_epoch,
                    "elapsed_time (s)": round(result.elapsed_s, 2),
                    "val_loss_list": str([round(v, 4) for v in val_losses]),
                    "attempt": attempt,
                }
            )
            atomic_write_csv(log_path, pd.DataFrame(log_rows), index=True)
            if log:
                bound = f"threshold {threshold}" if np.isfinite(threshold) else "no threshold enforced"
                log(
                    f"{prop} fold {fold} attempt {attempt}: best val loss {result.best_loss:.4f} "
                    f"({bound}) -> {'ok' if success else 'retry'}"
                )
            if success:
                break
        else:
            raise TrainingFailed(
                f"{prop} CNN fold {fold}: best validation loss stayed above {threshold} in all {max_attempts} "
                f"attempts (best losses {[round(v, 4) for v in losses_per_attempt]}); see {log_path}"
            )

        detail = result.history[EPOCH_DETAIL_COLUMNS]
        atomic_write_csv(files.epoch_detail(prop, fold), detail)
        path = files.model(prop, fold)
        atomic_torch_save(path, result.best_state)
        model.load_state_dict(result.best_state)
        models.append(model.eval())
        paths.append(path)
        details.append(detail)
        attempts_used.append(attempt + 1)
    return KFoldResult(prop, models, paths, pd.DataFrame(log_rows), details, folds, attempts_used)
