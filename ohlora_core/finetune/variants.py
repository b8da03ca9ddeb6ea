"""The fine-tuning versions as data: what each one trains, on which labels, with which choices.

Defaults are the original's (stylegan_modified/fine_tuning*.py, run_stylegan_fine_tuning*.py);
anything a version does differently is a field, not a code path.

Each record names its training task by class (`task`, resolved by `finetune.train`, as stylegan2-ada
names its loss by `class_name`), the inputs that task needs (`inputs`, fields of `finetune.TrainInputs`),
its freeze groups (`g_trainable`: top-level parameter-name groups, split by `loop.split_parameters`)
and the label rows of its per-epoch sample grid (`sample_labels`). The task is named, not imported,
so this module stays free of torch (the asset layer reads presets from it without loading models).
`task` and `inputs` are class constants: a version's task follows from its record type, and they
stay out of `dataclasses.asdict` (the recipe) as they are not settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ohlora_core.scores.common import SCORE_NAMES

from . import protocol


@dataclass(frozen=True)
class GanVariant:
    """A label-conditioned StyleGAN fine-tuning run (v1, v4)."""

    task: ClassVar[str] = "ohlora_core.finetune.gan.GanTask"
    inputs: ClassVar[tuple[str, ...]] = ("generator", "discriminator", "images", "labels")

    name: str
    labels: tuple[str, ...]  # property names, in label-vector order
    score_asset: str  # the table the labels come from (file names: ohlora_core.artifacts)
    label_embed_dim: int = 16  # label @ label_weight [L, 16], concatenated to z
    drop_generator_keys: tuple[str, ...] = ("mapping.dense0.weight",)  # re-initialised when restructuring
    drop_discriminator_keys: tuple[str, ...] = ("layer14.weight", "layer14.bias")
    g_trainable: tuple[str, ...] = ("mapping",)  # top-level parameter-name groups that train
    d_trainable: tuple[str, ...] = ("layer12", "layer13", "layer14")  # D's last conv, dense and head at 256
    mbstd_group: int = 16  # minibatch-std group (effective min(16, batch))
    batch_size: int = 16
    g_lr: float = 1e-4  # AdamW (betas .9/.999, eps 1e-8, weight decay 0.01)
    d_lr: float = 1e-4
    r1_gamma: float = 10.0  # R1 on reals; d_loss += gamma / 2 * mean ||grad||^2
    g_repeat_ratio: float = 2.0  # G steps again while g_loss >= ratio * d_loss ...
    g_repeat_max: int = 4  # ... at most this many G steps per D step
    style_mixing_prob: float = 0.9  # G trains in train mode: mixing + random noise, as the original
    randomize_noise: bool = True
    w_moving_decay: float = 0.995
    matching_aware: bool = False  # fix of the original's flaw (see loss.GanLoss); off by default
    sample_labels: tuple[tuple[float, ...], ...] = ()  # label rows of the per-epoch sample grid

    @property
    def label_size(self) -> int:
        return len(self.labels)

    def with_overrides(self, **kw) -> GanVariant:
        """A copy with some fields replaced (run config); unknown names are an error."""
        return _replace_known(self, kw)


V1 = GanVariant(
    name="v1",
    labels=SCORE_NAMES,
    score_asset="property_scores_v1",
    # the original's inference test during fine-tuning (run_inference_test_during_finetuning)
    sample_labels=(
        (1.5, 1.5, 1.1, -1.1, -1.2, 1.2, -1.0),
        (-1.5, 1.5, 1.1, -1.1, -1.2, 1.2, -1.0),
        (-1.5, -1.5, 1.1, -1.1, -1.2, 1.2, -1.0),
        (-1.5, -1.5, -2.0, -1.1, -1.2, 1.2, -1.0),
        (-1.5, -1.5, -2.0, 1.8, -1.2, 1.2, -1.0),
        (-1.5, -1.5, -2.0, 1.8, 2.0, 1.2, -1.0),
        (-1.5, -1.5, -2.0, 1.8, 2.0, -1.6, -1.0),
    ),
)

# v4: v1 re-trained on eyes/mouth/pose from the property CNN. The original's README says style mixing
# is off for v4, but its gen_train_args still pass style_mixing_prob=0.9: kept (a setting).
V4 = replace(
    V1,
    name="v4",
    labels=("eyes", "mouth", "pose"),
    score_asset="property_scores_v2_cnn",
    drop_generator_keys=("mapping.dense0.weight", "mapping.label_weight"),
    batch_size=8,
    # corners of the original's 50-combination test (eyes +-1.8, mouth -1.2..1.6, pose -1.2..3.6)
    sample_labels=(
        (-1.8, -1.2, 0.0),
        (1.8, -1.2, 0.0),
        (-1.8, 1.6, 0.0),
        (1.8, 1.6, 0.0),
        (0.0, 0.0, -1.2),
        (0.0, 0.0, 3.6),
    ),
)


@dataclass(frozen=True)
class CnnLoopVariant:
    """StyleGAN-FineTune-v2: v1's generator trained through the property-score CNN (no discriminator).

    Loss `MSE(cnn(G(z, y))[:, :6], y[:, :6])` with random N(0, 1) labels; steps come in groups of 50
    with the curriculum `z = r z_fixed + (1 - r) z_new` (labels likewise), `r = 0.9 ** group`; early
    stopping after 100 groups without a lower group-mean loss; the best group's generator is kept.
    """

    task: ClassVar[str] = "ohlora_core.finetune.cnn_loop.CnnLoopTask"
    inputs: ClassVar[tuple[str, ...]] = ("generator", "property_cnn")

    name: str = "v2"
    labels: tuple[str, ...] = SCORE_NAMES
    loss_labels: int = 6  # the first six outputs (background_std excluded)
    label_embed_dim: int = 16
    # The original re-initialises v1's learnt mapping.dense0.weight (create_stylegan_finetune_v1
    # deletes it before loading v1): kept as the default; `keep_v1_dense0=True` is the fix.
    keep_v1_dense0: bool = False
    # Its freeze call is commented out, so G *and* the CNN train; `freeze=True` trains only G's
    # `g_trainable` groups (the mapping network) with the CNN frozen, as its README intended.
    freeze: bool = False
    g_trainable: tuple[str, ...] = ("mapping",)
    cnn_eval: bool = False  # the original leaves dropout on (train mode); True = eval
    lr: float = 1e-5
    cosine_t_max: int = 20  # stepped once per step group
    batch_size: int = 16
    step_group_size: int = 50
    curriculum_base: float = 0.9
    patience: int = 100  # step groups without a better group-mean loss
    # the original's test labels during v2 (test_create_output_images): 7 rows, background_std 0
    sample_labels: tuple[tuple[float, ...], ...] = (
        (1.2, 1.2, 1.2, -1.2, -1.2, 1.2, 0.0),
        (-1.2, 1.2, 1.2, -1.2, -1.2, 1.2, 0.0),
        (-1.2, -1.2, 1.2, -1.2, -1.2, 1.2, 0.0),
        (-1.2, -1.2, -1.2, -1.2, -1.2, 1.2, 0.0),
        (-1.2, -1.2, -1.2, 1.2, -1.2, 1.2, 0.0),
        (-1.2, -1.2, -1.2, 1.2, 1.2, 1.2, 0.0),
        (-1.2, -1.2, -1.2, 1.2, 1.2, -1.2, 0.0),
    )

    @property
    def label_size(self) -> int:
        return len(self.labels)

    @property
    def drop_generator_keys(self) -> tuple[str, ...]:
        return () if self.keep_v1_dense0 else ("mapping.dense0.weight",)

    def with_overrides(self, **kw) -> CnnLoopVariant:
        return _replace_known(self, kw)


@dataclass(frozen=True)
class CvaeVariant:
    """StyleGAN-FineTune-v3: a conditional "VAE" whose decoder is v1's generator (label embedding 24).

    An encoder maps (real image, labels) to mu / logvar; z = mu + eps exp(logvar / 2); the loss is
    `C + G + 0.2 M + 0.05 V` as coded: C = mean of the eyes / mouth / pose MSEs of the property CNN on
    G(z, y), G = MSE(gender CNN fold 0 on G(z, y), 1), M = mean(mu^2), V = mean(logvar^2).
    """

    task: ClassVar[str] = "ohlora_core.finetune.cvae.CvaeTask"
    inputs: ClassVar[tuple[str, ...]] = ("generator", "property_cnn", "gender_cnn", "images", "labels")

    name: str = "v3"
    labels: tuple[str, ...] = SCORE_NAMES
    loss_labels: tuple[str, ...] = ("eyes", "mouth", "pose")
    label_embed_dim: int = 24  # dense0 536 -> w
    keep_v1_dense0: bool = False  # fix: keep v1's dense0 columns for z (the label columns change size)
    g_trainable: tuple[str, ...] = ("mapping",)  # G's groups that train (the encoder trains whole)
    cnn_eval: bool = False  # the original leaves both CNNs' dropout on, in loss and test
    gender_input_01: bool = False  # fix: feed the gender CNN [0, 1] images, as it was trained
    mapping_lr: float = 1e-4
    encoder_lr: float = 1e-5
    cosine_t_max: int = 10  # stepped once per epoch
    batch_size: int = 8
    mu_weight: float = 0.2
    logvar_weight: float = 0.05
    test_z: int = 30  # z's in the per-epoch test, from the last batches' mu / logvar
    patience: int = 40  # epochs without a lower train loss

    @property
    def label_size(self) -> int:
        return len(self.labels)

    @property
    def drop_generator_keys(self) -> tuple[str, ...]:
        return ("mapping.dense0.weight", "mapping.label_weight")

    @property
    def sample_labels(self) -> tuple[tuple[float, ...], ...]:
        """The per-epoch test's 50 combinations (one grid row of 10 per mouth value), for the first test z."""
        return tuple(tuple(map(float, row)) for row in protocol.label_rows(self.labels, np.float64))

    def with_overrides(self, **kw) -> CvaeVariant:
        return _replace_known(self, kw)


def _replace_known(variant, kw: dict):
    unknown = set(kw) - set(variant.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{variant.name}: unknown fine-tuning settings {sorted(unknown)}")
    return replace(variant, **kw)


V2 = CnnLoopVariant()
V3 = CvaeVariant()

VARIANTS = {v.name: v for v in (V1, V2, V3, V4)}
