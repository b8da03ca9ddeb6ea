"""One resource for where and how the pipeline runs.

`OhloraSettings` holds the environment (storage root, device, checkpoint locations,
batch size) and the few run-wide knobs the user asked to set in one place (mode,
seed, image count). Edit it in the Launchpad under `resources: settings: config:`,
or with OHLORA_* environment variables, which the defaults read.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from ohlora_core.store import RecipeDir

F = TypeVar("F")
REPO_ROOT = Path(__file__).resolve().parents[1]
# Full mode runs on these (see README "Full mode").
FULL_N_IMAGES = 10_000
FULL_N_LABELLED = 2_000
# Smoke mode: the same code paths at sizes a 2-core CPU finishes in minutes.
SMOKE_N_IMAGES = 40
SMOKE_N_LABELLED = 30
SMOKE_MAX_EPOCHS = 2
SMOKE_BANNER = ("smoke mode: deterministic random weights and stand-in labels — the images are noise and every "
                "figure is meaningless; the code paths are the real ones (README 'Full mode' for real checkpoints)")


class SettingsError(ValueError):
    """A setting cannot work on this machine or contradicts another one."""


def check_device(device: str) -> None:
    """`device` names a torch device that exists here, or SettingsError says what to set instead."""
    from ohlora_core.device import DeviceError
    from ohlora_core.device import check_device as check

    try:
        check(device, "settings.device")
    except DeviceError as exc:
        raise SettingsError(str(exc)) from None


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


class OhloraSettings(dg.ConfigurableResource):
    """Where artifacts live, which weights to use, and on what device."""

    mode: Literal["auto", "smoke", "full"] = Field(
        default_factory=lambda: _env("OHLORA_MODE", "auto"),
        description="full: real checkpoints; smoke: deterministic random weights and stand-in labels; "
        "auto: full when the StyleGAN checkpoint exists, else smoke.",
    )
    storage_root: str = Field(
        default_factory=lambda: _env("OHLORA_STORAGE", str(REPO_ROOT / "storage")),
        description="Root for models/, labels/ and artifacts/ (absolute, or relative to the repo).",
    )
    device: str = Field(
        default_factory=lambda: _env("OHLORA_DEVICE", "auto"),
        description="torch device for model work: auto (cuda when available), cpu, cuda, cuda:1, ...",
    )
    seed: int = Field(default=0, ge=0, description="Seed of every random choice: z (with the image index), inits, splits.")
    n_images: int | None = Field(default=None, gt=0,
                                 description="Images to generate; unset = 10,000 (full) / 40 (smoke).")
    n_labelled: int | None = Field(default=None, gt=1, description="Hand-labelled images (rows the label CSV must "
                                   "hold); unset = 2,000 (full) / 30 (smoke).")
    batch_size: int = Field(default=16, gt=0, description="Inference batch size for generation and parsing.")
    tf32: bool = Field(
        default=True,
        description="Let CUDA convolutions use TF32 (PyTorch's default; ~±1 grey level on ~5% of pixels). "
        "false = full fp32, matching the CPU/genforce values, ~4.5x slower generation.",
    )
    stylegan_checkpoint: str = Field(
        default="models/stylegan_celeba_partial256.pth",
        description="genforce celeba_partial-256x256 checkpoint, relative to storage_root.",
    )
    facexformer_checkpoint: str = Field(
        default="models/facexformer/ckpts/model.pt", description="Official FaceXFormer checkpoint, relative to storage_root."
    )
    hand_labels_csv: str = Field(
        default="labels/synthesize_results_quality_and_gender.csv",
        description="Hand labels (img_name,quality,gender), relative to storage_root.",
    )

    def setup_for_execution(self, context) -> None:  # noqa: ANN001
        """Runs before any step of a run: a bad setting stops the run before a file is touched; the
        run's log says once which mode it runs in."""
        self.validate()
        if context.log is not None:
            context.log.info(SMOKE_BANNER if self.is_smoke else f"full mode: real checkpoints under {self.root / 'models'}")

    def validate(self) -> None:
        """Check what pydantic cannot: the device exists here, counts agree. Raises SettingsError."""
        if self.n_labelled is not None and self.n_labelled > self.image_count:
            raise SettingsError(f"settings.n_labelled={self.n_labelled} is more than the {self.image_count} images "
                                f"generated (settings.n_images); lower n_labelled or raise n_images")
        check_device(self.device)

    # -- derived -----------------------------------------------------------------
    @property
    def root(self) -> Path:
        root = Path(self.storage_root)
        return root if root.is_absolute() else REPO_ROOT / root

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    @property
    def resolved_mode(self) -> Literal["smoke", "full"]:
        if self.mode == "auto":
            return "full" if self.path(self.stylegan_checkpoint).is_file() else "smoke"
        return self.mode

    @property
    def is_smoke(self) -> bool:
        return self.resolved_mode == "smoke"

    @property
    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def image_count(self) -> int:
        if self.n_images is not None:
            return self.n_images
        return SMOKE_N_IMAGES if self.is_smoke else FULL_N_IMAGES

    @property
    def labelled_count(self) -> int:
        """Label rows expected: the setting, else the mode's default (capped by the image count)."""
        if self.n_labelled is not None:
            return self.n_labelled
        return min(SMOKE_N_LABELLED if self.is_smoke else FULL_N_LABELLED, self.image_count)

    def epoch_cap(self, configured: int | None) -> int | None:
        """Training epochs: the configured cap, else none (full) / SMOKE_MAX_EPOCHS (smoke)."""
        if configured is not None:
            return configured
        return SMOKE_MAX_EPOCHS if self.is_smoke else None

    def artifact_dir(self, asset: str) -> Path:
        """storage/artifacts/<mode>/<asset>/ — smoke and full artifacts never mix."""
        return self.root / "artifacts" / self.resolved_mode / asset

    def stage(self, files_cls: type[F], recipe: dict) -> tuple["RecipeDir", F]:
        """The recipe folder an asset writes into (promote it when complete) and its file names."""
        from ohlora_core.store import RecipeDir

        stage = RecipeDir(self.artifact_dir(files_cls.NAME), {**recipe, "mode": self.resolved_mode})
        return stage, files_cls(stage.open())

    def current(self, files_cls: type[F]) -> F:
        """The complete outputs of an upstream asset (an error if it was never materialized)."""
        from ohlora_core.store import current_dir

        return files_cls(current_dir(self.artifact_dir(files_cls.NAME)))

    def data_version(self, files_cls: type) -> str:
        """The data version an upstream asset recorded for its current outputs (for recipes)."""
        from ohlora_core.store import current_digest

        return current_digest(self.artifact_dir(files_cls.NAME))

    def relative(self, path) -> str:
        """A path as tables store it: relative to the storage root."""
        from ohlora_core.artifacts import relative_to_root

        return relative_to_root(path, self.root)

    def require_file(self, relative: str, what: str) -> Path:
        """Full-mode input file, or an error that says where to put it."""
        p = self.path(relative)
        if not p.is_file():
            raise FileNotFoundError(
                f"{what} not found at {p}. Put it there (see README 'Full mode'), point "
                f"settings to it, or run in smoke mode (settings.mode: smoke)."
            )
        return p

    def load_model(self, smoke, load, checkpoint: str, what: str):
        """(model, weights id): `smoke(seed)` in smoke mode, else `load(path)` of the checkpoint
        (a missing file says where to put it). The id names the smoke init or the checkpoint's
        path and sha256, so recipes notice a replaced file."""
        if self.is_smoke:
            return smoke(self.seed), f"{smoke.__name__}(seed={self.seed})"
        from ohlora_core.io import sha256_file

        path = self.require_file(checkpoint, what)
        return load(path), f"{path} (sha256 {sha256_file(path)})"

    def mode_metadata(self) -> dict:
        return {
            "mode": self.resolved_mode,
            "weights": "deterministic random weights (smoke mode) — NOT real faces"
            if self.is_smoke
            else "real checkpoints",
            "device": self.resolved_device,
            "seed": self.seed,
        }
