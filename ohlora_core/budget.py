"""What a run of n images costs in disk and memory, estimated before it starts.

Per-image figures were measured on this project's outputs (smoke noise images compress worse than faces, so
they bound real runs from above): a 256x256 JPEG q95 is 21-31 KB, a filtered image's three segmentation PNGs
(face crop, label map, visualisation) ~223 KB, a z or w row 2 KB, ledger and manifest lines ~0.3 KB. Stages that
train or score on images decode them all into memory as uint8 (196,608 bytes each). Budgets assume every image
passes the filter (the original kept 47 %), i.e. they err on the side of refusing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

KB, MB, GB = 1024, 1024**2, 1024**3
IMAGE_BYTES = 3 * 256 * 256  # one decoded uint8 image
DISK_PER_IMAGE = {  # bytes written per image of the run
    "latent_codes": 2048,
    "latent_w": 2048,
    "raw_images": 32 * KB + 300,
    "segmentation_maps": 230 * KB + 300,
    "gender_quality_scores": 200,
    "filtered_images": 100,
    "property_scores_v1": 300,
    "property_scores_v2": 300,
    "property_scores_v2_cnn": 200,
    "property_scores_v2_vs_cnn": 300,
}
# stages that hold decoded images: {asset: share of the run's images it decodes at once}
DECODES = {
    "gender_quality_models": "labelled",
    "gender_quality_scores": "unlabelled",
    "property_score_cnn": "all",
    "property_scores_v2_cnn": "all",
    "stylegan_finetune_v1": "all",
    "stylegan_finetune_v3": "all",
    "stylegan_finetune_v4": "all",
}
HEADROOM = 1.1  # keep 10 % free


@dataclass
class Estimate:
    disk: dict[str, int] = field(default_factory=dict)  # bytes per asset
    memory: dict[str, int] = field(default_factory=dict)  # peak bytes per asset

    @property
    def disk_total(self) -> int:
        return sum(self.disk.values())

    @property
    def memory_peak(self) -> tuple[str, int]:
        return max(self.memory.items(), key=lambda kv: kv[1], default=("", 0))


def estimate(assets: set[str], n_images: int, n_labelled: int) -> Estimate:
    """Disk and peak memory of materializing `assets` for a run of `n_images` (`n_labelled` labelled)."""
    out = Estimate()
    share = {"labelled": n_labelled, "unlabelled": max(n_images - n_labelled, 0), "all": n_images}
    for asset in sorted(assets):
        if asset in DISK_PER_IMAGE:
            out.disk[asset] = DISK_PER_IMAGE[asset] * n_images
        if asset in DECODES:
            out.memory[asset] = IMAGE_BYTES * share[DECODES[asset]]
    return out


def free_disk(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * KB
    except OSError:
        return None
    return None


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PB"


def problems(assets: set[str], n_images: int, n_labelled: int, root: str | os.PathLike) -> list[str]:
    """Why the run would not fit: disk under `root`, memory of this machine. Empty if it fits."""
    est, out = estimate(assets, n_images, n_labelled), []
    disk = free_disk(root)
    if est.disk_total * HEADROOM > disk:
        parts = ", ".join(f"{a} {human(b)}" for a, b in sorted(est.disk.items(), key=lambda kv: -kv[1]))
        out.append(
            f"n_images={n_images:,} needs about {human(est.disk_total)} of disk ({parts}); {root} has "
            f"{human(disk)} free"
        )
    asset, peak = est.memory_peak
    memory = available_memory()
    if memory is not None and peak * HEADROOM > memory:
        out.append(
            f"n_images={n_images:,} needs about {human(peak)} of memory ({asset} decodes its images at once); "
            f"this machine has {human(memory)} available"
        )
    return out
