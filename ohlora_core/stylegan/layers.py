"""Building blocks of the genforce StyleGAN (v1) networks.

Parameters are stored *unscaled*, as genforce stores them: the equalised
learning rate multiplies each weight by `gain / sqrt(fan_in) * lr_mul` (and each
bias by `lr_mul`) at run time. The multipliers are Python floats computed with
the same float64 operations as genforce, so the float32 products are identical.

Every module has `reset_own(generator)` (its own tensors only): genforce's initial values
(`randn` weights, zero biases, ones for the constant input, `randn` noise),
drawn from an optional `torch.Generator` so a model can be built reproducibly
without touching the global RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
EPS = 1e-8


def weight_multiplier(fan_in: int, gain: float, lr_mul: float, use_wscale: bool) -> float:
    """Run-time weight multiplier (genforce: `wscale`)."""
    if use_wscale:
        return gain / math.sqrt(fan_in) * lr_mul
    return lr_mul


def init_weight_(
    weight: Tensor, fan_in: int, gain: float, lr_mul: float, use_wscale: bool, generator: torch.Generator | None
) -> None:
    """genforce's weight init: `randn / lr_mul` (wscale) or `randn * wscale / lr_mul`."""
    with torch.no_grad():
        noise = torch.randn(weight.shape, generator=generator)
        if use_wscale:
            weight.copy_(noise / lr_mul)
        else:
            weight.copy_(noise * (gain / math.sqrt(fan_in)) / lr_mul)


def pixel_norm(x: Tensor, eps: float = EPS) -> Tensor:
    """Normalise each row of `x` [N, D] to unit root-mean-square."""
    return x / torch.sqrt(x.square().mean(dim=1, keepdim=True) + eps)


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def shift_sum_kernel(weight: Tensor) -> Tensor:
    """[O, I, 3, 3] -> [O, I, 4, 4]: sum of the kernel placed at the 4 offsets of a 2x2 box.

    A 3x3 conv on a 2x-nearest-upsampled map (or followed by a 2x2 average pool)
    touches each input pixel through a 2x2 box of kernel taps; this kernel folds
    that box so the resampling and the conv become one strided op.
    """
    padded = F.pad(weight, (1, 1, 1, 1))
    return (padded[..., :-1, :-1] + padded[..., :-1, 1:]) + (padded[..., 1:, :-1] + padded[..., 1:, 1:])


def blur_kernel(channels: int) -> Tensor:
    """Depthwise [1,2,1] x [1,2,1] / 16 binomial filter, shape [C, 1, 3, 3]."""
    k1 = torch.tensor([1.0, 2.0, 1.0])
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).expand(channels, 1, 3, 3).contiguous()


def blur(x: Tensor, kernel: Tensor) -> Tensor:
    return F.conv2d(x, kernel, padding=1, groups=x.shape[1])


