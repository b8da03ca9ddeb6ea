"""GAN fine-tuning (v1, v4): the original's train step, and the task `finetune.train` runs for it.

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

Files (`artifacts.StyleganFinetuneV1` / `V4`): bare `state_dict`s of G and D and the training log (the
original's), a sample grid per epoch, a real/fake grid and a loss plot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from ohlora_core.cnn.data import as_image_bank, to_signed_float
from ohlora_core.io import atomic_torch_save, atomic_write_csv
from ohlora_core.pictures import image_grid, line_plot, save_png
from ohlora_core.seeding import derive_seed

from .loop import Z_DIM, TaskRun, split_parameters
from .loss import GanLoss
from .restructure import conditional_discriminator, conditional_generator
from .samples import SampleGrid, sample_images
from .variants import GanVariant

if TYPE_CHECKING:
    from ohlora_core.artifacts import StyleganFinetuneV1

    from .training import TrainInputs

LOG_COLUMNS = [
    "epoch",
    "idx",
    "d_loss",
    "g_loss",
    "g_train_count",
    "real_scores_mean",
    "fake_scores_mean",
    "real_fake_auroc",
]  # the original's train_log.csv


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
        self.loss = GanLoss(
            G,
            D,
            r1_gamma=variant.r1_gamma,
            matching_aware=variant.matching_aware,
            g_kwargs=dict(
                w_moving_decay=variant.w_moving_decay,
                style_mixing_prob=variant.style_mixing_prob,
                trunc_psi=1.0,
                trunc_layers=0,
                randomize_noise=variant.randomize_noise,
            ),
        )

    @staticmethod
    def _train(params: list[Tensor], others: list[Tensor]) -> None:
        for p in others:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)

    def step(
        self, reals: Tensor, labels: Tensor, latents: Callable[[], Tensor], generator: torch.Generator | None = None
    ) -> StepResult:
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
        return StepResult(
            d_loss,
            g_losses[-1],
            len(g_losses),
            float(real.mean()),
            float(fake.mean()),
            float(roc_auc_score(truth, scores)),
            float(d.r1),
            float(d.adversarial),
            float(d.mismatch),
            g_losses,
        )

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "g_opt": self.g_opt.state_dict(),
            "d_opt": self.d_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])


class GanTask:
    """GAN fine-tuning (v1, v4) as a `run_task` task: shuffled batches of (image, label)."""

    tests = None  # no per-epoch test (v3 has one)

    def __init__(
        self,
        trainer: GanTrainer,
        images: Tensor,
        labels: np.ndarray,
        seed: int,
        samples_per_label: int = 4,
        log: Callable[[str], None] | None = None,
    ):
        v, device = trainer.variant, trainer.device
        self.trainer, self.name, self.seed, self.device, self.log = trainer, v.name, seed, device, log
        self.bank = as_image_bank(images, device)
        self.y = torch.as_tensor(np.asarray(labels, dtype=np.float32), device=device)
        if self.y.shape != (self.bank.shape[0], v.label_size):
            raise ValueError(
                f"{v.name}: expected labels [{self.bank.shape[0]}, {v.label_size}], got {tuple(self.y.shape)}"
            )
        if not torch.isfinite(self.y).all():
            raise ValueError(f"{v.name}: labels contain NaN/inf; drop those images first")
        # the sample grid's z's, then the real/fake grid's, come from this one seeded generator
        self.sample_generator = torch.Generator().manual_seed(derive_seed(seed, "gan-samples"))
        self.grid = SampleGrid.fixed(v.sample_labels, samples_per_label, self.sample_generator, device)

    @classmethod
    def from_inputs(
        cls,
        variant: GanVariant,
        inputs: TrainInputs,
        *,
        seed: int,
        device: str | torch.device,
        samples_per_label: int,
        log: Callable[[str], None] | None,
    ) -> GanTask:
        """Restructure the starting G / D the original's way (new layers seeded) and wrap them."""
        G = conditional_generator(inputs.generator, variant, seed)
        D = conditional_discriminator(inputs.discriminator, variant, seed)
        return cls(GanTrainer(G, D, variant, device), inputs.images, inputs.labels, seed, samples_per_label, log)

    def batches(self, epoch: int) -> list[Tensor]:
        """Shuffled per epoch, the last batch smaller (the original's DataLoader, shuffle=True)."""
        n, b = self.bank.shape[0], self.trainer.variant.batch_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, "gan-order", epoch)))
        return [order[i : i + b] for i in range(0, n, b)]

    def step(self, batch: Tensor, generator: torch.Generator, epoch: int, idx: int) -> dict:
        device = self.trainer.device
        batch = batch.to(device)
        r = self.trainer.step(
            to_signed_float(self.bank[batch]),
            self.y[batch],
            lambda: torch.randn(len(batch), Z_DIM, generator=generator).to(device),
            generator,
        )
        return {
            "d_loss": r.d_loss,
            "g_loss": r.g_loss,
            "g_train_count": r.g_train_count,
            "real_scores_mean": r.real_scores_mean,
            "fake_scores_mean": r.fake_scores_mean,
            "real_fake_auroc": r.real_fake_auroc,
            "r1_penalty": r.r1,
        }

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        return False  # no early stopping: the original ran a fixed number of epochs

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)

    # ---- the files `finetune.train` writes

    @property
    def best(self) -> None:
        return None  # v1 / v4 keep the last generator

    def write_epoch(self, files: StyleganFinetuneV1, epoch: int) -> None:
        self.grid.write(self.trainer.G, files.samples(epoch), self.log, f"{self.name} epoch {epoch} samples")

    def write_final(self, files: StyleganFinetuneV1, run: TaskRun) -> tuple[pd.DataFrame, list[Path]]:
        """The final files; returns the log as written and every output (per-epoch ones included, also
        those an attempt before a resume wrote)."""
        log = pd.DataFrame(run.log)
        log = log[LOG_COLUMNS + [c for c in log.columns if c not in LOG_COLUMNS]]
        table = log.round(4)
        atomic_write_csv(files.train_log, table, index=True)  # the original's layout (pandas index)
        atomic_torch_save(files.generator, self.trainer.G.state_dict())
        atomic_torch_save(files.discriminator, self.trainer.D.state_dict())
        self._real_fake(files.real_fake)
        save_png(
            line_plot(
                {"d_loss": log["d_loss"], "g_loss": log["g_loss"], "AUROC": log["real_fake_auroc"]},
                title=f"fine-tune {self.name}",
            ),
            files.loss_plot,
        )  # unrounded values
        return table, [
            files.generator,
            files.discriminator,
            files.train_log,
            files.real_fake,
            files.loss_plot,
            *(files.samples(epoch) for epoch in range(run.epochs_done)),
        ]

    def _real_fake(self, path: Path) -> None:
        """The first images next to fakes made for their labels."""
        n_show = min(8, self.bank.shape[0])
        reals = self.bank[:n_show].cpu().permute(0, 2, 3, 1).numpy()
        z = torch.randn(n_show, Z_DIM, generator=self.sample_generator).to(self.device)
        fakes = sample_images(self.trainer.G, z, self.y[:n_show], log=self.log, name=f"{self.name} real/fake grid")
        save_png(image_grid([*reals, *fakes], cols=n_show, thumb=128), path)

    @staticmethod
    def summary(table: pd.DataFrame) -> dict:
        last = table.iloc[-1]
        return {
            "steps": len(table),
            "final_d_loss": float(last["d_loss"]),
            "final_g_loss": float(last["g_loss"]),
            "final_real_fake_auroc": float(last["real_fake_auroc"]),
            "mean_g_updates_per_step": float(table["g_train_count"].mean()),
            "seconds_per_step": float(table["step_seconds"].mean()),
        }
