"""Load genforce StyleGAN checkpoints into our classes, or build seeded stand-ins ("smoke mode").

Accepted file layouts (all read with `weights_only=True`):
* zoo / converter: `{'generator': sd, 'discriminator': sd, 'generator_smooth': sd}`
* training runner: `{'models': {...same keys...}, 'optimizers': ..., ...}`
* a bare state_dict, as the original Oh-LoRA fine-tuning saved its models
  (`stylegan_gen_fine_tuned_v1.pth`, `..._dis_...`, v2/v3/v4 likewise)
State-dict keys may carry a `module.` prefix (DataParallel / DDP); it is stripped.
The architecture (resolution, latent sizes, label conditioning) is read from the tensor
shapes; other constructor arguments can be passed as keyword overrides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..io import CheckpointError, load_checkpoint, load_state_dict_strict, state_dict_in
from .discriminator import StyleGANDiscriminator
from .generator import INIT_RES, StyleGANGenerator


def select_state_dict(checkpoint: Mapping, key: str, source: str) -> dict[str, torch.Tensor]:
    """The state_dict under `key` of a top-level or `{'models': ...}` checkpoint, or the checkpoint
    itself when it is a bare state_dict; `module.` prefixes stripped."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        sd = checkpoint  # bare state_dict
    else:
        models = checkpoint["models"] if isinstance(checkpoint.get("models"), Mapping) else checkpoint
        if key not in models:
            raise CheckpointError(
                f"{source}: no {key!r} entry and not a bare state_dict; available keys: {sorted(map(str, models))[:10]}"
            )
        sd = state_dict_in(models[key], f"{source} [{key!r}]")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}


