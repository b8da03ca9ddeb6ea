"""The one training entry point of every fine-tuning version: `train(variant, inputs, files, ...)`.

The variant record names its task class (`variant.task`, stylegan2-ada's `class_name`); the task builds
its networks from `TrainInputs`, `loop.run_task` trains it (resuming from `files.snapshot` if an earlier
attempt died), and the task writes its per-epoch and final files into `files`. The result is one
`TrainResult` for v1..v4.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ohlora_core.artifacts import FINETUNES, StyleganFinetuneV1

from .loop import run_task
from .variants import CnnLoopVariant, CvaeVariant, GanVariant

Variant = GanVariant | CnnLoopVariant | CvaeVariant


@dataclass
class TrainInputs:
    """What a version starts from; `variant.inputs` names the fields it needs (the others stay None)."""

    generator: Mapping[str, torch.Tensor]  # G state_dict (pretrained, or v1's for v2..v4)
    discriminator: Mapping[str, torch.Tensor] | None = None  # D state_dict (v1, v4)
    property_cnn: Mapping[str, torch.Tensor] | None = None  # property-score CNN state_dict (v2, v3)
    gender_cnn: Mapping[str, torch.Tensor] | None = None  # gender CNN fold 0 state_dict (v3)
    images: torch.Tensor | None = None  # uint8 [N, 3, 256, 256] (v1, v3, v4)
    labels: np.ndarray | None = None  # [N, len(variant.labels)], row i <-> image i

    def check(self, variant: Variant) -> None:
        """A clear error before any work when an input the variant needs is missing or one it ignores is given."""
        given = {f.name for f in fields(self) if getattr(self, f.name) is not None}
        missing = [name for name in variant.inputs if name not in given]
        unused = sorted(given - set(variant.inputs))
        if missing:
            raise ValueError(
                f"fine-tune {variant.name} needs TrainInputs.{', TrainInputs.'.join(missing)} "
                f"(it trains from {', '.join(variant.inputs)})"
            )
        if unused:
            raise ValueError(
                f"fine-tune {variant.name} does not use TrainInputs.{', TrainInputs.'.join(unused)}; "
                f"leave them None (it trains from {', '.join(variant.inputs)})"
            )


@dataclass
class TrainResult:
    """One run of any version. `outputs` are every file the asset promotes, relative to `files.dir`."""

    log: pd.DataFrame  # the training log as written (rounded to 4 decimals)
    outputs: list[str]
    resumed_from: tuple[int, int] | None  # (epoch, step) of the snapshot a resumed run started from
    epochs_done: int
    best: tuple[int, float] | None  # (epoch / step group, loss) of the generator kept: v2, v3
    summary: dict = field(default_factory=dict)  # small figures for metadata (final losses, passing epochs...)
    tests: pd.DataFrame | None = None  # v3: one row per epoch (passed_z of, best correlations)


def task_class(variant: Variant) -> type:
    """The task class a variant names ('package.module.Class')."""
    module, _, name = variant.task.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _check_files(variant: Variant, files: StyleganFinetuneV1) -> None:
    expected = FINETUNES.get(variant.name)
    if expected is None or files.NAME != expected.NAME:
        raise ValueError(
            f"fine-tune {variant.name} writes {expected.NAME if expected else 'no known files'}, "
            f"got files of {files.NAME}"
        )


def train(
    variant: Variant,
    inputs: TrainInputs,
    files: StyleganFinetuneV1,
    *,
    epochs: int,
    seed: int,
    device: str | torch.device = "cpu",
    max_steps: int | None = None,
    snapshot_every: int = 100,
    samples_per_label: int = 4,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Fine-tune `variant` (v1..v4) from `inputs`, writing into `files` (`artifacts.FINETUNES[variant.name]`).

    `epochs`: epochs (v2: step groups); `max_steps` caps the steps of each (smoke runs); a snapshot is
    written every `snapshot_every` steps and after every epoch, and removed once the final files exist.
    `samples_per_label`: z's per label row of the per-epoch sample grid (v1, v2, v4).
    """
    inputs.check(variant)
    _check_files(variant, files)
    task = task_class(variant).from_inputs(
        variant, inputs, seed=seed, device=device, samples_per_label=samples_per_label, log=log
    )
    run = run_task(
        task,
        epochs=epochs,
        seed=seed,
        snapshot=files.snapshot,
        snapshot_every=snapshot_every,
        max_steps=max_steps,
        log=log,
        on_epoch=lambda epoch: task.write_epoch(files, epoch),
    )
    table, written = task.write_final(files, run)
    files.snapshot.unlink(missing_ok=True)
    outputs = sorted({str(Path(p).relative_to(files.dir)) for p in written})
    tests = None if task.tests is None else pd.DataFrame(task.tests)
    return TrainResult(table, outputs, run.resumed_from, run.epochs_done, task.best, task.summary(table), tests)
