"""StyleGAN-FineTune-v2: v1's generator trained through the property-score CNN, as a `fit` task.

As the original codes it (stylegan_generator_v2_gen_model.py): `cnn(G(z, y, style_mixing_prob=0))`
against random N(0, 1) labels, `MSELoss(out[:, :6], y[:, :6])`, AdamW lr 1e-5 over G *and* the CNN
(its freeze call is commented out), cosine T_max 20 stepped once per step group of 50 steps; the
curriculum `z = r z_fixed + (1 - r) z_new` with `r = 0.9 ** group` moves from one fixed batch to fresh
ones; early stopping after 100 groups without a lower group-mean loss; the best group's generator is
the result. The original reports that it does not learn; it is kept runnable to show what it does.
An epoch of `fit` is one step group here.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ohlora_core.early_stopping import EarlyStopping, cpu_copy
from ohlora_core.seeding import derive_seed

from .loop import Z_DIM
from .variants import CnnLoopVariant

LOSS_NAMES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean")  # the original's log


class CnnLoopTask:
    """v2 as a `fit` task; `best.state` (the best step group's generator) is the result."""

    name = "v2"

    def __init__(self, G, property_cnn: nn.Module, variant: CnnLoopVariant, device: str | torch.device, seed: int):
        self.variant, self.device, self.seed = variant, torch.device(device), seed
        self.G, self.cnn = G.to(self.device).train(), property_cnn.to(self.device)
        self.cnn.train(not variant.cnn_eval)  # the original: train mode, dropout on
        if variant.freeze:  # the README's intent: only G's mapping network trains
            params = [p for n, p in self.G.named_parameters() if n.split(".")[0] == "mapping"]
            for n, p in self.G.named_parameters():
                p.requires_grad_(n.split(".")[0] == "mapping")
            self.cnn.requires_grad_(False)
        else:  # the original (freeze call commented out): everything
            params = [*self.G.parameters(), *self.cnn.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=variant.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=variant.cosine_t_max,
                                                                    eta_min=0)
        gen = torch.Generator().manual_seed(derive_seed(seed, "v2-fixed"))
        self.fixed_z = torch.randn(variant.batch_size, Z_DIM, generator=gen)
        self.fixed_y = torch.randn(variant.batch_size, variant.label_size, generator=gen)
        self.best = EarlyStopping(variant.patience)  # over step groups; its state is the best generator

    def batches(self, epoch: int) -> list[int]:
        return list(range(self.variant.step_group_size))

    def inputs(self, group: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The curriculum: a mix of the fixed batch and a fresh one, moving to fresh ones group by group."""
        v = self.variant
        new_z = torch.randn(v.batch_size, Z_DIM, generator=generator)
        new_y = torch.randn(v.batch_size, v.label_size, generator=generator)
        r = v.curriculum_base ** group
        return (r * self.fixed_z + (1.0 - r) * new_z).to(self.device), (r * self.fixed_y + (1.0 - r) * new_y).to(self.device)

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
            per = {f"{name}_loss": float(F.mse_loss(out[:, i:i + 1], y[:, i:i + 1])) for i, name in enumerate(LOSS_NAMES)}
        return {"loss": loss.item(), **per}

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        group_loss = float(np.mean([r["loss"] for r in rows]))
        if self.best.update(epoch, group_loss, lambda: cpu_copy(self.G.state_dict())):
            return True
        self.scheduler.step()
        return False

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "cnn": self.cnn.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), **self.best.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.cnn.load_state_dict(state["cnn"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best.load_state_dict(state)


def train_v2(variant: CnnLoopVariant, v1_generator_state: dict, property_cnn_state: dict, files, *, epochs: int,
             seed: int, device: str = "cpu", max_steps: int | None = None, samples_per_label: int = 4,
             log=None):
    """Run v2 into `files` (`artifacts.StyleganFinetuneV2`): the best group's generator (bare
    state_dict), the per-step log, a sample grid per step group (the original's 7 label rows)."""
    import pandas as pd

    from ohlora_core.cnn.models import PropertyScoreCNN
    from ohlora_core.io import (
        atomic_torch_save,
        atomic_write_csv,
        load_state_dict_strict,
    )
    from ohlora_core.pictures import image_grid, line_plot, save_png

    from .gan import sample_images
    from .loop import fit
    from .restructure import conditional_generator

    G = conditional_generator(v1_generator_state, variant, seed, source="stylegan_finetune_v1 generator")
    cnn = PropertyScoreCNN()
    load_state_dict_strict(cnn, property_cnn_state, "property_score_cnn checkpoint")
    task = CnnLoopTask(G, cnn, variant, device, seed)
    gen = torch.Generator().manual_seed(derive_seed(seed, "v2-samples"))
    rows = torch.tensor(SAMPLE_LABELS, dtype=torch.float32)
    z = torch.randn(samples_per_label, Z_DIM, generator=gen).repeat(len(rows), 1).to(task.device)
    y = rows.repeat_interleave(samples_per_label, dim=0).to(task.device)
    on_group = task.end_epoch

    def end_epoch(group: int, group_rows: list[dict]) -> bool:
        save_png(image_grid(sample_images(task.G, z, y), cols=samples_per_label, thumb=128), files.samples(group))
        return on_group(group, group_rows)

    task.end_epoch = end_epoch
    result = fit(task, epochs=epochs, seed=seed, snapshot=files.snapshot, max_steps=max_steps, log=log)
    table = pd.DataFrame(result.log)
    atomic_write_csv(files.train_log, table.round(4), index=True)
    atomic_torch_save(files.generator, task.best.state)
    save_png(line_plot({"loss": table["loss"]}, title="fine-tune v2 (MSE of the CNN's 6 outputs)"), files.loss_plot)
    files.snapshot.unlink(missing_ok=True)
    return task, result, table


# the original's test labels during v2 (test_create_output_images): 7 rows, background_std 0
SAMPLE_LABELS = ((1.2, 1.2, 1.2, -1.2, -1.2, 1.2, 0.0), (-1.2, 1.2, 1.2, -1.2, -1.2, 1.2, 0.0),
                 (-1.2, -1.2, 1.2, -1.2, -1.2, 1.2, 0.0), (-1.2, -1.2, -1.2, -1.2, -1.2, 1.2, 0.0),
                 (-1.2, -1.2, -1.2, 1.2, -1.2, 1.2, 0.0), (-1.2, -1.2, -1.2, 1.2, 1.2, 1.2, 0.0),
                 (-1.2, -1.2, -1.2, 1.2, 1.2, -1.2, 0.0))
