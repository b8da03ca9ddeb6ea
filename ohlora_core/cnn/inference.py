"""Batched, eval-mode scoring with the 5 fold models, the score table and the gender/quality filter.

DEVIATION from the original: the original never called `.eval()` before inference, so dropout was
active and its committed scores are one random draw (the same checkpoints gave image 2000 a gender
score of 0.1001, 0.0993 and 0.0699 in three runs). Here every model is scored in eval mode, so the
scores are a deterministic function of images and weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..io import load_checkpoint, load_state_dict_strict
from .data import as_image_bank, eval_batch_size, to_unit_float
from .models import MODEL_CLASSES

Transform = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, index: torch.Tensor | None, transform: Transform, batch_size: int
) -> torch.Tensor:
    """Model outputs [n, k] (float32, on the model's device) for `images[index]` in eval mode.

    `images` is a uint8 bank (see data.as_image_bank); batches are gathered there and moved to the
    model's device. The model is left in eval mode.
    """
    device = next(model.parameters()).device
    model.eval()
    n = images.shape[0] if index is None else len(index)
    outs = []
    for start in range(0, n, batch_size):
        sel = slice(start, start + batch_size) if index is None else index[start : start + batch_size]
        batch = images[sel] if index is None else images[sel.to(images.device)]
        outs.append(model(transform(batch.to(device, non_blocking=True))).float())
    return torch.cat(outs) if outs else torch.empty((0, 1), device=device)


def python_round(values: np.ndarray, ndigits: int = 4) -> np.ndarray:
    """Python's `round(float(v), ndigits)` element-wise (correctly rounded; np.round can differ by 1 ulp-step,
    e.g. 0.12345 -> 0.1235 with round() but 0.1234 with np.round). Used where the original called round()
    on a Python float."""
    flat = [round(float(v), ndigits) for v in np.asarray(values, dtype=np.float64).ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(np.shape(values))


@dataclass
class EnsembleScores:
    """Scores of K fold models for N images.

    raw: [N, K] float64 of the float32 sigmoid outputs (unrounded);
    per_model: [N, K] rounded to 4 dp like the original's `round(float(p), 4)`;
    final: [N] = np.round(mean of the K unrounded outputs, 4), like the original's `round(np.mean(...), 4)`.
    """

    raw: np.ndarray
    per_model: np.ndarray
    final: np.ndarray


def ensemble_from_raw(raw: np.ndarray) -> EnsembleScores:
    """Apply the original's rounding to raw per-model probabilities [N, K]."""
    raw = np.asarray(raw, dtype=np.float64)
    # round(np.float64, 4) in the original dispatches to numpy's rounding, so np.round is exact here
    return EnsembleScores(raw=raw, per_model=python_round(raw, 4), final=np.round(raw.mean(axis=1), 4))


def score_images(
    models: Sequence[nn.Module],
    images: torch.Tensor | np.ndarray,
    device: torch.device | str,
    batch_size: int | None = None,
) -> EnsembleScores:
    """Score uint8 images [N, 3, 256, 256] with every fold model (eval mode, no dropout; see module doc)."""
    device = torch.device(device)
    bank = as_image_bank(images, device)
    batch_size = eval_batch_size(device, batch_size)
    raw = []
    for model in models:
        model.to(device)
        raw.append(predict(model, bank, None, to_unit_float, batch_size)[:, 0].cpu().double())
    return ensemble_from_raw(torch.stack(raw, dim=1).numpy())


def score_files_sharded(
    model_files: Mapping[str, Sequence[str]],
    image_paths: Sequence[str],
    devices: Sequence[str],
    batch_size: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, EnsembleScores]:
    """{property: `score_images` of `load_fold_models(property, files)` over the images at `image_paths`}, the
    images split over one worker process per device (`ohlora_core.shards`). Each worker decodes its own images
    and loads the fold models itself; shards are cut at multiples of the evaluation batch, so every batch holds
    the images it holds in one process and the scores are the same numbers."""
    from ohlora_core import shards
    from ohlora_core.progress import Progress

    from .data import eval_batch_size

    batch = eval_batch_size(devices[0], batch_size)
    paths = [str(p) for p in image_paths]
    parts = shards.split([paths[i : i + batch] for i in range(0, len(paths), batch)], len(devices), weight=len)
    jobs = [
        (device, _ScoreJob(dict(model_files), [p for chunk in part for p in chunk], batch))
        for device, part in zip(devices, parts, strict=False)
    ]  # fewer parts than devices: fewer workers
    if log:
        log(f"gender_quality_scores: {len(paths)} images in {len(jobs)} shards on {', '.join(d for d, _ in jobs)}")
    progress = Progress(len(paths) * len(model_files), log, "gender_quality_scores", unit="image scores")
    raws = shards.run(_score_shard, jobs, lambda _shard, count: progress.tick(count), name="gender_quality_scores")
    return {prop: ensemble_from_raw(np.concatenate([raw[prop] for raw in raws])) for prop in model_files}


