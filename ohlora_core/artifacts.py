"""The one home of every asset's file names.

Each class names the files of one asset inside a folder: the producer gets its recipe folder
(`store.RecipeDir.open()`), consumers get the asset's `current` folder (`store.current_dir`), and
both build paths through the same methods. Nothing else in the project spells these names.
Tables store paths relative to the storage root (`relative_to_root`), so a moved storage root
still reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


def relative_to_root(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """`path` as stored in tables: relative to the storage root, POSIX separators."""
    return Path(os.path.relpath(Path(path), Path(root))).as_posix()


@dataclass(frozen=True)
class AssetFiles:
    """The files of one asset inside `dir` (a recipe folder or the asset's `current` link)."""

    dir: Path
    NAME: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", Path(self.dir))

    @property
    def preview(self) -> Path:
        return self.dir / "preview.png"


class LatentCodes(AssetFiles):
    NAME = "latent_codes"

    @property
    def latents(self) -> Path:
        return self.dir / "latents.npy"


def image_name(index: int) -> str:
    return f"{index:06d}.jpg"


class RawImages(AssetFiles):
    NAME = "raw_images"
    IMAGES = "images"

    @property
    def images_dir(self) -> Path:
        return self.dir / self.IMAGES

    def image(self, index: int) -> Path:
        return self.images_dir / image_name(index)

    def image_key(self, index: int) -> str:
        """The image's name in the manifest (relative to the folder)."""
        return f"{self.IMAGES}/{image_name(index)}"

    @property
    def manifest(self) -> Path:
        """{images/000123.jpg: sha256} of every image of the current count."""
        return self.dir / "manifest.json"


class HandLabels(AssetFiles):
    NAME = "hand_labels"

    @property
    def csv(self) -> Path:
        return self.dir / "hand_labels.csv"


class GenderQualityModels(AssetFiles):
    NAME = "gender_quality_models"

    def model(self, prop: str, fold: int) -> Path:
        return self.dir / "models" / f"{prop}_model_{fold}.pt"

    def train_log(self, prop: str) -> Path:
        return self.dir / "log" / f"train_log_{prop}.csv"

    def epoch_detail(self, prop: str, fold: int) -> Path:
        return self.dir / "log" / f"epoch_detail_{prop}_{fold}.csv"


class GenderQualityScores(AssetFiles):
    NAME = "gender_quality_scores"

    @property
    def table(self) -> Path:
        return self.dir / "all_image_quality_and_gender.csv"

    def inference(self, prop: str) -> Path:
        return self.dir / "inference_result" / f"{prop}.csv"

    @property
    def detail(self) -> Path:
        return self.dir / "scores_detail.csv"


class FilteredImages(AssetFiles):
    NAME = "filtered_images"

    @property
    def table(self) -> Path:
        return self.dir / "filtered_images.csv"


class SegmentationMaps(AssetFiles):
    NAME = "segmentation_maps"
    RESULTS = "segmentation_results"

    @property
    def results_dir(self) -> Path:
        return self.dir / self.RESULTS

    def parsing(self, no: int) -> Path:
        return self.results_dir / f"parsing_{no:06d}.png"

    def face(self, no: int) -> Path:
        return self.results_dir / f"face_{no:06d}.png"

    def visualization(self, no: int) -> Path:
        return self.results_dir / f"parsing_visualization_{no:06d}.png"

    @property
    def manifest(self) -> Path:
        """{img_no: ledger record (input digest, files' sha256, no_face / fallback)}."""
        return self.dir / "manifest.json"

    @property
    def parsed(self) -> Path:
        return self.dir / "parsed_images.csv"

    @property
    def no_face(self) -> Path:
        return self.dir / "no_face_images.csv"


class PropertyScoresV1(AssetFiles):
    NAME = "property_scores_v1"
    CSV = "all_scores.csv"

    @property
    def table(self) -> Path:
        return self.dir / self.CSV

    @property
    def raw(self) -> Path:
        return self.dir / "raw_scores.csv"


class PropertyScoresV2(PropertyScoresV1):
    NAME = "property_scores_v2"
    CSV = "all_scores_v2.csv"


PROPERTY_SCORES = {"v1": PropertyScoresV1, "v2": PropertyScoresV2}


class PropertyScoreCnn(AssetFiles):
    NAME = "property_score_cnn"

    @property
    def checkpoint(self) -> Path:
        return self.dir / "stylegan_gen_fine_tuned_v2_cnn.pth"

    @property
    def train_log(self) -> Path:
        return self.dir / "train_log_v2_cnn.csv"

    @property
    def val_log(self) -> Path:
        return self.dir / "train_log_v2_cnn_val_log.csv"


class PropertyScoresV2Cnn(AssetFiles):
    NAME = "property_scores_v2_cnn"

    @property
    def table(self) -> Path:
        return self.dir / "all_scores_v2_cnn.csv"


class PropertyScoresV2VsCnn(AssetFiles):
    NAME = "property_scores_v2_vs_cnn"

    @property
    def table(self) -> Path:
        return self.dir / "all_scores_v2_vs_cnn.csv"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.csv"


class StyleganFinetuneV1(AssetFiles):
    """A GAN fine-tuning run: the original's checkpoint and log names, plus samples and a snapshot."""

    NAME = "stylegan_finetune_v1"
    GENERATOR = "stylegan_gen_fine_tuned_v1.pth"  # bare state_dicts, as the original saved them
    DISCRIMINATOR = "stylegan_dis_fine_tuned_v1.pth"
    LOG = "train_log.csv"

    @property
    def generator(self) -> Path:
        return self.dir / self.GENERATOR

    @property
    def discriminator(self) -> Path:
        return self.dir / self.DISCRIMINATOR

    @property
    def train_log(self) -> Path:
        return self.dir / self.LOG

    @property
    def snapshot(self) -> Path:
        """Models, optimisers, position and log while training (removed once the run is complete)."""
        return self.dir / "snapshot.pt"

    def samples(self, epoch: int) -> Path:
        """Generator samples (fixed z x fixed labels, eval mode) after `epoch`."""
        return self.dir / "samples" / f"epoch_{epoch:04d}.png"

    @property
    def real_fake(self) -> Path:
        return self.dir / "real_fake.png"

    @property
    def loss_plot(self) -> Path:
        return self.dir / "loss.png"


class StyleganFinetuneV4(StyleganFinetuneV1):
    NAME = "stylegan_finetune_v4"
    GENERATOR = "stylegan_gen_fine_tuned_v4.pth"
    DISCRIMINATOR = "stylegan_dis_fine_tuned_v4.pth"
    LOG = "train_log_v4.csv"


class StyleganFinetuneV2(StyleganFinetuneV1):
    """v2 trains no discriminator: its generator (the best step group's) and log."""

    NAME = "stylegan_finetune_v2"
    GENERATOR = "stylegan_gen_fine_tuned_v2.pth"
    DISCRIMINATOR = ""
    LOG = "train_log_v2.csv"

    def samples(self, group: int) -> Path:
        return self.dir / "samples" / f"step_group_{group:04d}.png"


class StyleganFinetuneV3(StyleganFinetuneV2):
    """v3: generator (decoder) and encoder of the best epoch, the checkpoints of epochs where a test z
    passed (the original's names) with that z, and the per-epoch test table."""

    NAME = "stylegan_finetune_v3"
    GENERATOR = "stylegan_gen_fine_tuned_v3.pth"
    LOG = "train_log_v3.csv"

    @property
    def encoder(self) -> Path:
        return self.dir / "stylegan_gen_fine_tuned_v3_encoder.pth"

    def checkpoint(self, epoch: int, part: str) -> Path:
        """`part` is 'gen' or 'enc'."""
        return self.dir / f"stylegan_gen_fine_tuned_v3_ckpt_{epoch:04d}_{part}.pth"

    def test_z_vector(self, epoch: int) -> Path:
        """The first z that passed the test after `epoch` (1 x 512, header 0..511, as the original's file)."""
        return self.dir / f"test_z_vector_{epoch:04d}.csv"

    @property
    def test_results(self) -> Path:
        """Every epoch's test: per z, corr / MSE / MAE per property and pass (the original's result_each_z.csv)."""
        return self.dir / "test_results_v3.csv"

    def samples(self, epoch: int) -> Path:
        return self.dir / "samples" / f"epoch_{epoch:04d}.png"


class FinalSamples(AssetFiles):
    """`000000.jpg` ... (q95), as the original's final_inference_test_v3/."""

    NAME = "finetuned_samples"

    def image(self, index: int) -> Path:
        return self.dir / image_name(index)


class LatentW(AssetFiles):
    NAME = "latent_w"

    @property
    def w(self) -> Path:
        """w = mapping(z) of every image's z under the pretrained generator: float32 [N, 512]."""
        return self.dir / "w.npy"


class LatentDirections(AssetFiles):
    NAME = "latent_directions"

    @property
    def directions(self) -> Path:
        return self.dir / "directions.npz"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.csv"


class ControllabilityReport(AssetFiles):
    NAME = "controllability_report"

    @property
    def table(self) -> Path:
        return self.dir / "report.csv"

    @property
    def leakage(self) -> Path:
        return self.dir / "leakage.csv"

    def scatter(self, method: str) -> Path:
        return self.dir / f"scatter_{method}.png"


GAN_FINETUNES = {"v1": StyleganFinetuneV1, "v4": StyleganFinetuneV4}
FINETUNES = {"v1": StyleganFinetuneV1, "v2": StyleganFinetuneV2, "v3": StyleganFinetuneV3, "v4": StyleganFinetuneV4}

# Every asset's files class, by asset name (the IO manager hands an asset its inputs through this).
ASSET_FILES: dict[str, type[AssetFiles]] = {
    cls.NAME: cls
    for cls in (
        LatentCodes,
        RawImages,
        HandLabels,
        GenderQualityModels,
        GenderQualityScores,
        FilteredImages,
        SegmentationMaps,
        PropertyScoresV1,
        PropertyScoresV2,
        PropertyScoreCnn,
        PropertyScoresV2Cnn,
        PropertyScoresV2VsCnn,
        *FINETUNES.values(),
        FinalSamples,
        LatentW,
        LatentDirections,
        ControllabilityReport,
    )
}
