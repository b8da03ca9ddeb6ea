"""Where everything lives under a storage root, per mode: the one home of the storage layout.

    <root>/models/...                             real checkpoints (full mode's inputs)
    <root>/labels/synthesize_results_quality_and_gender.csv         full mode's hand labels
    <root>/labels/smoke/synthesize_results_quality_and_gender.csv   labels made on smoke images
    <root>/artifacts/<mode>/<asset>/current/...   every asset's outputs (`ohlora_core.store`)

Smoke and full mode never share a file: each has its own artifacts and its own label file, so a
label typed on a smoke (noise) image can never reach the full pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

Mode = Literal["smoke", "full"]
MODES: tuple[Mode, ...] = ("smoke", "full")
F = TypeVar("F")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO_ROOT / "storage"
STYLEGAN_CHECKPOINT = "models/stylegan_celeba_partial256.pth"
FACEXFORMER_CHECKPOINT = "models/facexformer/ckpts/model.pt"
LABELS_NAME = "synthesize_results_quality_and_gender.csv"


def storage_root(given: str | os.PathLike | None = None) -> Path:
    """The storage root: `given`, else $OHLORA_STORAGE, else the repository's storage/; a relative path
    is taken relative to the repository (steps run with other working directories)."""
    root = Path(given or os.environ.get("OHLORA_STORAGE") or DEFAULT_ROOT)
    return root if root.is_absolute() else REPO_ROOT / root


@dataclass(frozen=True)
class StorageLayout:
    """The paths of one mode under one storage root."""

    root: Path
    mode: Mode

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        object.__setattr__(self, "root", Path(self.root))

    def path(self, relative: str | os.PathLike) -> Path:
        """A path from settings: absolute as given, else under the root."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts" / self.mode

    def artifact_dir(self, asset: str) -> Path:
        return self.artifacts / asset

    @property
    def labels_csv(self) -> Path:
        """The hand-label file of this mode (`ohlora label` writes it; full mode's `hand_labels` reads it)."""
        folder = self.root / "labels"
        return folder / LABELS_NAME if self.mode == "full" else folder / "smoke" / LABELS_NAME

    def current(self, files_cls: type[F]) -> F:
        """An asset's complete outputs in this mode (`MissingArtifact` if it was never materialized)."""
        from ohlora_core.store import current_dir

        return files_cls(current_dir(self.artifact_dir(files_cls.NAME)))

    def has(self, files_cls) -> bool:
        return (self.artifact_dir(files_cls.NAME) / "current").exists()


def resolve_mode(mode: str, root: Path, stylegan_checkpoint: str = STYLEGAN_CHECKPOINT) -> Mode:
    """auto -> full when the real StyleGAN checkpoint is present, else smoke."""
    if mode == "auto":
        p = Path(stylegan_checkpoint)
        return "full" if (p if p.is_absolute() else root / p).is_file() else "smoke"
    if mode not in MODES:
        raise ValueError(f"mode must be auto, smoke or full, got {mode!r}")
    return mode  # type: ignore[return-value]
