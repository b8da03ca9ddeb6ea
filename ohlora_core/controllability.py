"""One controllability report for every way of asking for properties (fine-tuned v1..v4, w directions).

Each method generates the original v3 test for the same seeded z's: per z, 50 images over mouth x eyes x
pose (`finetune.protocol`), scored by the property-score CNN in eval mode. Reported per method:

* per property (eyes, mouth, pose): Pearson correlation and MAE between intended and measured over
  all z's and combinations, and the share of z's that pass the original's thresholds;
* leakage: for each requested property p and each other CNN output q, the mean over z's of
  |corr(intended p, measured q)| — how much asking for p moves q (0 = not at all);
* seconds per image (generation + scoring).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ohlora_core.finetune import protocol
from ohlora_core.progress import Progress
from ohlora_core.scores.common import SCORE_NAMES
from ohlora_core.seeding import derive_seed
from ohlora_core.stylegan import synthesize_w

# (z [N, 512] float32 tensor, intended (eyes, mouth, pose) [N, 3] float32 array) -> images [N, 3, H, W] in [-1, 1]
Method = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


@dataclass
class MethodReport:
    name: str
    intended: np.ndarray  # [Z, 50, 3] (eyes, mouth, pose)
    measured: np.ndarray  # [Z, 50, 7] CNN outputs
    per_z: list[protocol.ZResult]
    seconds_per_image: float

    def summary(self) -> dict:
        out = {"method": self.name, "z": len(self.per_z), "pass_share": float(np.mean([r.passed for r in self.per_z]))}
        for k, p in enumerate(protocol.PROPERTIES):
            want = self.intended[:, :, k].ravel()
            got = self.measured[:, :, protocol.INDEX[p]].ravel()
            out[f"{p}_corr"] = pearson(want, got)
            out[f"{p}_mae"] = float(np.mean(np.abs(want - got)))
        out["seconds_per_image"] = self.seconds_per_image
        return out

    def leakage(self) -> dict[str, dict[str, float]]:
        """{requested p: {other output q: mean_z |corr(intended p, measured q)|}}."""
        out = {}
        for k, p in enumerate(protocol.PROPERTIES):
            out[p] = {
                q: _mean_defined(
                    [abs(pearson(self.intended[z, :, k], self.measured[z, :, j])) for z in range(len(self.per_z))]
                )
                for j, q in enumerate(SCORE_NAMES)
                if q != p
            }
        return out


def _mean_defined(values) -> float:
    """The mean of the values that are not NaN; NaN (without numpy's empty-slice warning) if none is."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # constant (exactly; std() of 50 x 0.3 is 5e-17, not 0): undefined
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def report_latents(n_z: int, seed: int) -> torch.Tensor:
    """The z's every method is tested on (seeded N(0, I)): [n_z, 512]."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "controllability-z"))
    return torch.randn(n_z, 512, generator=gen)


def evaluate(
    name: str,
    method: Method,
    property_cnn,
    zs: torch.Tensor,
    device,
    batch_size: int = 10,
    stride: int = 1,
    log: Callable[[str], None] | None = None,
) -> MethodReport:
    """Run the test of every z through `method` and the CNN (eval mode). `stride` > 1 takes every
    stride-th combination only (smoke runs; the pass rule then speaks of that subset). Progress goes to
    `log` after every batch of `batch_size` images (a full-size generator takes about a second per image
    on a CPU, so a z of 50 combinations in one batch would be a minute without a line)."""
    combos = protocol.label_combinations().astype(np.float32)[::stride]
    property_cnn = property_cnn.to(device).eval()
    if log:
        subset = f" (every {stride}th of {len(protocol.label_combinations())})" if stride > 1 else ""
        log(
            f"controllability {name}: {len(zs)} z x {len(combos)} combinations{subset} = {len(zs) * len(combos)} images"
        )
    progress = Progress(len(zs) * len(combos), log, f"controllability {name}", unit="images")
    measured, per_z = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for z in zs:
            m = _measure(method, property_cnn, z, combos, device, batch_size, progress)
            measured.append(m)
            per_z.append(protocol.score_z(m, combos))
    seconds = (time.perf_counter() - start) / (len(zs) * len(combos))
    return MethodReport(name, np.repeat(combos[None], len(zs), axis=0), np.stack(measured), per_z, seconds)


def _measure(
    method: Method, property_cnn, z: torch.Tensor, combos: np.ndarray, device, batch_size: int, progress: Progress
) -> np.ndarray:
    """The CNN's outputs for one z under every combination: [len(combos), 7]."""
    outs = []
    for i in range(0, len(combos), batch_size):
        rows = combos[i : i + batch_size]
        images = method(z.expand(len(rows), -1).to(device), rows)
        outs.append(property_cnn(images).float().cpu().numpy())
        progress.tick(len(rows))
    return np.concatenate(outs)


def finetuned_method(G, label_names: tuple[str, ...]) -> Method:
    """A label-conditioned generator: the combination as its label row (other labels 0)."""
    G = G.eval()
    index = {p: label_names.index(p) for p in protocol.PROPERTIES}

    def run(z: torch.Tensor, intended: np.ndarray) -> torch.Tensor:
        labels = np.zeros((len(intended), len(label_names)), np.float32)
        for k, p in enumerate(protocol.PROPERTIES):
            labels[:, index[p]] = intended[:, k]
        return G(z, torch.from_numpy(labels).to(z.device), trunc_psi=1.0, trunc_layers=0, randomize_noise=False)[
            "image"
        ]

    return run


def directions_method(G, directions, conditional: bool = True) -> Method:
    """The pretrained generator with w moved along the fitted directions to the intended values."""
    G = G.eval()

    def run(z: torch.Tensor, intended: np.ndarray) -> torch.Tensor:
        w = G.mapping(z)["w"].double().cpu().numpy()
        moved = np.concatenate(
            [
                directions.move(w[i : i + 1], dict(zip(protocol.PROPERTIES, intended[i])), conditional)
                for i in range(len(w))
            ]
        )
        return synthesize_w(G, torch.from_numpy(moved.astype(np.float32)).to(z.device))

    return run
