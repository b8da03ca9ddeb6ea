"""StyleGAN-FineTune-v2: v1's generator trained through the property-score CNN, as a `run_task` task.

As the original codes it (stylegan_generator_v2_gen_model.py): `cnn(G(z, y, style_mixing_prob=0))`
against random N(0, 1) labels, `MSELoss(out[:, :6], y[:, :6])`, AdamW lr 1e-5 over G *and* the CNN
(its freeze call is commented out), cosine T_max 20 stepped once per step group of 50 steps; the
curriculum `z = r z_fixed + (1 - r) z_new` with `r = 0.9 ** group` moves from one fixed batch to fresh
ones; early stopping after 100 groups without a lower group-mean loss; the best group's generator is
the result. The original reports that it does not learn; it is kept runnable to show what it does.
An epoch of `run_task` is one step group here.

Files (`artifacts.StyleganFinetuneV2`): the best group's generator (bare state_dict), the per-step log,
a sample grid per step group (the variant's label rows) and a loss plot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ohlora_core.cnn.models import PropertyScoreCNN
from ohlora_core.early_stopping import EarlyStopping, cpu_copy
from ohlora_core.io import atomic_torch_save, atomic_write_csv, load_state_dict_strict
from ohlora_core.pictures import line_plot, save_png
from ohlora_core.seeding import derive_seed

from .loop import Z_DIM, TaskRun, freeze_all_but
from .restructure import conditional_generator
from .samples import SampleGrid
from .variants import CnnLoopVariant

if TYPE_CHECKING:
    from ohlora_core.artifacts import StyleganFinetuneV2

    from .training import TrainInputs

LOSS_NAMES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean")  # the original's log


class CnnLoopTask:
    """v2 as a `run_task` task; `early_stopping.state` (the best step group's generator) is the result."""

    name = "v2"
    tests = None  # no per-group test (v3 has one)

    def __init__(
        self,
        G,
        property_cnn: nn.Module,
        variant: CnnLoopVariant,
        device: str | torch.device,
        seed: int,
        samples_per_label: int = 4,
        log: Callable[[str], None] | None = None,
    ):
        self.variant, self.device, self.seed, self.log = variant, torch.device(device), seed, log
        self.G, self.cnn = G.to(self.device).train(), property_cnn.to(self.device)
        self.cnn.train(not variant.cnn_eval)  # the original: train mode, dropout on
        if variant.freeze:  # the README's intent: only G's mapping network trains
            params = freeze_all_but(self.G, variant.g_trainable)
            self.cnn.requires_grad_(False)
        else:  # the original (freeze call commented out): everything
            params = [*self.G.parameters(), *self.cnn.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=variant.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=variant.cosine_t_max, eta_min=0
        )
        gen = torch.Generator().manual_seed(derive_seed(seed, "v2-fixed"))
        self.fixed_z = torch.randn(variant.batch_size, Z_DIM, generator=gen)
        self.fixed_y = torch.randn(variant.batch_size, variant.label_size, generator=gen)
        self.early_stopping = EarlyStopping(variant.patience)  # over step groups; its state: the best G
        self.grid = SampleGrid.fixed(
            variant.sample_labels,
            samples_per_label,
            torch.Generator().manual_seed(derive_seed(seed, "v2-samples")),
            self.device,
        )

    @classmethod
    def from_inputs(
        cls,
        variant: CnnLoopVariant,
        inputs: TrainInputs,
        *,
        seed: int,
        device: str | torch.device,
        samples_per_label: int,
        log: Callable[[str], None] | None,
    ) -> CnnLoopTask:
        G = conditional_generator(inputs.generator, variant, seed, source="stylegan_finetune_v1 generator")
        cnn = PropertyScoreCNN()
        load_state_dict_strict(cnn, inputs.property_cnn, "property_score_cnn checkpoint")
        return cls(G, cnn, variant, device, seed, samples_per_label, log)

    def batches(self, epoch: int) -> list[int]:
        return list(range(self.variant.step_group_size))

    def inputs(self, group: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The curriculum: a mix of the fixed batch and a fresh one, moving to fresh ones group by group."""
        v = self.variant
        new_z = torch.randn(v.batch_size, Z_DIM, generator=generator)
        new_y = torch.randn(v.batch_size, v.label_size, generator=generator)
        r = v.curriculum_base**group
        z, y = r * self.fixed_z + (1.0 - r) * new_z, r * self.fixed_y + (1.0 - r) * new_y
        return z.to(self.device), y.to(self.device)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.cnn(self.G(z, y, style_mixing_prob=0.0)["image"]).to(torch.float32)
        k = self.variant.loss_labels
        return F.mse_loss(out[:, :k], y[:, :k]), out

    def train_on(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on latents z and labels y (the original's order: zero_grad first)."""
        self.optimizer.zero_grad()
        loss, out = self.loss(z, y)
        loss.backward()
        self.optimizer.step()
        return loss, out

    def step(self, batch: int, generator: torch.Generator, epoch: int, idx: int) -> dict:
        z, y = self.inputs(epoch, generator)
        loss, out = self.train_on(z, y)
        with torch.no_grad():
            per = {
                f"{name}_loss": float(F.mse_loss(out[:, i : i + 1], y[:, i : i + 1]))
                for i, name in enumerate(LOSS_NAMES)
            }
        return {"loss": loss.item(), **per}

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        group_loss = float(np.mean([r["loss"] for r in rows]))
        if self.early_stopping.update(epoch, group_loss, lambda: cpu_copy(self.G.state_dict())):
            return True
        self.scheduler.step()
        return False

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "cnn": self.cnn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **self.early_stopping.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.cnn.load_state_dict(state["cnn"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.early_stopping.load_state_dict(state)

    # ---- the files `finetune.train` writes

    @property
    def best(self) -> tuple[int, float] | None:
        """(step group, group-mean loss) of the generator kept; None before any group ended."""
        stop = self.early_stopping
        return None if stop.loss is None else (stop.epoch, stop.loss)

    def write_epoch(self, files: StyleganFinetuneV2, group: int) -> None:
        self.grid.write(self.G, files.samples(group), self.log, f"v2 step group {group} samples")

    def write_final(self, files: StyleganFinetuneV2, run: TaskRun) -> tuple[pd.DataFrame, list[Path]]:
        log = pd.DataFrame(run.log)
        table = log.round(4)
        atomic_write_csv(files.train_log, table, index=True)
        atomic_torch_save(files.generator, self.early_stopping.state)
        save_png(line_plot({"loss": log["loss"]}, title="fine-tune v2 (MSE of the CNN's 6 outputs)"), files.loss_plot)
        return table, [
            files.generator,
            files.train_log,
            files.loss_plot,
            *(files.samples(group) for group in range(run.epochs_done)),
        ]

    @staticmethod
    def summary(table: pd.DataFrame) -> dict:
        group_loss = table.groupby("epoch")["loss"].mean()
        return {
            "steps": len(table),
            "step_groups": int(group_loss.size),
            "first_group_loss": float(group_loss.iloc[0]),
            "lowest_group_loss": float(group_loss.min()),
        }
