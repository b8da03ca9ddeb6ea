"""StyleGAN (v1) generator whose state_dict and outputs match genforce's `StyleGANGenerator`.

Layout (same parameter names as genforce, so its checkpoints load strictly):
`mapping.dense{i}` (+ `mapping.label_weight`), `truncation.w_avg`, `synthesis.lod`,
`synthesis.layer{0..L-1}` (const/conv, `apply_noise`, `style`, `blur`), `synthesis.output{b}` (ToRGB).

Modes
-----
* **eval** (`G.eval()`): deterministic. `forward(z)` = mapping -> broadcast to all layers ->
  optional truncation -> synthesis with the stored noise (`randomize_noise=False`).
* **train** (`G.train()`), as genforce does it, which fine-tuning relies on:
  - `w_avg` tracks an EMA of the batch-mean w (`w_moving_decay`, default 0.995), averaged over
    processes when `torch.distributed` is initialised. Unlike genforce the update is detached
    from autograd (same values; genforce chains the buffer into the graph).
  - style mixing (`style_mixing_prob`, default 0.9): a second z is drawn and mapped on every
    call; with that probability the layers from a random cutoff in [1, L) take the second w.
  - Random draws: with `generator=None` they follow genforce's exact pattern (`torch.randn_like`
    for the second z, `np.random.uniform` / `np.random.randint` for the mixing decision, CPU
    `torch.randn` per layer for random noise), so seeding torch and numpy reproduces genforce
    bit-for-bit; with a `torch.Generator` every draw comes from it instead.
* Only level-of-detail 0 (fully grown network) is supported; progressive-growing blends raise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    SQRT2,
    Blur,
    DenseLayer,
    NoiseInput,
    StyleAffine,
    init_weight_,
    lrelu,
    normalize_and_modulate,
    pixel_norm,
    reset_all,
    shift_sum_kernel,
    weight_multiplier,
)

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
INIT_RES = 4
FUSED_MIN_RES = 128  # fused_scale='auto' fuses the up-sampling conv from this resolution on

FusedScale = bool | Literal["auto"]


def _use_fused(fused_scale: FusedScale, res: int) -> bool:
    return res >= FUSED_MIN_RES if fused_scale == "auto" else bool(fused_scale)


def _check_fused_scale(fused_scale: FusedScale) -> None:
    if fused_scale not in (True, False, "auto"):
        raise ValueError(f"fused_scale must be True, False or 'auto', got {fused_scale!r}")


def _check_lod(lod: float) -> None:
    if float(lod) != 0.0:
        raise ValueError(f"only level-of-detail 0 (a fully grown model) is supported, got lod={float(lod)}")


class MappingNetwork(nn.Module):
    """z (+ label embedding) -> PixelNorm -> `num_layers` dense layers with lrelu -> w.

    With `label_size > 0`, `label @ label_weight` ([label_size, label_embed_dim]) is concatenated
    to z before the normalisation, and `dense0` takes `z_dim + label_embed_dim` inputs. genforce
    uses `label_embed_dim = z_dim`; Oh-LoRA's fine-tune v1 uses 16.
    """

    def __init__(
        self,
        z_dim: int = 512,
        hidden_dim: int = 512,
        out_dim: int = 512,
        num_layers: int = 8,
        label_size: int = 0,
        label_embed_dim: int | None = None,
        lr_mul: float = 0.01,
        use_wscale: bool = True,
    ) -> None:
        super().__init__()
        self.z_dim, self.label_size = z_dim, label_size
        self.label_embed_dim = (z_dim if label_embed_dim is None else label_embed_dim) if label_size else 0
        self.num_layers = num_layers
        for i in range(num_layers):
            self.add_module(
                f"dense{i}",
                DenseLayer(
                    z_dim + self.label_embed_dim if i == 0 else hidden_dim,
                    out_dim if i == num_layers - 1 else hidden_dim,
                    lr_mul=lr_mul,
                    use_wscale=use_wscale,
                ),
            )
        if label_size:
            self.label_weight = nn.Parameter(torch.empty(label_size, self.label_embed_dim))

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        if self.label_size:
            with torch.no_grad():
                self.label_weight.copy_(torch.randn(self.label_weight.shape, generator=generator))

    def forward(self, z: Tensor, label: Tensor | None = None) -> dict[str, Tensor | None]:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"latent z must have shape [N, {self.z_dim}], got {tuple(z.shape)}")
        out: dict[str, Tensor | None] = {"label": label}
        if self.label_size:
            if label is None:
                raise ValueError(f"this generator is conditional: pass label of shape [N, {self.label_size}]")
            if label.ndim != 2 or tuple(label.shape) != (z.shape[0], self.label_size):
                raise ValueError(f"label must have shape [{z.shape[0]}, {self.label_size}], got {tuple(label.shape)}")
            embedding = label @ self.label_weight
            z = torch.cat([z, embedding], dim=1)
            out["embedding"] = embedding
        z = pixel_norm(z)
        w = z
        for i in range(self.num_layers):
            w = getattr(self, f"dense{i}")(w)
        out["z"], out["w"] = z, w
        return out


class Truncation(nn.Module):
    """Broadcast w to every layer and apply the truncation trick (buffer `w_avg`)."""

    def __init__(self, w_dim: int, num_layers: int) -> None:
        super().__init__()
        self.w_dim, self.num_layers = w_dim, num_layers
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        self.w_avg.zero_()

    def broadcast(self, w: Tensor) -> Tensor:
        if w.ndim == 3:
            return w
        return w.unsqueeze(1).expand(-1, self.num_layers, -1)

    def forward(self, w: Tensor, trunc_psi: float = 1.0, trunc_layers: int = 0) -> Tensor:
        wp = self.broadcast(w)
        if wp.shape[1:] != (self.num_layers, self.w_dim):
            raise ValueError(f"wp must be [N, {self.num_layers}, {self.w_dim}], got {tuple(wp.shape)}")
        if trunc_psi < 1.0 and trunc_layers > 0:
            # genforce interpolates every layer, with coefficient 1 beyond trunc_layers.
            coef = torch.ones(self.num_layers, dtype=torch.float32)
            coef[:trunc_layers] = trunc_psi
            coef = coef.view(1, -1, 1).to(wp)
            w_avg = self.w_avg.view(1, 1, -1)
            wp = w_avg + (wp - w_avg) * coef
        return wp


class SynthesisLayer(nn.Module):
    """[const | (2x up) conv3x3 (+ blur)] -> + noise -> + bias -> lrelu -> instance norm -> style."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resolution: int,
        w_dim: int,
        *,
        mode: Literal["const", "conv", "up"],
        fused: bool = False,
        use_wscale: bool = True,
        fast_upsample: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        self.mode, self.fused, self.use_wscale, self.fast_upsample = mode, fused, use_wscale, fast_upsample
        self.bias = nn.Parameter(torch.empty(out_channels))
        if mode == "const":
            self.const = nn.Parameter(torch.empty(1, in_channels, resolution, resolution))
        else:
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
            self.w_mul = weight_multiplier(in_channels * 9, SQRT2, 1.0, use_wscale)
        self.apply_noise = NoiseInput(out_channels, resolution)
        self.style = StyleAffine(w_dim, out_channels, use_wscale)
        if mode == "up":
            self.blur = Blur(out_channels)

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        nn.init.zeros_(self.bias)
        if self.mode == "const":
            nn.init.ones_(self.const)
        else:
            init_weight_(self.weight, self.weight[0].numel(), SQRT2, 1.0, self.use_wscale, generator)

    def forward(
        self, x: Tensor | None, w: Tensor, randomize_noise: bool = False, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.mode == "const":
            x = self.const.expand(w.shape[0], -1, -1, -1)
        else:
            weight = self.weight * self.w_mul
            if self.mode == "conv":
                x = F.conv2d(x, weight, padding=1)
            else:
                if self.fused:
                    # genforce's fused up-conv: transposed conv with the shift-summed kernel.
                    # This equals nearest-up + conv3x3 with the *flipped* kernel.
                    x = F.conv_transpose2d(x, shift_sum_kernel(weight).transpose(0, 1), stride=2, padding=1)
                elif self.fast_upsample is True or (self.fast_upsample == "auto" and x.device.type == "cpu"):
                    # nearest-up + conv3x3 as one transposed conv with the flipped kernel
                    # (same values to ~1e-6, 2.25x fewer multiply-adds).
                    x = F.conv_transpose2d(x, shift_sum_kernel(weight.flip(2, 3)).transpose(0, 1), stride=2, padding=1)
                else:
                    x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
                x = self.blur(x)
        x = self.apply_noise(x, randomize_noise, generator)
        x = lrelu(x + self.bias.view(1, -1, 1, 1))
        style = self.style(w)
        return normalize_and_modulate(x, style), style


class ToRGB(nn.Module):
    """1x1 conv to image channels, gain 1, linear (keys `bias`, `weight`)."""

    def __init__(self, in_channels: int, out_channels: int = 3, use_wscale: bool = True) -> None:
        super().__init__()
        self.use_wscale = use_wscale
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.w_mul = weight_multiplier(in_channels, 1.0, 1.0, use_wscale)

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        nn.init.zeros_(self.bias)
        init_weight_(self.weight, self.weight[0].numel(), 1.0, 1.0, self.use_wscale, generator)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.w_mul) + self.bias.view(1, -1, 1, 1)


