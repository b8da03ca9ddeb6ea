"""Pictures a fine-tuning run draws while it trains: the generator's images for fixed (z, label) pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ohlora_core.pictures import image_grid, save_png
from ohlora_core.progress import Progress
from ohlora_core.stylegan import postprocess

from .loop import Z_DIM

EVAL_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)


def sample_images(
    G, z: Tensor, labels: Tensor, batch: int = 8, log: Callable[[str], None] | None = None, name: str = "samples"
) -> np.ndarray:
    """uint8 [N, H, W, 3] images of G for (z, labels) in eval mode (no mixing, stored noise); G's
    train/eval mode is restored afterwards. A full-size G takes seconds per image on a CPU, hence progress."""
    was_training = G.training
    G.eval()
    progress = Progress(len(z), log, name, unit="images")
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(z), batch):
                out.append(
                    postprocess(G(z[i : i + batch], labels[i : i + batch], **EVAL_KWARGS)["image"]).cpu().numpy()
                )
                progress.tick(len(out[-1]))
    finally:
        G.train(was_training)
    return np.concatenate(out)


@dataclass
class SampleGrid:
    """Images for fixed (z, label) pairs, one grid row of `cols` per label row."""

    z: Tensor
    labels: Tensor
    cols: int
    thumb: int = 128

    @classmethod
    def fixed(
        cls, label_rows: Sequence[Sequence[float]], per_label: int, generator: torch.Generator, device: torch.device
    ) -> SampleGrid:
        """`per_label` z's (drawn from `generator`), every one under every label row."""
        rows = torch.tensor(label_rows, dtype=torch.float32)
        z = torch.randn(per_label, Z_DIM, generator=generator)
        return cls(z.repeat(len(rows), 1).to(device), rows.repeat_interleave(per_label, dim=0).to(device), per_label)

    def write(self, G, path: Path, log: Callable[[str], None] | None = None, name: str = "samples") -> None:
        save_png(
            image_grid(sample_images(G, self.z, self.labels, log=log, name=name), cols=self.cols, thumb=self.thumb),
            path,
        )