def minibatch_std(x: Tensor, group_size: int, new_channels: int = 1, eps: float = EPS) -> Tensor:
    """Append the per-group feature standard deviation as `new_channels` extra channels.

    Sample `i` belongs to group `i % (N / G)` with `G = min(group_size, N)` (the
    genforce / TF layout); N must be divisible by G.
    """
    if group_size <= 1:
        return x
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch-std: batch size {n} is not divisible by the group size {g}")
    y = x.reshape(g, n // g, new_channels, c // new_channels, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    y = torch.sqrt(y.square().mean(dim=0) + eps)  # [M, n, c, H, W]
    y = y.mean(dim=(2, 3, 4))  # [M, n]
    y = y.reshape(1, n // g, new_channels, 1, 1).expand(g, -1, -1, h, w).reshape(n, new_channels, h, w)
    return torch.cat([x, y], dim=1)


class DenseLayer(nn.Module):
    """Fully connected layer with equalised learning rate (keys `weight`, `bias`)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        gain: float = SQRT2,
        lr_mul: float = 1.0,
        use_wscale: bool = True,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.gain, self.lr_mul, self.use_wscale, self.activate = gain, lr_mul, use_wscale, activate
        self.w_mul = weight_multiplier(in_features, gain, lr_mul, use_wscale)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        init_weight_(self.weight, self.in_features, self.gain, self.lr_mul, self.use_wscale, generator)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2:
            x = x.flatten(1)
        bias = self.bias * self.lr_mul if self.lr_mul != 1.0 else self.bias
        x = F.linear(x, self.weight * self.w_mul, bias)
        return lrelu(x) if self.activate else x


class NoiseInput(nn.Module):
    """Per-pixel noise scaled per channel (keys `weight` [C], buffer `noise` [1,1,R,R])."""

    def __init__(self, channels: int, resolution: int) -> None:
        super().__init__()
        self.channels, self.resolution = channels, resolution
        self.weight = nn.Parameter(torch.empty(channels))
        self.register_buffer("noise", torch.empty(1, 1, resolution, resolution))

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        nn.init.zeros_(self.weight)
        with torch.no_grad():
            self.noise.copy_(torch.randn(self.noise.shape, generator=generator))

    def sample(self, batch: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        # Drawn on the CPU (as genforce does) unless the generator lives elsewhere,
        # so the global-RNG stream matches genforce's.
        dev = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(batch, 1, self.resolution, self.resolution, generator=generator, device=dev)
        return noise.to(like)

    def forward(self, x: Tensor, randomize: bool = False, generator: torch.Generator | None = None) -> Tensor:
        noise = self.sample(x.shape[0], x, generator) if randomize else self.noise
        return x + noise * self.weight.view(1, -1, 1, 1)


class StyleAffine(nn.Module):
    """Affine map w -> (scale, shift) style of one layer (keys `weight` [2C, W], `bias` [2C]).

    genforce initialises the weight as `randn` with a run-time multiplier
    `1/sqrt(W)` and applies no multiplier to the bias.
    """

    def __init__(self, w_dim: int, channels: int, use_wscale: bool = True) -> None:
        super().__init__()
        self.w_dim, self.channels, self.use_wscale = w_dim, channels, use_wscale
        self.w_mul = 1.0 / math.sqrt(w_dim) if use_wscale else 1.0
        self.weight = nn.Parameter(torch.empty(2 * channels, w_dim))
        self.bias = nn.Parameter(torch.empty(2 * channels))

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            noise = torch.randn(self.weight.shape, generator=generator)
            self.weight.copy_(noise if self.use_wscale else noise * (1.0 / math.sqrt(self.w_dim)))
        nn.init.zeros_(self.bias)

    def forward(self, w: Tensor) -> Tensor:
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"style input must be [N, {self.w_dim}], got {tuple(w.shape)}")
        return F.linear(w, self.weight * self.w_mul, self.bias)


def normalize_and_modulate(x: Tensor, style: Tensor) -> Tensor:
    """Instance norm (no affine, eps 1e-8) then `x * (scale + 1) + shift`, in three kernels.

    The mean is subtracted *before* scaling, as genforce does: folding it into an affine
    (`x * a + b`, what `F.instance_norm` with weight/bias does) cancels catastrophically on
    near-constant channels, e.g. the 4x4 constant input with zero noise strength, where
    1/std ~ 1e4 turns float32 rounding into errors of ~1e-3.
    """
    n, c = x.shape[:2]
    var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
    scale, shift = style.view(n, 2, c, 1, 1).unbind(1)
    return torch.addcmul(shift, x - mean, torch.rsqrt(var + EPS) * (scale + 1))


class Blur(nn.Module):
    """Depthwise binomial blur (buffer `kernel` [C, 1, 3, 3])."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(channels))

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.kernel.copy_(blur_kernel(self.kernel.shape[0]))

    def forward(self, x: Tensor) -> Tensor:
        return blur(x, self.kernel)


def reset_all(module: nn.Module, generator: torch.Generator | None) -> None:
    """Re-initialise every sub-module's own tensors (`reset_own`), in registration order."""
    for m in module.modules():
        if hasattr(m, "reset_own"):
            m.reset_own(generator)
