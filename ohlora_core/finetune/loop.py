"""The one training loop of every fine-tuning version (v1..v4), made resumable and reproducible.

A version is a `Task` (its batches, its step, its end of epoch, its state; see gan.py, cnn_loop.py,
cvae.py); `run_task` runs the epochs, logs progress, writes snapshots and resumes. Randomness is a function
of the position in training, never of what ran before in the process: each step gets a CPU generator
seeded by (seed, epoch, step) for its explicit draws (batch order, z, style mixing, noise, ...), and
torch's global RNG (which dropout draws from; v2 and v3 leave the CNNs' dropout on, as the original)
is seeded by the same position inside a forked scope. So a run resumed from a snapshot continues
exactly as an uninterrupted one would, and two runs with one seed write the same bytes.

The CNN stages have their own loop, `ohlora_core.cnn.training.fit`, named apart: it is driven by a
validation metric every epoch, keeps a device-side loss sum, and is neither resumed nor snapshotted;
the two share `ohlora_core.early_stopping`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ohlora_core.io import CheckpointError, atomic_torch_save, load_checkpoint
from ohlora_core.progress import Progress
from ohlora_core.seeding import derive_seed, seeded

Z_DIM = 512


def group_of(name: str) -> str:
    """A parameter's group, as the original froze them: the first part of its name."""
    return name.split(".")[0]


def split_parameters(model: torch.nn.Module, groups: Sequence[str]) -> tuple[list[str], list[str]]:
    """(trainable names, frozen names) in `named_parameters` order; unknown groups are an error."""
    known = {group_of(n) for n, _ in model.named_parameters()}
    missing = sorted(set(groups) - known)
    if missing:
        raise ValueError(f"{type(model).__name__} has no parameter group(s) {missing}; it has {sorted(known)}")
    names = [n for n, _ in model.named_parameters()]
    return [n for n in names if group_of(n) in groups], [n for n in names if group_of(n) not in groups]


def freeze_all_but(model: torch.nn.Module, groups: Sequence[str]) -> list[torch.nn.Parameter]:
    """Only `groups` take gradients; returns their parameters (in `named_parameters` order)."""
    trainable, _ = split_parameters(model, groups)
    params = dict(model.named_parameters())
    for name, p in params.items():
        p.requires_grad_(name in trainable)
    return [params[n] for n in trainable]


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The CPU generator of one training step (z, style mixing, noise, ...): a function of its position."""
    return torch.Generator().manual_seed(derive_seed(seed, "train-step", epoch, step))


class Task(Protocol):
    """What one fine-tuning version plugs into `run_task`: its batches, its step, its end of epoch, its state."""

    name: str
    device: torch.device

    def batches(self, epoch: int) -> list: ...

    def step(self, batch, generator: torch.Generator, epoch: int, idx: int) -> dict:
        """Train on one batch; returns the log row's values (floats/ints)."""

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        """After each epoch (schedulers, tests, early stopping); True stops training."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TaskRun:
    log: list[dict]  # one row per step: epoch, idx, the task's values, step_seconds
    epochs_done: int
    resumed_from: tuple[int, int] | None  # (epoch, step) of the snapshot a resumed run started from


def _resume(task: Task, snapshot: Path, log: Callable[[str], None] | None) -> dict:
    state = load_checkpoint(snapshot)
    try:
        task.load_state_dict(state["task"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{snapshot}: not a {task.name} snapshot this code can resume ({exc!r}); it was "
            f"written by another version of ohlora. Delete it to train from the start."
        ) from exc
    if log:
        log(f"{task.name}: resuming from {snapshot} at epoch {int(state['epoch'])}, step {int(state['step'])}")
    return state


def _values(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def run_task(
    task: Task,
    *,
    epochs: int,
    seed: int,
    snapshot: str | Path | None = None,
    snapshot_every: int = 100,
    max_steps: int | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> TaskRun:
    """Run `task.step` over `task.batches(epoch)` (at most `max_steps` per epoch, for smoke runs) for
    `epochs` epochs or until `task.end_epoch` says stop; `on_epoch(epoch)` follows each end of epoch
    (per-epoch files). A snapshot (the task's state, position and log) is written atomically to
    `snapshot` every `snapshot_every` steps and after each epoch; if the file exists, training resumes
    from it.
    """
    rows: list[dict] = []
    start_epoch, start_step, resumed, stopped = 0, 0, None, False
    if snapshot is not None and Path(snapshot).is_file():
        state = _resume(task, Path(snapshot), log)
        rows, start_epoch, start_step = list(state["log"]), int(state["epoch"]), int(state["step"])
        stopped, resumed = bool(state.get("stopped", False)), (start_epoch, start_step)

    def save(epoch: int, step: int, stop: bool = False) -> None:
        if snapshot is not None:
            atomic_torch_save(
                snapshot, {"task": task.state_dict(), "epoch": epoch, "step": step, "log": rows, "stopped": stop}
            )

    def plan(epoch: int) -> list:
        batches = task.batches(epoch)
        return batches if max_steps is None else batches[:max_steps]

    progress = Progress(epochs * len(plan(start_epoch)), log, task.name, unit="steps", done=len(rows))
    epoch = start_epoch
    while epoch < epochs and not stopped:
        batches = plan(epoch)
        for idx in range(start_step if epoch == start_epoch else 0, len(batches)):
            t0 = time.perf_counter()
            with seeded(derive_seed(seed, "train-step-global", epoch, idx), task.device):
                values = task.step(batches[idx], step_generator(seed, epoch, idx), epoch, idx)
            rows.append({"epoch": epoch, "idx": idx, **values, "step_seconds": time.perf_counter() - t0})
            progress.tick(1, f"epoch {epoch} step {idx}: {_values(values)}")
            if snapshot_every and (idx + 1) % snapshot_every == 0 and idx + 1 < len(batches):
                save(epoch, idx + 1)
        with seeded(derive_seed(seed, "end-epoch-global", epoch), task.device):
            stopped = task.end_epoch(epoch, [r for r in rows if r["epoch"] == epoch])
            if on_epoch:
                on_epoch(epoch)
        epoch += 1
        save(epoch, 0, stopped)
    return TaskRun(rows, epoch, resumed)
