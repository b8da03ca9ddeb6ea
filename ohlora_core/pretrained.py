"""The pipeline's external inputs: the real checkpoints (full mode) or, in smoke mode, deterministic random
weights of the same architectures; and the hand-label file.

Every loader returns the model with a *weights id*: the smoke init (`smoke_generator(seed=0)`) or the
checkpoint's path and sha256, so recipes notice a replaced file. A missing file says where to put it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ohlora_core.layout import FACEXFORMER_CHECKPOINT, STYLEGAN_CHECKPOINT, StorageLayout

RESOLUTION = 256
Z_DIM = 512


class MissingInput(FileNotFoundError):
    """A full-mode input file is not where the settings say."""


@dataclass(frozen=True)
class Sources:
    """Where the real inputs are, under a storage layout (paths relative to its root, or absolute)."""

    layout: StorageLayout
    stylegan_checkpoint: str = STYLEGAN_CHECKPOINT
    facexformer_checkpoint: str = FACEXFORMER_CHECKPOINT
    hand_labels_csv: str | None = None  # None: the mode's label file (StorageLayout.labels_csv)

    @property
    def smoke(self) -> bool:
        return self.layout.mode == "smoke"

    def require(self, relative: str | Path, what: str) -> Path:
        """A full-mode input, or MissingInput saying where to put it."""
        p = self.layout.path(relative)
        if not p.is_file():
            raise MissingInput(
                f"{what} not found at {p}. Put it there (README 'Full mode'), point the settings at it, "
                f"or run the smoke code location (ohlora_dagster.smoke)."
            )
        return p

    def labels_csv(self) -> Path:
        return self.layout.path(self.hand_labels_csv) if self.hand_labels_csv else self.layout.labels_csv

    def required_files(self, assets: set[str]) -> dict[str, str]:
        """{path: what} of the inputs that materializing `assets` reads in this mode (none in smoke mode)."""
        if self.smoke:
            return {}
        need = {}
        if assets & {"raw_images", "latent_w", "stylegan_finetune_v1", "controllability_report"}:
            need[str(self.layout.path(self.stylegan_checkpoint))] = (
                "StyleGAN checkpoint (genforce celeba_partial-256x256)"
            )
        if "segmentation_maps" in assets:
            need[str(self.layout.path(self.facexformer_checkpoint))] = "FaceXFormer checkpoint (state_dict_backbone)"
        if "hand_labels" in assets:
            need[str(self.labels_csv())] = "hand-label CSV (img_name,quality,gender)"
        return need

    # -- models --------------------------------------------------------------------------------------------------
    def stylegan(self, seed: int):
        """(pretrained generator, weights id); a checkpoint of another resolution or z size, or a fine-tuned
        (label-conditioned) one, is refused here, naming the file, before any output is touched."""
        from ohlora_core.io import sha256_file
        from ohlora_core.stylegan import load_generator, smoke_generator
        from ohlora_core.stylegan.checkpoint import check_generator

        if self.smoke:
            return smoke_generator(seed), f"smoke_generator(seed={seed})"
        path = self.require(self.stylegan_checkpoint, "StyleGAN checkpoint (genforce celeba_partial-256x256)")
        G, weights = load_generator(path, key="generator"), f"{path} (sha256 {sha256_file(path)})"
        check_generator(
            G,
            weights,
            conditional=False,
            resolution=RESOLUTION,
            z_space_dim=Z_DIM,
            hint="ohlora needs genforce's celeba_partial-256x256 model at store.stylegan_checkpoint",
        )
        return G, weights

    def stylegan_start(self, seed: int) -> dict:
        """What fine-tuning v1 starts from: {'generator', 'discriminator' (state_dicts), 'id'}."""
        from ohlora_core.io import load_checkpoint, sha256_file
        from ohlora_core.stylegan import smoke_discriminator, smoke_generator
        from ohlora_core.stylegan.checkpoint import select_state_dict

        if self.smoke:
            return {
                "generator": smoke_generator(seed).state_dict(),
                "discriminator": smoke_discriminator(seed).state_dict(),
                "id": f"smoke(seed={seed})",
            }
        path = self.require(self.stylegan_checkpoint, "StyleGAN checkpoint (genforce celeba_partial-256x256)")
        ckpt = load_checkpoint(path)
        return {
            "generator": select_state_dict(ckpt, "generator", str(path)),
            "discriminator": select_state_dict(ckpt, "discriminator", str(path)),
            "id": f"{path} (sha256 {sha256_file(path)})",
        }

    def facexformer(self, seed: int, device: str):
        """(FaceXFormer in eval mode on `device`, weights id)."""
        from ohlora_core.io import sha256_file
        from ohlora_core.segmentation.facexformer import load_facexformer, smoke_facexformer

        if self.smoke:
            return smoke_facexformer(seed).to(device).eval(), f"smoke_facexformer(seed={seed})"
        path = self.require(self.facexformer_checkpoint, "FaceXFormer checkpoint (state_dict_backbone)")
        return load_facexformer(path).to(device).eval(), f"{path} (sha256 {sha256_file(path)})"
