"""The fine-tuning GAN loss, in phases (the split of stylegan2-ada-pytorch's `training/loss.py`).

As the original codes it (genforce's logistic GAN loss, modified in stylegan_modified/fine_tuning.py):

* D phase: fakes = G(z, labels of the real batch); `d = mean softplus(D(fake, y)) + mean softplus(-D(real, y))`,
  plus R1 on the reals: `gamma / 2 * mean_i ||d sum(D(real)) / d real_i||^2` (gamma 10).
  Reals and fakes go through D in separate calls, so minibatch-std groups never mix them.
* G phase: `mean softplus(-D(G(z, y), y))` with a fresh z.

The original's design flaw: fakes reuse the real batch's labels and the label only enters D's last
linear layer, so the label term shifts real and fake scores alike and D can never punish an image
that does not match its label. `matching_aware=True` adds the fix of matching-aware discriminators
(reals shown with shuffled labels count as fake): `+ mean softplus(D(real, y[perm]))`. Off by default.

The D phase computes the fakes without a graph (G is frozen then; the original built one anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class DPhase:
    loss: Tensor  # what D minimises (adversarial + R1 [+ mismatch])
    adversarial: Tensor
    r1: Tensor  # the penalty before the gamma / 2 factor
    mismatch: Tensor  # the matching-aware term (0 when off)
    real_scores: Tensor  # detached [N, 1]
    fake_scores: Tensor


def r1_penalty(images: Tensor, scores: Tensor) -> Tensor:
    """mean over the batch of the squared norm of d sum(scores) / d image (graph kept for backward)."""
    (grad,) = torch.autograd.grad(outputs=scores.sum(), inputs=images, create_graph=True)
    return grad.square().flatten(1).sum(dim=1).mean()


class GanLoss:
    """Loss phases for a conditional G and D; `g_kwargs` are G's training forward arguments."""

    def __init__(self, G, D, *, r1_gamma: float = 10.0, matching_aware: bool = False, g_kwargs: dict | None = None):
        self.G, self.D = G, D
        self.r1_gamma, self.matching_aware = r1_gamma, matching_aware
        self.g_kwargs = dict(g_kwargs or {})

    def fakes(self, z: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.G(z, labels, generator=generator, **self.g_kwargs)["image"]

    def discriminator_phase(
        self, reals: Tensor, labels: Tensor, z: Tensor, generator: torch.Generator | None = None
    ) -> DPhase:
        with torch.no_grad():
            fakes = self.fakes(z, labels, generator)
        reals = reals.detach().requires_grad_(True)
        real_scores = self.D(reals, labels)
        fake_scores = self.D(fakes, labels)
        adversarial = F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()
        r1 = r1_penalty(reals, real_scores) if self.r1_gamma else torch.zeros_like(adversarial)
        loss = adversarial + r1 * (self.r1_gamma * 0.5)
        mismatch = torch.zeros_like(adversarial)
        if self.matching_aware and len(labels) > 1:
            perm = torch.randperm(
                len(labels), generator=generator, device="cpu" if generator is None else generator.device
            ).to(labels.device)
            mismatch = F.softplus(self.D(reals.detach(), labels[perm])).mean()
            loss = loss + mismatch
        return DPhase(
            loss, adversarial.detach(), r1.detach(), mismatch.detach(), real_scores.detach(), fake_scores.detach()
        )

    def generator_phase(self, labels: Tensor, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return F.softplus(-self.D(self.fakes(z, labels, generator), labels)).mean()