class SynthesisNetwork(nn.Module):
    """Constant 4x4 input grown to `resolution` by 2 layers per resolution; ToRGB at the end."""

    def __init__(
        self,
        resolution: int,
        w_dim: int = 512,
        image_channels: int = 3,
        final_tanh: bool = False,
        fused_scale: FusedScale = "auto",
        use_wscale: bool = True,
        fmaps_base: int = 16 << 10,
        fmaps_max: int = 512,
        fast_upsample: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        self.resolution, self.w_dim, self.final_tanh = resolution, w_dim, final_tanh
        self.fmaps_base, self.fmaps_max = fmaps_base, fmaps_max
        self.register_buffer("lod", torch.zeros(()))
        res_list = [INIT_RES * 2**i for i in range(int(np.log2(resolution // INIT_RES)) + 1)]
        self.num_layers = 2 * len(res_list)
        for b, res in enumerate(res_list):
            if b == 0:
                first = SynthesisLayer(self.nf(res), self.nf(res), res, w_dim, mode="const", use_wscale=use_wscale)
            else:
                first = SynthesisLayer(
                    self.nf(res // 2),
                    self.nf(res),
                    res,
                    w_dim,
                    mode="up",
                    fused=_use_fused(fused_scale, res),
                    use_wscale=use_wscale,
                    fast_upsample=fast_upsample,
                )
            self.add_module(f"layer{2 * b}", first)
            self.add_module(
                f"layer{2 * b + 1}",
                SynthesisLayer(self.nf(res), self.nf(res), res, w_dim, mode="conv", use_wscale=use_wscale),
            )
            self.add_module(f"output{b}", ToRGB(self.nf(res), image_channels, use_wscale))
        self.last_block = len(res_list) - 1

    def nf(self, res: int) -> int:
        return min(self.fmaps_base // res, self.fmaps_max)

    def reset_own(self, generator: torch.Generator | None = None) -> None:
        self.lod.zero_()

    def forward(
        self, wp: Tensor, randomize_noise: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {"wp": wp}
        x = None
        for i in range(self.num_layers):
            x, out[f"style{i:02d}"] = getattr(self, f"layer{i}")(x, wp[:, i], randomize_noise, generator)
        image = getattr(self, f"output{self.last_block}")(x)
        out["image"] = torch.tanh(image) if self.final_tanh else image
        return out


def _all_reduce_mean(x: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x = x / dist.get_world_size()
    return x


class StyleGANGenerator(nn.Module):
    """genforce-compatible StyleGAN generator (same constructor arguments and state_dict).

    Extra arguments beyond genforce: `label_embed_dim` (label embedding width, default
    `z_space_dim` as genforce), `fast_upsample` (True: non-fused up-sampling layers run as
    one transposed conv instead of nearest-up + conv, same values to ~1e-6 and 2x faster on CPU;
    False: genforce's literal ops, faster with cuDNN; 'auto' (default): True on CPU only) and
    `init_generator` (a `torch.Generator` for the initial values; `None` uses the global RNG).
    `repeat_w=False`, `const_input=False` and `noise_type='channel'` are not implemented.
    """

    def __init__(
        self,
        resolution: int = 256,
        z_space_dim: int = 512,
        w_space_dim: int = 512,
        label_size: int = 0,
        mapping_layers: int = 8,
        mapping_fmaps: int = 512,
        mapping_lr_mul: float = 0.01,
        repeat_w: bool = True,
        image_channels: int = 3,
        final_tanh: bool = False,
        const_input: bool = True,
        fused_scale: FusedScale = "auto",
        use_wscale: bool = True,
        noise_type: str = "spatial",
        fmaps_base: int = 16 << 10,
        fmaps_max: int = 512,
        label_embed_dim: int | None = None,
        fast_upsample: bool | Literal["auto"] = "auto",
        init_generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
        _check_fused_scale(fused_scale)
        if not repeat_w or not const_input or noise_type != "spatial":
            raise NotImplementedError("only repeat_w=True, const_input=True, noise_type='spatial' are supported")
        self.resolution, self.z_space_dim, self.w_space_dim = resolution, z_space_dim, w_space_dim
        self.label_size, self.image_channels = label_size, image_channels
        self.mapping = MappingNetwork(
            z_space_dim,
            mapping_fmaps,
            w_space_dim,
            mapping_layers,
            label_size,
            label_embed_dim,
            mapping_lr_mul,
            use_wscale,
        )
        self.label_embed_dim = self.mapping.label_embed_dim
        self.num_layers = 2 * (int(np.log2(resolution // INIT_RES)) + 1)
        self.truncation = Truncation(w_space_dim, self.num_layers)
        self.synthesis = SynthesisNetwork(
            resolution,
            w_space_dim,
            image_channels,
            final_tanh,
            fused_scale,
            use_wscale,
            fmaps_base,
            fmaps_max,
            fast_upsample,
        )
        self.reset_parameters(init_generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights / noise maps as genforce initialises them (zero `w_avg`, `lod`)."""
        reset_all(self, generator)

    def forward(
        self,
        z: Tensor,
        label: Tensor | None = None,
        lod: float | None = None,
        w_moving_decay: float = 0.995,
        style_mixing_prob: float = 0.9,
        trunc_psi: float | None = None,
        trunc_layers: int | None = None,
        randomize_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor | None]:
        """z [N, z_dim] (+ label [N, label_size]) -> dict with 'z' (normalised), 'label', 'w' [N, W],
        'wp' [N, L, W], 'style00'.. [N, 2C], 'image' [N, C, R, R] (raw, roughly [-1, 1]).

        `w_moving_decay` and `style_mixing_prob` only act in training mode (see module docstring).
        Truncation is off unless `trunc_psi < 1` and `trunc_layers > 0`.
        """
        if lod is not None:
            _check_lod(lod)
        trunc_psi = 1.0 if trunc_psi is None else trunc_psi
        trunc_layers = 0 if trunc_layers is None else trunc_layers
        mapped = self.mapping(z, label)
        w = mapped["w"]
        if self.training and w_moving_decay < 1:
            with torch.no_grad():
                batch_avg = _all_reduce_mean(w.detach()).mean(dim=0)
                self.truncation.w_avg.copy_(self.truncation.w_avg * w_moving_decay + batch_avg * (1 - w_moving_decay))
        wp = self.truncation.broadcast(w)
        if self.training and style_mixing_prob > 0:
            wp = self._style_mix(z, label, wp, style_mixing_prob, generator)
        wp = self.truncation(wp, trunc_psi, trunc_layers)
        return {**mapped, **self.synthesis(wp, randomize_noise, generator)}

    def _style_mix(
        self, z: Tensor, label: Tensor | None, wp: Tensor, prob: float, generator: torch.Generator | None
    ) -> Tensor:
        if generator is None:  # genforce's draw order: torch for z, numpy for the coin and cutoff
            new_z = torch.randn_like(z)
            new_w = self.mapping(new_z, label)["w"]
            if np.random.uniform() >= prob:
                return wp
            cutoff = int(np.random.randint(1, self.num_layers))
        else:
            new_z = torch.randn(z.shape, generator=generator, device=generator.device).to(z)
            new_w = self.mapping(new_z, label)["w"]
            if torch.rand((), generator=generator, device=generator.device).item() >= prob:
                return wp
            cutoff = int(torch.randint(1, self.num_layers, (), generator=generator, device=generator.device))
        new_wp = self.truncation.broadcast(new_w)
        return torch.cat([wp[:, :cutoff], new_wp[:, cutoff:]], dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        lod = state_dict.get(prefix + "synthesis.lod")
        if lod is not None and lod.numel() == 1 and float(lod) != 0.0:
            raise ValueError(
                f"checkpoint has synthesis.lod={float(lod)}: only fully grown models (lod 0) are supported"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def synthesize_w(G: "StyleGANGenerator", w: Tensor) -> Tensor:
    """Images from w [N, W] (every layer the same w, no truncation, stored noise): [N, C, R, R]."""
    return G.synthesis(G.truncation(w), randomize_noise=False)["image"]


def postprocess(images: Tensor) -> Tensor:
    """[N, C, H, W] float images in [-1, 1] -> [N, H, W, C] uint8 on the same device.

    Bit-identical to genforce's `postprocess_image` (float64 `(x + 1) * 255 / 2 + 0.5`,
    clip to [0, 255], truncate): the arithmetic is done in float64 like numpy does.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    x = images.detach().to(torch.float64)
    x = ((x + 1.0) * 255 / 2.0 + 0.5).clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()
