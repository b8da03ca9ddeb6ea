"""The small CNNs of the original: gender, quality and the 6-head property-score CNN.

Layer shapes and module attribute names follow the original code
(`cnn/cnn_gender.py`, `cnn/cnn_quality.py`, `stylegan_modified/stylegan_generator_v2_cnn.py`), so the
state_dict keys are identical (`conv1.0.weight`, `fc1.0.weight`, `fc_final.0.weight`,
`eyes_score_cnn.conv1.0.weight`, ...) and the original checkpoints load with strict key matching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMG_SIZE = 256
POOL = "P"

# Conv stack layouts: an int is a 3x3 conv (stride 1, no padding) to that many channels followed by
# LeakyReLU(0.01) and Dropout2d(0.05); "P" is MaxPool2d(2, 2).
GENDER_LAYOUT = (32, 64, POOL, 128, POOL, 128, POOL, 256, POOL, 256, POOL)
QUALITY_LAYOUT = (32, 64, POOL, 128, POOL, 128, POOL, 256)
EYES_LAYOUT = MOUTH_LAYOUT = (32, 64, POOL, 64, POOL, 128, POOL)
POSE_LAYOUT = (32, 64, POOL, 64, POOL, 128, 128)
HAIR_COLOR_LAYOUT = (32, 64, POOL, 64, POOL, 128, POOL, 128, POOL, 128, POOL)
HAIR_LENGTH_LAYOUT = BACKGROUND_LAYOUT = (32, 64, POOL, 64, POOL, 128, POOL, 128, POOL, 128)

# Quality looks at the top-centre band: rows 0..63, columns 64..191.
QUALITY_CROP = (slice(0, IMG_SIZE // 4), slice(IMG_SIZE // 4, 3 * IMG_SIZE // 4))

# Property-score CNN heads in output order: (attribute, rows, cols, layout, outputs).
# Output order = all_scores_v2.csv order: eyes, hair_color, hair_length, mouth, pose, back mean, back std.
PROPERTY_HEADS: tuple[tuple[str, slice, slice, tuple, int], ...] = (
    ("eyes_score_cnn", slice(96, 144), slice(64, 192), EYES_LAYOUT, 1),
    ("hair_color_score_cnn", slice(0, 256), slice(0, 256), HAIR_COLOR_LAYOUT, 1),
    ("hair_length_score_cnn", slice(128, 256), slice(0, 256), HAIR_LENGTH_LAYOUT, 1),
    ("mouth_score_cnn", slice(160, 208), slice(96, 160), MOUTH_LAYOUT, 1),
    ("pose_score_cnn", slice(112, 160), slice(88, 168), POSE_LAYOUT, 1),
    ("background_score_cnn", slice(0, 128), slice(0, 256), BACKGROUND_LAYOUT, 2),
)

_PROPERTY_REGISTRATION_ORDER = (
    "eyes_score_cnn",
    "mouth_score_cnn",
    "pose_score_cnn",
    "hair_color_score_cnn",
    "hair_length_score_cnn",
    "background_score_cnn",
)


def conv_output_shape(layout: Sequence, height: int, width: int) -> tuple[int, int, int]:
    """(channels, height, width) after a conv stack layout on an input of the given size."""
    channels = 3
    for item in layout:
        if item == POOL:
            height, width = height // 2, width // 2
        else:
            channels, height, width = item, height - 2, width - 2
    return channels, height, width


class _ConvHead(nn.Module):
    """Conv stack -> flatten -> Linear -> Tanh -> Dropout(0.45) -> Linear (-> Sigmoid).

    Attributes are named conv1..convN / pool1..poolM / fc1 / fc_final exactly as in the original.
    """

    def __init__(self, layout: Sequence, in_hw: tuple[int, int], hidden: int, out: int, sigmoid: bool):
        super().__init__()
        self._order: list[str] = []
        channels, n_conv, n_pool = 3, 0, 0
        for item in layout:
            if item == POOL:
                n_pool += 1
                name, layer = f"pool{n_pool}", nn.MaxPool2d(2, 2)
            else:
                n_conv += 1
                name = f"conv{n_conv}"
                layer = nn.Sequential(nn.Conv2d(channels, item, kernel_size=3), nn.LeakyReLU(), nn.Dropout2d(0.05))
                channels = item
            setattr(self, name, layer)
            self._order.append(name)
        c, h, w = conv_output_shape(layout, *in_hw)
        self.flat_features = c * h * w
        self.fc1 = nn.Sequential(nn.Linear(self.flat_features, hidden), nn.Tanh(), nn.Dropout(0.45))
        final = nn.Linear(hidden, out)
        # gender/quality wrap the last Linear in a Sequential with Sigmoid (key fc_final.0.*);
        # the property heads use a bare Linear (key fc_final.*), as the original.
        self.fc_final = nn.Sequential(final, nn.Sigmoid()) if sigmoid else final

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._order:
            x = getattr(self, name)(x)
        return self.fc_final(self.fc1(x.flatten(1)))


class GenderCNN(_ConvHead):
    """Whole 256x256 image in [0, 1] -> P(female). Flatten 256*6*6 = 9216."""

    def __init__(self):
        super().__init__(GENDER_LAYOUT, (IMG_SIZE, IMG_SIZE), 512, 1, sigmoid=True)


class QualityCNN(_ConvHead):
    """256x256 image in [0, 1]; looks at rows 0..63, cols 64..191 -> P(good). Flatten 256*4*12 = 12288."""

    def __init__(self):
        rows, cols = QUALITY_CROP
        super().__init__(QUALITY_LAYOUT, (rows.stop - rows.start, cols.stop - cols.start), 512, 1, sigmoid=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = QUALITY_CROP
        return super().forward(x[:, :, rows, cols])


class PropertyScoreCNN(nn.Module):
    """Six independent heads on fixed crops of the 256x256 image (in [-1, 1]) -> 7 linear outputs."""

    def __init__(self):
        super().__init__()
        heads = {h[0]: h for h in PROPERTY_HEADS}
        for name in _PROPERTY_REGISTRATION_ORDER:  # keeps state_dict key order (and init order) as the original
            _, rows, cols, layout, out = heads[name]
            setattr(
                self, name, _ConvHead(layout, (rows.stop - rows.start, cols.stop - cols.start), 256, out, sigmoid=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x[:, :, rows, cols]) for name, rows, cols, _, _ in PROPERTY_HEADS], dim=1)


MODEL_CLASSES = {"gender": GenderCNN, "quality": QualityCNN}
