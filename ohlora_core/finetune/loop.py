"""One training loop for the GAN fine-tuning variants (v1, v4): the original's train step, made
resumable and reproducible.

Per batch (`GanTrainer.step`, the original's `fine_tuning.train_step`):
1. D phase: only D's trainable groups take gradients; D takes one AdamW step.
2. G phase: only G's trainable groups take gradients; G steps on a fresh z, and steps again while
   `g_loss >= g_repeat_ratio * d_loss` (d_loss including R1; g_loss measured before its own update),
   at most `g_repeat_max` times.
G and D stay in train mode as the original left them (G: w_avg EMA, style mixing, random noise).

The original built AdamW over all parameters and then froze most of them; frozen parameters never
get a gradient, and AdamW skips those entirely (no weight decay either), so optimisers over the
trainable parameters alone make identical updates. Its cosine schedulers were never stepped: the
learning rates are constant here.

`fit` is the one loop of every version (v1..v4): a version is a `Task` (its batches, its step, its
end of epoch, its state); `fit` runs the epochs, logs, writes snapshots and resumes. Randomness
(batch order, z, style mixing, noise, ...) is drawn from generators seeded by (seed, epoch, step),
never from global state, so a run resumed from a snapshot continues exactly as an uninterrupted
one would.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from ohlora_core.cnn.data import as_image_bank, to_signed_float
from ohlora_core.seeding import derive_seed
from ohlora_core.io import CheckpointError, atomic_torch_save, load_checkpoint
from ohlora_core.progress import Progress

from .loss import GanLoss
from .variants import GanVariant

Z_DIM = 512
LOG_COLUMNS = ["epoch", "idx", "d_loss", "g_loss", "g_train_count", "real_scores_mean", "fake_scores_mean",
               "real_fake_auroc"]  # the original's train_log.csv


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


@dataclass
class StepResult:
    d_loss: float
    g_loss: float
    g_train_count: int
    real_scores_mean: float
    fake_scores_mean: float
    real_fake_auroc: float
    r1: float
    d_adversarial: float
    mismatch: float
    g_losses: list[float] = field(default_factory=list)


class GanTrainer:
    """G, D, their optimisers and the loss of one fine-tuning variant."""

    def __init__(self, G, D, variant: GanVariant, device: str | torch.device = "cpu"):
        self.variant, self.device = variant, torch.device(device)
        self.G, self.D = G.to(self.device).train(), D.to(self.device).train()
        self.g_trainable, self.g_frozen = split_parameters(G, variant.g_trainable)
        self.d_trainable, self.d_frozen = split_parameters(D, variant.d_trainable)
        g_params, d_params = dict(G.named_parameters()), dict(D.named_parameters())
        for name in self.g_frozen:
            g_params[name].requires_grad_(False)
        for name in self.d_frozen:
            d_params[name].requires_grad_(False)
        self._g = [g_params[n] for n in self.g_trainable]
        self._d = [d_params[n] for n in self.d_trainable]
        self.g_opt = torch.optim.AdamW(self._g, lr=variant.g_lr)
        self.d_opt = torch.optim.AdamW(self._d, lr=variant.d_lr)
        self.loss = GanLoss(G, D, r1_gamma=variant.r1_gamma, matching_aware=variant.matching_aware,
                            g_kwargs=dict(w_moving_decay=variant.w_moving_decay,
                                          style_mixing_prob=variant.style_mixing_prob, trunc_psi=1.0,
                                          trunc_layers=0, randomize_noise=variant.randomize_noise))

    @staticmethod
    def _train(params: list[Tensor], others: list[Tensor]) -> None:
        for p in others:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)

    def step(self, reals: Tensor, labels: Tensor, latents: Callable[[], Tensor],
             generator: torch.Generator | None = None) -> StepResult:
        """One D update, then 1..g_repeat_max G updates; `latents()` gives each phase's z [N, 512]."""
        v = self.variant
        self._train(self._d, self._g)
        d = self.loss.discriminator_phase(reals, labels, latents(), generator)
        self.d_opt.zero_grad(set_to_none=True)
        d.loss.backward()
        self.d_opt.step()
        d_loss = float(d.loss.detach())

        self._train(self._g, self._d)
        g_losses: list[float] = []
        while len(g_losses) < v.g_repeat_max:
            g_loss = self.loss.generator_phase(labels, latents(), generator)
            self.g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_opt.step()
            g_losses.append(float(g_loss.detach()))
            if g_losses[-1] < v.g_repeat_ratio * d_loss:
                break

        real, fake = d.real_scores.flatten().cpu().numpy(), d.fake_scores.flatten().cpu().numpy()
        scores = np.concatenate([real, fake])
        truth = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
        return StepResult(d_loss, g_losses[-1], len(g_losses), float(real.mean()), float(fake.mean()),
                          float(roc_auc_score(truth, scores)), float(d.r1), float(d.adversarial),
                          float(d.mismatch), g_losses)

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "g_opt": self.g_opt.state_dict(),
                "d_opt": self.d_opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The CPU generator of one training step (z, style mixing, noise, ...): a function of its position."""
    return torch.Generator().manual_seed(derive_seed(seed, "train-step", epoch, step))


class Task(Protocol):
    """What one fine-tuning version plugs into `fit`: its batches, its step, its end of epoch, its state."""

    name: str

    def batches(self, epoch: int) -> list: ...

    def step(self, batch, generator: torch.Generator, epoch: int, idx: int) -> dict:
        """Train on one batch; returns the log row's values (floats/ints)."""

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        """After each epoch (schedulers, tests, samples); True stops training (early stopping)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class FitResult:
    log: list[dict]          # one row per step: epoch, idx, the task's values, step_seconds
    epochs_done: int
    resumed_from: tuple[int, int] | None  # (epoch, step) of the snapshot a resumed run started from


def fit(task: Task, *, epochs: int, seed: int, snapshot: str | Path | None = None, snapshot_every: int = 100,
        max_steps: int | None = None, log: Callable[[str], None] | None = None) -> FitResult:
    """The one training loop of every fine-tuning version.

    Runs `task.step` over `task.batches(epoch)` (at most `max_steps` per epoch, for smoke runs) for
    `epochs` epochs or until `task.end_epoch` says stop. A snapshot (the task's state, position and
    log) is written atomically to `snapshot` every `snapshot_every` steps and after each epoch; if the
    file exists, training resumes from it. Each step's randomness comes from `step_generator(seed,
    epoch, idx)`, so a resumed run continues exactly as an uninterrupted one.
    """
    rows: list[dict] = []
    start_epoch, start_step, resumed, stopped = 0, 0, None, False
    if snapshot is not None and Path(snapshot).is_file():
        state = load_checkpoint(snapshot)
        try:
            task.load_state_dict(state["task"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{snapshot}: not a {task.name} snapshot this code can resume ({exc!r}); it was "
                                  f"written by another version of ohlora. Delete it to train from the start.") from exc
        rows, start_epoch, start_step = list(state["log"]), int(state["epoch"]), int(state["step"])
        stopped, resumed = bool(state.get("stopped", False)), (start_epoch, start_step)
        if log:
            log(f"{task.name}: resuming from {snapshot} at epoch {start_epoch}, step {start_step}")

    def save(epoch: int, step: int, stop: bool = False) -> None:
        if snapshot is not None:
            atomic_torch_save(snapshot, {"task": task.state_dict(), "epoch": epoch, "step": step, "log": rows,
                                         "stopped": stop})

    def plan(epoch: int) -> list:
        batches = task.batches(epoch)
        return batches if max_steps is None else batches[:max_steps]

    progress = Progress(epochs * len(plan(start_epoch)), log, task.name, unit="steps", done=len(rows))
    epoch = start_epoch
    while epoch < epochs and not stopped:
        batches = plan(epoch)
        for idx in range(start_step if epoch == start_epoch else 0, len(batches)):
            t0 = time.perf_counter()
            values = task.step(batches[idx], step_generator(seed, epoch, idx), epoch, idx)
            rows.append({"epoch": epoch, "idx": idx, **values, "step_seconds": time.perf_counter() - t0})
            progress.tick(1, f"epoch {epoch} step {idx}: " + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))
            if snapshot_every and (idx + 1) % snapshot_every == 0 and idx + 1 < len(batches):
                save(epoch, idx + 1)
        stopped = task.end_epoch(epoch, [r for r in rows if r["epoch"] == epoch])
        epoch += 1
        save(epoch, 0, stopped)
    return FitResult(rows, epoch, resumed)


class GanTask:
    """GAN fine-tuning (v1, v4) as a `fit` task: shuffled batches of (image, label)."""

    def __init__(self, trainer: GanTrainer, images: Tensor, labels: np.ndarray, seed: int,
                 on_epoch: Callable[[int], None] | None = None):
        v, device = trainer.variant, trainer.device
        self.trainer, self.name, self.seed, self.on_epoch = trainer, v.name, seed, on_epoch
        self.bank = as_image_bank(images, device)
        self.y = torch.as_tensor(np.asarray(labels, dtype=np.float32), device=device)
        if self.y.shape != (self.bank.shape[0], v.label_size):
            raise ValueError(f"{v.name}: expected labels [{self.bank.shape[0]}, {v.label_size}], got {tuple(self.y.shape)}")
        if not torch.isfinite(self.y).all():
            raise ValueError(f"{v.name}: labels contain NaN/inf; drop those images first")

    def batches(self, epoch: int) -> list[Tensor]:
        """Shuffled per epoch, the last batch smaller (the original's DataLoader, shuffle=True)."""
        n, b = self.bank.shape[0], self.trainer.variant.batch_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, "gan-order", epoch)))
        return [order[i:i + b] for i in range(0, n, b)]

    def step(self, batch: Tensor, generator: torch.Generator, epoch: int, idx: int) -> dict:
        device = self.trainer.device
        batch = batch.to(device)
        r = self.trainer.step(to_signed_float(self.bank[batch]), self.y[batch],
                              lambda: torch.randn(len(batch), Z_DIM, generator=generator).to(device), generator)
        return {"d_loss": r.d_loss, "g_loss": r.g_loss, "g_train_count": r.g_train_count,
                "real_scores_mean": r.real_scores_mean, "fake_scores_mean": r.fake_scores_mean,
                "real_fake_auroc": r.real_fake_auroc, "r1_penalty": r.r1}

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        if self.on_epoch:
            self.on_epoch(epoch)
        return False

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)
