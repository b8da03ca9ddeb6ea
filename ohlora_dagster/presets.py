"""Smoke and full defaults in one table (stylegan2-ada-pytorch's `cfg_specs` in train.py is the model).

Every run-config field left unset (None) takes its value from the mode's row here, once, in
`resolve`; asset bodies never branch on the mode. Full mode is the original's choices (its code and
logs); smoke mode is the same code paths at sizes a 2-core CPU finishes in minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# stage -> {field: (smoke, full)}; None = "no cap" / "the variant's own value"
TABLE: dict[str, dict[str, tuple[Any, Any]]] = {
    "run": {
        "n_images": (40, 10_000),
        "n_labelled": (30, 2_000),
    },
    "cnn": {  # gender / quality CNNs (smoke: one epoch, the gender CNN costs ~8 s an epoch per fold on a CPU)
        "max_epochs": (1, None),
        "enforce_thresholds": (False, True),  # smoke labels are random: no fold can reach a threshold
    },
    "segmentation": {
        # random-weight StyleGAN draws no faces: parse the centre box, where StyleGAN puts the face
        "fallback_box": ((64.0, 64.0, 192.0, 192.0), None),
    },
    "property_cnn": {
        "max_epochs": (2, None),
    },
    "gan_v1": {  # the original trained v1 40 epochs and v4 80 before stopping by hand (its logs)
        "epochs": (1, 40),
        "max_steps_per_epoch": (2, None),
        "batch_size": (2, None),
        "samples_per_label": (1, 10),
    },
    "gan_v4": {
        "epochs": (1, 80),
        "max_steps_per_epoch": (2, None),
        "batch_size": (2, None),
        "samples_per_label": (1, 10),
    },
    "cnn_loop": {  # v2
        "step_groups": (1, 1000),
        "max_steps_per_group": (2, None),
        "batch_size": (2, None),
        "samples_per_label": (1, 10),
    },
    "cvae": {  # v3: the original stopped by hand and adopted epoch 5 of 20
        "epochs": (1, 20),
        "max_steps_per_epoch": (2, None),
        "batch_size": (2, None),
        "test_z": (1, None),
    },
    "final_samples": {
        "n": (4, 20),
    },
    "report": {
        "z": (1, 30),
        "stride": (7, 1),  # smoke: every 7th of the 50 combinations: 8, every eyes, mouth and pose value
    },
}
MODES = ("smoke", "full")


def preset(mode: str, stage: str) -> dict[str, Any]:
    """The mode's defaults of one stage."""
    return {name: values[MODES.index(mode)] for name, values in TABLE[stage].items()}


def resolve(mode: str, stage: str, config: Mapping[str, Any] | Any = None) -> dict[str, Any]:
    """The stage's settings for a run: every field the run config set, else the mode's preset.
    `config` is a Dagster Config (or a mapping); its fields that the table does not know pass through."""
    given = dict(config) if isinstance(config, Mapping) else (config.model_dump() if config is not None else {})
    out = preset(mode, stage)
    out.update({k: v for k, v in given.items() if v is not None or k not in out})
    return out
