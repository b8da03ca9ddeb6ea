"""Conditional G/D from a pretrained (or earlier fine-tuned) checkpoint, as the original built them.

The original (`create_restructured_stylegan` in run_stylegan_fine_tuning.py / _v4.py) builds the
label-conditioned classes, deletes the checkpoint entries whose shapes change (G `mapping.dense0.weight`,
for v4 also `mapping.label_weight`; D `layer14.weight/bias`) and loads the rest with `strict=False`,
so the deleted and the new layers keep their fresh initialisation (`randn`, with the equalised-lr
scaling; zero bias). Here the fresh values come from a seeded generator, and the partial load is
checked: anything missing or unexpected beyond those keys is an error naming the source.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ohlora_core.io import CheckpointError
from ohlora_core.stylegan import StyleGANDiscriminator, StyleGANGenerator
from ohlora_core.stylegan.checkpoint import infer_discriminator_args, infer_generator_args

from .variants import GanVariant

NEW_GENERATOR_KEYS = ("mapping.label_weight",)  # absent from an unconditional checkpoint


def _seeded(seed: int, name: str) -> torch.Generator:
    from ohlora_core.seeding import derive_seed

    return torch.Generator().manual_seed(derive_seed(seed, "restructure", name))


def load_partial(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    drop: tuple[str, ...],
    new: tuple[str, ...],
    source: str,
) -> list[str]:
    """Load `state_dict` without the `drop` keys; only `drop` and `new` keys may stay unloaded.
    Returns the names that kept their fresh initialisation."""
    own = model.state_dict()
    kept = {k: v for k, v in state_dict.items() if k not in drop}
    missing = sorted(set(own) - set(kept))
    unexpected = sorted(set(kept) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(kept[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(kept)
        if kept[k].shape != own[k].shape
    )
    surprising = [k for k in missing if k not in drop and k not in new]
    if surprising or unexpected or shapes:
        raise CheckpointError(
            f"{source} cannot be restructured into {type(model).__name__}: "
            f"missing {surprising[:10]}, unexpected {unexpected[:10]}, shapes {shapes[:10]}"
        )
    model.load_state_dict(kept, strict=False)
    return missing


def conditional_generator(
    state_dict: Mapping[str, torch.Tensor], variant: GanVariant, seed: int, source: str = "generator"
) -> StyleGANGenerator:
    """`variant`'s label-conditioned G: the checkpoint's weights, the variant's dropped keys and the
    label embedding freshly initialised (seeded)."""
    args = {k: v for k, v in infer_generator_args(state_dict).items() if k not in ("label_size", "label_embed_dim")}
    G = StyleGANGenerator(
        **args,
        label_size=variant.label_size,
        label_embed_dim=variant.label_embed_dim,
        init_generator=_seeded(seed, f"{variant.name}-G"),
    )
    load_partial(G, state_dict, variant.drop_generator_keys, NEW_GENERATOR_KEYS, source)
    return G


def conditional_discriminator(
    state_dict: Mapping[str, torch.Tensor], variant: GanVariant, seed: int, source: str = "discriminator"
) -> StyleGANDiscriminator:
    """`variant`'s D: the label concatenated after the last hidden dense layer into a fresh
    `(hidden + labels) -> 1` head (seeded); minibatch-std group from the variant."""
    args = {k: v for k, v in infer_discriminator_args(state_dict).items() if k not in ("label_size", "label_mode")}
    D = StyleGANDiscriminator(
        **args,
        label_size=variant.label_size,
        label_mode="concat",
        minibatch_std_group_size=variant.mbstd_group,
        init_generator=_seeded(seed, f"{variant.name}-D"),
    )
    load_partial(D, state_dict, variant.drop_discriminator_keys, (), source)
    return D
