"""A whole GAN fine-tuning run (v1, v4) into its artifact folder.

Restructure the starting G/D, train with `loop.fit` (resuming from the folder's snapshot if a
previous attempt died), then write the original's files — bare `state_dict`s of G and D and the
training log — plus a sample grid per epoch, a real/fake grid and a loss plot. The snapshot is
removed once the final files exist.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ohlora_core.artifacts import StyleganFinetuneV1
from ohlora_core.io import atomic_torch_save, atomic_write_csv
from ohlora_core.pictures import image_grid, line_plot, save_png
from ohlora_core.seeding import derive_seed
from ohlora_core.stylegan import postprocess

from .loop import LOG_COLUMNS, Z_DIM, FitResult, GanTask, GanTrainer, fit
from .restructure import conditional_discriminator, conditional_generator
from .variants import GanVariant

EVAL_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)


@dataclass
class GanRun:
    fit: FitResult
    log: pd.DataFrame
    trainer: GanTrainer


def sample_images(G, z: torch.Tensor, labels: torch.Tensor, batch: int = 8) -> np.ndarray:
    """uint8 [N, H, W, 3] images of G for (z, labels) in eval mode (no mixing, stored noise); G's
    train/eval mode is restored afterwards."""
    was_training = G.training
    G.eval()
    try:
        with torch.no_grad():
            out = [postprocess(G(z[i:i + batch], labels[i:i + batch], **EVAL_KWARGS)["image"]).cpu().numpy()
                   for i in range(0, len(z), batch)]
    finally:
        G.train(was_training)
    return np.concatenate(out)


def train_gan(variant: GanVariant, generator_state: Mapping, discriminator_state: Mapping, images: torch.Tensor,
              labels: np.ndarray, files: StyleganFinetuneV1, *, epochs: int, seed: int, device: str = "cpu",
              max_steps: int | None = None, snapshot_every: int = 100, samples_per_label: int = 4,
              log: Callable[[str], None] | None = None) -> GanRun:
    """Fine-tune `variant` from the given G/D state_dicts on (uint8 images, labels); write into `files`.
    The real/fake grid shows the first images next to fakes made for their labels."""
    G = conditional_generator(generator_state, variant, seed)
    D = conditional_discriminator(discriminator_state, variant, seed)
    trainer = GanTrainer(G, D, variant, device)
    gen = torch.Generator().manual_seed(derive_seed(seed, "gan-samples"))
    rows = torch.tensor(variant.sample_labels, dtype=torch.float32)
    z_fixed = torch.randn(samples_per_label, Z_DIM, generator=gen)
    # every sample z under every label row: one grid row per label row
    z = z_fixed.repeat(len(rows), 1).to(trainer.device)
    y = rows.repeat_interleave(samples_per_label, dim=0).to(trainer.device)

    def on_epoch(epoch: int) -> None:
        save_png(image_grid(sample_images(trainer.G, z, y), cols=samples_per_label, thumb=128), files.samples(epoch))

    result = fit(GanTask(trainer, images, labels, seed, on_epoch), epochs=epochs, seed=seed, snapshot=files.snapshot,
                 snapshot_every=snapshot_every, max_steps=max_steps, log=log)
    table = pd.DataFrame(result.log)
    table = table[LOG_COLUMNS + [c for c in table.columns if c not in LOG_COLUMNS]]
    atomic_write_csv(files.train_log, table.round(4), index=True)  # the original's layout (pandas index)
    atomic_torch_save(files.generator, trainer.G.state_dict())
    atomic_torch_save(files.discriminator, trainer.D.state_dict())

    n_show = min(8, len(images))
    reals = images[:n_show].permute(0, 2, 3, 1).numpy()
    fakes = sample_images(trainer.G, torch.randn(n_show, Z_DIM, generator=gen).to(trainer.device),
                          torch.as_tensor(np.asarray(labels[:n_show], np.float32), device=trainer.device))
    save_png(image_grid([*reals, *fakes], cols=n_show, thumb=128), files.real_fake)
    save_png(line_plot({"d_loss": table["d_loss"], "g_loss": table["g_loss"], "AUROC": table["real_fake_auroc"]},
                       title=f"fine-tune {variant.name}"), files.loss_plot)
    files.snapshot.unlink(missing_ok=True)
    return GanRun(result, table, trainer)
