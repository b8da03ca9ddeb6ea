"""Prepared upstream artifacts for asset-level tests: each function writes one asset's `current/` files under a
storage root, small and seeded, the way its producer lays them out (`ohlora_core.artifacts`), so a test can
materialize one asset on top of them without running the graph above it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ohlora_core import artifacts as a
from ohlora_core.generation import encode_jpeg
from ohlora_core.io import atomic_torch_save, atomic_write_bytes, atomic_write_csv, atomic_write_text, sha256_file
from ohlora_core.layout import StorageLayout
from ohlora_core.scores.common import SCORE_COLUMNS
from ohlora_core.store import Ledger, RecipeDir

FIXTURES = Path(__file__).parent / "fixtures"


def promote(root, mode: str, files_cls, write: Callable[[object], list[str]], digest: str | None = None):
    """Write an asset's files with `write(files)` (-> names to record) and make them its current outputs."""
    stage = RecipeDir(StorageLayout(root, mode).artifact_dir(files_cls.NAME), {"prepared by": "tests/upstream.py"})
    files = files_cls(stage.open())
    stage.promote(write(files), digest=digest)
    return StorageLayout(root, mode).current(files_cls)


def raw_images(root, mode: str, n: int, seed: int = 0) -> a.RawImages:
    """n smooth random 256x256 JPEGs (000000.jpg ...) with the manifest consumers check."""
    rng = np.random.default_rng(seed)

    def write(files: a.RawImages) -> list[str]:
        manifest = {}
        for i in range(n):
            low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            rgb = np.kron(low, np.ones((32, 32, 1), np.uint8))
            atomic_write_bytes(files.image(i), encode_jpeg(rgb))
            manifest[files.image_key(i)] = sha256_file(files.image(i))
        atomic_write_text(files.manifest, json_text(manifest))
        return [files.manifest.name]

    return promote(root, mode, a.RawImages, write)


def json_text(obj) -> str:
    import json

    return json.dumps(obj, indent=0, sort_keys=True)


def hand_labels(root, mode: str, n_labelled: int, seed: int = 0) -> a.HandLabels:
    from ohlora_core.cnn.labels import smoke_labels, write_hand_labels_csv

    def write(files: a.HandLabels) -> list[str]:
        atomic_write_text(files.csv, write_hand_labels_csv(smoke_labels(n_labelled, seed)))
        return [files.csv.name]

    return promote(root, mode, a.HandLabels, write)


def filtered_images(root, mode: str, numbers: list[int]) -> a.FilteredImages:
    def write(files: a.FilteredImages) -> list[str]:
        atomic_write_csv(files.table, pd.DataFrame({"img_no": numbers, "gender_score": 0.9, "quality_score": 0.95}))
        return [files.table.name]

    return promote(root, mode, a.FilteredImages, write)


def segmentation_maps(root, mode: str, numbers: list[int]) -> a.SegmentationMaps:
    """The scores fixture's parsing maps and face crops (known geometry) as the maps of `numbers`."""
    from ohlora_core.segmentation.pipeline import encode_png

    data = np.load(FIXTURES / "scores" / "maps.npz")

    def write(files: a.SegmentationMaps) -> list[str]:
        ledger = Ledger(files.dir)
        for k, no in enumerate(numbers):
            record = {"item": no, "input": "prepared", "files": {}}
            for path, png in (
                (files.parsing(no), encode_png(data["parsing"][k])),
                (files.face(no), encode_png(data["images"][k], rgb=True)),
            ):
                atomic_write_bytes(path, png)
                record["files"][path.relative_to(files.dir).as_posix()] = sha256_file(path)
            ledger.record([record])
        atomic_write_csv(files.parsed, pd.DataFrame({"img_no": numbers}))
        atomic_write_csv(files.no_face, pd.DataFrame({"img_no": []}))
        digest = ledger.write_manifest(files.manifest, numbers)
        return [files.manifest.name, files.parsed.name, files.no_face.name], digest

    stage = RecipeDir(StorageLayout(root, mode).artifact_dir(a.SegmentationMaps.NAME), {"prepared": True})
    outputs, digest = write(a.SegmentationMaps(stage.open()))
    stage.promote(outputs, digest=digest)
    return StorageLayout(root, mode).current(a.SegmentationMaps)


def score_table(root, mode: str, files_cls, numbers: list[int], seed: int = 0):
    """A normalised score table (the original's columns) for `numbers`: property_scores_v1/v2 or the CNN's."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {"img_no": numbers, "img_path": [f"artifacts/{mode}/raw_images/current/images/{n:06d}.jpg" for n in numbers]}
    )
    for col in SCORE_COLUMNS:
        table[col] = rng.standard_normal(len(numbers)).round(4)

    def write(files) -> list[str]:
        index = files_cls is not a.PropertyScoresV2Cnn  # all_scores*.csv keep the pandas index, as the original
        atomic_write_csv(files.table, table, index=index)
        return [files.table.name]

    return promote(root, mode, files_cls, write)


def property_score_cnn(root, mode: str, seed: int = 0) -> a.PropertyScoreCnn:
    from ohlora_core.cnn.models import PropertyScoreCNN

    torch.manual_seed(seed)
    state = PropertyScoreCNN().state_dict()

    def write(files: a.PropertyScoreCnn) -> list[str]:
        atomic_torch_save(files.checkpoint, state)
        return [files.checkpoint.name]

    return promote(root, mode, a.PropertyScoreCnn, write)


def gender_quality_models(root, mode: str, seed: int = 0) -> a.GenderQualityModels:
    from ohlora_core.cnn.models import MODEL_CLASSES

    def write(files: a.GenderQualityModels) -> list[str]:
        names = []
        for prop, cls in MODEL_CLASSES.items():
            for fold in range(5):
                torch.manual_seed(seed + fold)
                atomic_torch_save(files.model(prop, fold), cls().state_dict())
                names.append(str(files.model(prop, fold).relative_to(files.dir)))
        return names

    return promote(root, mode, a.GenderQualityModels, write)


def narrow_checkpoint(root, seed: int = 1) -> Path:
    """A genforce-layout 256x256 checkpoint with narrow widths (fast on a CPU) where full mode looks for the
    pretrained StyleGAN: the fine-tuning fixtures' weights."""
    import sys

    sys.path.insert(0, str(FIXTURES / "finetune"))
    import weights

    path = StorageLayout(root, "full").path("models/stylegan_celeba_partial256.pth")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "generator": weights.pretrained_generator_state(seed),
            "discriminator": weights.pretrained_discriminator_state(seed + 1),
        },
        path,
    )
    return path


def finetuned(root, mode: str, version: str, seed: int = 0):
    """A fine-tuned generator of `version` (narrow widths) as that asset's current generator file."""
    import sys

    sys.path.insert(0, str(FIXTURES / "finetune"))
    import weights

    from ohlora_core.finetune.generate import VERSION_LABELS

    embed = 24 if version == "v3" else 16
    state = weights.conditional_generator_state(seed, len(VERSION_LABELS[version]), embed)
    files_cls = a.FINETUNES[version]

    def write(files) -> list[str]:
        atomic_torch_save(files.generator, state)
        return [files.generator.name]

    return promote(root, mode, files_cls, write)