def _count(sd: Mapping, pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(1 for k in sd if rx.fullmatch(k))


def _fmaps_args(channels: list[int], resolution: int) -> dict[str, int]:
    """`fmaps_base` / `fmaps_max` reproducing per-resolution widths (4x4 first), if any pair does."""
    base, top = channels[-1] * resolution, channels[0]
    if [min(base // (INIT_RES << i), top) for i in range(len(channels))] == channels:
        return {"fmaps_base": base, "fmaps_max": top}
    return {}


def infer_generator_args(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor arguments implied by a generator state_dict's shapes (what can be read from it)."""
    args: dict[str, Any] = {}
    n_out = _count(sd, r"synthesis\.output\d+\.weight")
    if n_out and all(f"synthesis.output{b}.weight" in sd for b in range(n_out)):
        args["resolution"] = INIT_RES * 2 ** (n_out - 1)
        args["image_channels"] = sd["synthesis.output0.weight"].shape[0]
        widths = [sd[f"synthesis.output{b}.weight"].shape[1] for b in range(n_out)]
        args.update(_fmaps_args(widths, args["resolution"]))
    n_map = _count(sd, r"mapping\.dense\d+\.weight")
    if n_map and f"mapping.dense{n_map - 1}.weight" in sd:
        args["mapping_layers"] = n_map
        dense0 = sd["mapping.dense0.weight"]
        args["w_space_dim"] = sd[f"mapping.dense{n_map - 1}.weight"].shape[0]
        if n_map > 1:
            args["mapping_fmaps"] = dense0.shape[0]
        embed = 0
        if "mapping.label_weight" in sd:
            args["label_size"], embed = sd["mapping.label_weight"].shape
            args["label_embed_dim"] = embed
        args["z_space_dim"] = dense0.shape[1] - embed
    return args


def infer_discriminator_args(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor arguments implied by a discriminator state_dict's shapes."""
    args: dict[str, Any] = {}
    n_blocks = _count(sd, r"input\d+\.weight")
    final = sd.get(f"layer{2 * n_blocks}.weight")
    hidden = sd.get(f"layer{2 * n_blocks - 1}.weight")
    if not n_blocks or final is None or hidden is None or any(f"input{b}.weight" not in sd for b in range(n_blocks)):
        return args
    args["resolution"] = INIT_RES * 2 ** (n_blocks - 1)
    args["image_channels"] = sd["input0.weight"].shape[1]
    widths = [sd[f"input{b}.weight"].shape[0] for b in reversed(range(n_blocks))]
    args.update(_fmaps_args(widths, args["resolution"]))
    if final.shape[1] > hidden.shape[0]:
        args["label_size"], args["label_mode"] = final.shape[1] - hidden.shape[0], "concat"
    elif final.shape[0] > 1:
        args["label_size"] = final.shape[0]
    return args


def _load(cls, infer, path: str | os.PathLike, key: str, device: str | torch.device, overrides: dict):
    source = f"{path} [{key!r}]"
    sd = select_state_dict(load_checkpoint(path), key, str(path))
    for lod_key in ("synthesis.lod", "lod"):
        lod = sd.get(lod_key)
        if isinstance(lod, torch.Tensor) and lod.numel() == 1 and float(lod) != 0.0:
            raise CheckpointError(
                f"{source}: {lod_key}={float(lod)}, but only fully grown models (lod 0) are supported"
            )
    model = cls(**{**infer(sd), **overrides})
    load_state_dict_strict(model, sd, source)
    return model.to(device).eval()


def load_generator(
    path: str | os.PathLike, key: str = "generator", device: str | torch.device = "cpu", **overrides: Any
) -> StyleGANGenerator:
    """Strictly load `key` ('generator' or 'generator_smooth') from a genforce checkpoint; eval mode.

    `overrides` are extra `StyleGANGenerator` arguments (e.g. `fused_scale`, `final_tanh`) that
    cannot be read from the shapes.
    """
    return _load(StyleGANGenerator, infer_generator_args, path, key, device, overrides)


def load_discriminator(
    path: str | os.PathLike, key: str = "discriminator", device: str | torch.device = "cpu", **overrides: Any
) -> StyleGANDiscriminator:
    """Strictly load `key` from a genforce checkpoint as a `StyleGANDiscriminator`; eval mode.

    Pass `minibatch_std_group_size` (default 4; Oh-LoRA fine-tune v1 used 16) if it differs:
    it is not visible in the weights.
    """
    return _load(StyleGANDiscriminator, infer_discriminator_args, path, key, device, overrides)


SMOKE_IMAGE_STD = 0.5


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def smoke_generator(seed: int, resolution: int = 256, **kwargs: Any) -> StyleGANGenerator:
    """Seeded random generator of the real architecture (stand-in when no checkpoint exists); eval mode.

    genforce's initialisation, then the ToRGB weights are rescaled so that images of a few fixed
    latents have standard deviation ~`SMOKE_IMAGE_STD` (raw init gives 0.7-3, i.e. mostly
    clipped pixels). The factor is rounded to a multiple of 1/64 so it does not depend on the
    last bits of the calibration forward pass. Same seed -> same state_dict bytes, whatever the
    global RNG state.
    """
    gen = _seeded(seed)
    G = StyleGANGenerator(resolution, init_generator=gen, **kwargs).eval()
    with torch.no_grad():
        z = torch.randn(2, G.z_space_dim, generator=gen)
        label = torch.rand(2, G.label_size, generator=gen) if G.label_size else None
        std = float(G(z, label)["image"].std())
        factor = max(round(SMOKE_IMAGE_STD / max(std, 1e-6) * 64), 1) / 64
        for b in range(G.synthesis.last_block + 1):
            getattr(G.synthesis, f"output{b}").weight.mul_(factor)
    return G


def smoke_discriminator(seed: int, resolution: int = 256, **kwargs: Any) -> StyleGANDiscriminator:
    """Seeded random discriminator of the real architecture; eval mode."""
    return StyleGANDiscriminator(resolution, init_generator=_seeded(seed), **kwargs).eval()


OHLORA_RESOLUTION = 256  # the pretrained StyleGAN's (celeba-partial-256x256); every stage works at it
OHLORA_Z_DIM = 512


def check_generator(
    G: StyleGANGenerator,
    source: str,
    *,
    conditional: bool | None = None,
    resolution: int = OHLORA_RESOLUTION,
    z_space_dim: int = OHLORA_Z_DIM,
    hint: str = "",
) -> StyleGANGenerator:
    """`G` itself if it is the kind of generator asked for — `resolution`, `z_space_dim`, label-conditioned
    (fine-tuned) or not when `conditional` says — else CheckpointError naming `source`, what it is, what was
    expected and `hint` (what to pass instead). A wrong kind otherwise fails only at its first forward
    (conditional vs not) or silently makes images of another size."""

    def fail(what: str, expected: str) -> None:
        raise CheckpointError(f"{source} is {what}; expected {expected}" + (f" ({hint})" if hint else ""))

    if G.resolution != resolution:
        fail(f"a {G.resolution}x{G.resolution} generator", f"{resolution}x{resolution}, the pretrained StyleGAN's size")
    if G.z_space_dim != z_space_dim:
        fail(f"a generator of z size {G.z_space_dim}", f"z of {z_space_dim} values")
    if conditional is True and not G.label_size:
        fail("an unconditional (pretrained) generator", "a fine-tuned, label-conditioned one")
    if conditional is False and G.label_size:
        fail(f"a fine-tuned (label-conditioned, {G.label_size} labels) generator", "the pretrained, unconditional one")
    return G


def load_checked_generator(
    path: str | os.PathLike, *, conditional: bool | None = None, device: str | torch.device = "cpu", hint: str = ""
) -> StyleGANGenerator:
    """`load_generator(path)` then `check_generator` (256x256, z 512, conditional as asked), naming the file."""
    return check_generator(load_generator(path, device=device), str(path), conditional=conditional, hint=hint)