@dataclass(frozen=True)
class _ScoreJob:
    model_files: dict[str, Sequence[str]]
    image_paths: list[str]
    batch_size: int


def _score_shard(job: _ScoreJob, device: str, emit) -> dict[str, np.ndarray]:
    """One shard's worker: {property: raw [n, K] outputs of its images}, a message per property scored."""
    from .data import decode_images

    images, raw = decode_images(job.image_paths), {}
    for prop, files in job.model_files.items():
        raw[prop] = score_images(load_fold_models(prop, files, device), images, device, job.batch_size).raw
        emit(len(job.image_paths))
    return raw


def load_fold_models(prop: str, paths: Sequence[str], device: torch.device | str = "cpu") -> list[nn.Module]:
    """Load `{prop}_model_{fold}.pt` state_dicts (original or ours) strictly, in eval mode."""
    models = []
    for path in paths:
        model = MODEL_CLASSES[prop]()
        load_state_dict_strict(model, load_checkpoint(path), str(path))
        models.append(model.to(device).eval())
    return models


def inference_table(
    prop: str, img_nos: Sequence[int], img_paths: Sequence[str], scores: EnsembleScores
) -> pd.DataFrame:
    """The original's `inference_result/{prop}.csv` layout:
    img_no, img_path, property_{prop}_final_score, score_model_0..K-1."""
    df = pd.DataFrame(
        {
            "img_no": np.asarray(img_nos, dtype=np.int64),
            "img_path": list(img_paths),
            f"property_{prop}_final_score": scores.final,
        }
    )
    for k in range(scores.per_model.shape[1]):
        df[f"score_model_{k}"] = scores.per_model[:, k]
    return df


def combine_with_labels(
    labels: pd.DataFrame,
    gender_table: pd.DataFrame,
    quality_table: pd.DataFrame,
    img_paths: Mapping[int, str] | Sequence[str],
) -> pd.DataFrame:
    """All images: hand label where labelled, 5-model mean elsewhere.

    Columns: img_no, img_path, gender_score, quality_score (= the original's
    all_image_quality_and_gender.csv), then `source` ('label' | 'cnn') and the per-model columns
    gender_score_model_k / quality_score_model_k (NaN for labelled images).
    `img_paths[i]` is the path of image i; every image must be labelled or scored.
    """
    if isinstance(img_paths, Mapping):
        nos = np.array(sorted(img_paths), dtype=np.int64)
        paths = [img_paths[i] for i in nos]
    else:
        nos, paths = np.arange(len(img_paths), dtype=np.int64), list(img_paths)
    out = pd.DataFrame({"img_no": nos, "img_path": paths})
    lab = labels.set_index("img_no")
    labelled_both = np.ones(len(nos), dtype=bool)
    per_model: dict[str, np.ndarray] = {}
    for prop, table in (("gender", gender_table), ("quality", quality_table)):
        pred = table.set_index("img_no")
        score = pd.Series(pred[f"property_{prop}_final_score"]).reindex(nos).to_numpy(dtype=np.float64, copy=True)
        labelled = pd.Series(lab[prop]).reindex(nos)
        has_label = labelled.notna().to_numpy()
        score[has_label] = labelled.to_numpy(dtype=np.float64)[has_label]
        if np.isnan(score).any():
            missing = nos[np.isnan(score)]
            raise ValueError(
                f"{len(missing)} image(s) have neither a {prop} label nor a CNN score, e.g. {missing[:10].tolist()}"
            )
        out[f"{prop}_score"] = score
        labelled_both &= has_label
        for c in (c for c in pred.columns if c.startswith("score_model_")):
            col = pd.Series(pred[c]).reindex(nos).to_numpy(dtype=np.float64, copy=True)
            col[has_label] = np.nan
            per_model[f"{prop}_{c}"] = col
    out["source"] = np.where(labelled_both, "label", "cnn")
    return pd.concat([out, pd.DataFrame(per_model, index=out.index)], axis=1)


def filter_images(df: pd.DataFrame, gender_min: float = 0.7, quality_min: float = 0.9) -> pd.DataFrame:
    """Rows with gender_score >= gender_min AND quality_score >= quality_min (the original's filter)."""
    return df[(df["gender_score"] >= gender_min) & (df["quality_score"] >= quality_min)]
