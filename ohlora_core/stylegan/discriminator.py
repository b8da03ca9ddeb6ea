"""StyleGAN (v1) discriminator whose state_dict and outputs match genforce's `StyleGANDiscriminator`.

Blocks run from the full resolution down to 4x4: `input{b}` (FromRGB, only `input0` is used at
lod 0; the others exist for progressive growing), `layer{2b}` conv3x3, `layer{2b+1}` blurred
down-sampling conv, then at 4x4 minibatch-std + conv3x3, `layer{2B+1}` dense + lrelu and
`layer{2B+2}` the linear output.

Label conditioning (`label_size > 0`):
* `label_mode="project"` (genforce): the last layer outputs `label_size` values and the score is
  their dot product with the label.
* `label_mode="concat"` (Oh-LoRA fine-tune v1): the label is appended to the `layer{2B+1}`
  output and the last layer maps `512 + label_size -> 1`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .generator import INIT_RES, RESOLUTIONS, FusedScale, _check_fused_scale, _check_lod, _use_fused
from .layers import (
    SQRT2,
    Blur,
    DenseLayer,
    init_weight_,
    lrelu,
    minibatch_std,
    reset_all,
    shift_sum_kernel,
    weight_multiplier,
)


class DiscriminatorConv(nn.Module):
    """[minibatch-std] -> [blur] -> conv (+bias) -> [2x down] -> lrelu (keys `weight`, `bias`, `blur.kernel`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        down: bool = False,
        fused: bool = False,
        mbstd_group_size: int = 0,
        mbstd_channels: int = 1,
        use_wscale: bool = True,
    ) -> None:
        super().__init__()
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        if mbstd_group_size > 1:
            in_channels += mbstd_channels
        self.down, self.fused, self.use_wscale = down, fused, use_wscale
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.w_mul = weight_multiplier(in_channels * kernel_size**2, SQRT2, 1.0, use_wscale)
        if down:
            self.blur = Blur(in_channels)

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        init_weight_(self.weight, self.weight[0].numel(), SQRT2, 1.0, self.use_wscale, generator)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.mbstd_group_size > 1:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_channels)
        weight = self.weight * self.w_mul
        if not self.down:
            return lrelu(F.conv2d(x, weight, self.bias, padding=self.padding))
        x = self.blur(x)
        if self.fused:  # conv3x3 + 2x2 average pool folded into one strided 4x4 conv
            x = F.conv2d(x, shift_sum_kernel(weight) * 0.25, self.bias, stride=2, padding=1)
        else:
            x = F.avg_pool2d(F.conv2d(x, weight, self.bias, padding=self.padding), 2)
        return lrelu(x)


class StyleGANDiscriminator(nn.Module):
    """genforce-compatible StyleGAN discriminator: images [N, C, R, R] in [-1, 1] -> logits [N, 1].

    Extra arguments beyond genforce: `label_mode` (see module docstring) and `init_generator`.
    With minibatch-std on, N must be divisible by `min(group_size, N)` and scores depend on the
    other images in the batch.
    """

    def __init__(
        self,
        resolution: int = 256,
        image_channels: int = 3,
        label_size: int = 0,
        fused_scale: FusedScale = "auto",
        use_wscale: bool = True,
        minibatch_std_group_size: int = 4,
        minibatch_std_channels: int = 1,
        fmaps_base: int = 16 << 10,
        fmaps_max: int = 512,
        label_mode: Literal["project", "concat"] = "project",
        init_generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
        _check_fused_scale(fused_scale)
        if label_mode not in ("project", "concat"):
            raise ValueError(f"label_mode must be 'project' or 'concat', got {label_mode!r}")
        self.resolution, self.image_channels, self.label_size = resolution, image_channels, label_size
        self.label_mode = label_mode
        self.minibatch_std_group_size = minibatch_std_group_size
        self.fmaps_base, self.fmaps_max = fmaps_base, fmaps_max
        self.register_buffer("lod", torch.zeros(()))
        n_blocks = int(np.log2(resolution // INIT_RES)) + 1
        for b in range(n_blocks):
            res = resolution >> b
            self.add_module(f"input{b}", DiscriminatorConv(image_channels, self.nf(res), 1, use_wscale=use_wscale))
            if res > INIT_RES:
                self.add_module(f"layer{2 * b}", DiscriminatorConv(self.nf(res), self.nf(res), use_wscale=use_wscale))
                self.add_module(
                    f"layer{2 * b + 1}",
                    DiscriminatorConv(
                        self.nf(res),
                        self.nf(res // 2),
                        down=True,
                        fused=_use_fused(fused_scale, res),
                        use_wscale=use_wscale,
                    ),
                )
            else:
                self.add_module(
                    f"layer{2 * b}",
                    DiscriminatorConv(
                        self.nf(res),
                        self.nf(res),
                        mbstd_group_size=minibatch_std_group_size,
                        mbstd_channels=minibatch_std_channels,
                        use_wscale=use_wscale,
                    ),
                )
                self.add_module(
                    f"layer{2 * b + 1}", DenseLayer(self.nf(res) * res * res, self.nf(res // 2), use_wscale=use_wscale)
                )
        hidden = self.nf(INIT_RES // 2)
        if label_size and label_mode == "concat":
            final = DenseLayer(hidden + label_size, 1, gain=1.0, use_wscale=use_wscale, activate=False)
        else:
            final = DenseLayer(hidden, max(label_size, 1), gain=1.0, use_wscale=use_wscale, activate=False)
        self.num_blocks = n_blocks
        self.add_module(f"layer{2 * n_blocks}", final)
        self.reset_parameters(init_generator)

    def nf(self, res: int) -> int:
        return min(self.fmaps_base // res, self.fmaps_max)

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        self.lod.zero_()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights as genforce initialises them."""
        reset_all(self, generator)

    def forward(self, image: Tensor, label: Tensor | None = None, lod: float | None = None) -> Tensor:
        """images [N, C, R, R] (+ label [N, label_size]) -> raw logits [N, 1]."""
        expected = (self.image_channels, self.resolution, self.resolution)
        if image.ndim != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(f"images must be [N, {', '.join(map(str, expected))}], got {tuple(image.shape)}")
        if lod is not None:
            _check_lod(lod)
        if self.label_size:
            if label is None:
                raise ValueError(f"this discriminator is conditional: pass label of shape [N, {self.label_size}]")
            if label.ndim != 2 or tuple(label.shape) != (image.shape[0], self.label_size):
                raise ValueError(
                    f"label must have shape [{image.shape[0]}, {self.label_size}], got {tuple(label.shape)}"
                )
        x = self.input0(image)
        for i in range(2 * self.num_blocks):
            x = getattr(self, f"layer{i}")(x)
        final = getattr(self, f"layer{2 * self.num_blocks}")
        if self.label_size and self.label_mode == "concat":
            return final(torch.cat([x, label], dim=1))
        x = final(x)
        if self.label_size:
            x = (x * label).sum(dim=1, keepdim=True)
        return x

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        lod = state_dict.get(prefix + "lod")
        if lod is not None and lod.numel() == 1 and float(lod) != 0.0:
            raise ValueError(f"checkpoint has lod={float(lod)}: only fully grown models (lod 0) are supported")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
