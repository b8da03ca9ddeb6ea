"""The resources of a code location: run settings, the artifact store, and the IO manager that hands each
asset its upstream assets' files.

- `RunSettings` ("settings"): what a run asks for — seed, device, counts, batch size.
- `ArtifactStore` ("store"): where everything lives (storage root, checkpoints, hand labels) and the storage
  protocol every asset follows: `stage` opens the recipe folder (recipe = the asset's code version, the data
  versions of everything it reads, and its settings), `publish` records the outputs, switches `current`
  atomically and returns the materialization (data version, path, mode, figures, pictures, checks).
- `ArtifactInputs` ("io_manager"): an asset's typed inputs are the upstream assets' `current/` files
  (`ohlora_core.artifacts` handles); assets write their own files, so nothing is pickled.

The mode is not a setting: it is the first part of every asset key (`smoke/raw_images`), fixed by the code
location (`ohlora_dagster.smoke`, `ohlora_dagster.full`), so smoke and full never share a file or a history.
Edit settings in the Launchpad under `resources: settings: config:` or with OHLORA_* environment variables.
"""

import os
from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field

from ohlora_core.layout import FACEXFORMER_CHECKPOINT, STYLEGAN_CHECKPOINT


def _env_shards() -> int:
    from ohlora_core.shards import env_shards

    return env_shards()


class RunSettings(dg.ConfigurableResource):
    """What a run asks for. Counts left unset take the mode's preset (ohlora_dagster/presets.py)."""

    seed: int = Field(
        default=0, ge=0, description="Seed of every random choice: z (with the image index), inits, splits."
    )
    device: str = Field(
        default_factory=lambda: os.environ.get("OHLORA_DEVICE", "auto"),
        description="torch device for model work: auto (cuda when available), cpu, cuda, cuda:1, ...",
    )
    n_images: int | None = Field(
        default=None,
        gt=0,
        description="Images to generate; unset = 10,000 (full) / 40 "
        "(smoke). The run's preflight refuses a count that memory or disk cannot hold.",
    )
    n_labelled: int | None = Field(
        default=None,
        gt=1,
        description="Hand-labelled images (rows the label CSV must hold); unset = 2,000 (full) / 30 (smoke).",
    )
    batch_size: int = Field(default=16, gt=0, le=4096, description="Inference batch size for generation and parsing.")
    tf32: bool = Field(
        default=True,
        description="Let CUDA convolutions use TF32 (PyTorch's default; ~±1 grey level "
        "on ~5% of pixels). false = full fp32, matching the CPU/genforce values, ~4.5x slower generation.",
    )

    shards: int = Field(
        default_factory=_env_shards,
        ge=1,
        le=256,
        description="Worker processes, one per device, for the image stages (raw_images, "
        "gender_quality_scores, segmentation_maps); 1 = in the step's own process. The files are the "
        "same bytes whatever the count (docs/sharding.md). Unset = $OHLORA_SHARDS or 1.",
    )
    shard_devices: list[str] | None = Field(
        default=None,
        description="One device per shard; unset = cuda:0..N-1 for a CUDA run, else settings.device N times.",
    )

    @property
    def resolved_device(self) -> str:
        from ohlora_core.device import resolve_device

        return resolve_device(self.device)

    def shard_list(self) -> list[str]:
        """The device of each shard worker (one entry = no workers); ShardSettingError names a bad setting."""
        from ohlora_core.shards import devices_for

        return devices_for(self.shards, self.shard_devices, self.resolved_device)

    def counts(self, mode: str) -> tuple[int, int]:
        """(images, labelled images) of a run in `mode`: the settings, else the preset (labels capped by images)."""
        from ohlora_dagster.presets import resolve

        run = resolve(mode, "run", {"n_images": self.n_images, "n_labelled": self.n_labelled})
        return run["n_images"], run["n_labelled"] if self.n_labelled else min(run["n_labelled"], run["n_images"])


def mode_of(context: dg.AssetExecutionContext) -> str:
    """The mode of the asset(s) being materialized: the first part of every key of the location."""
    return next(iter(context.assets_def.keys)).path[0]


class ArtifactStore(dg.ConfigurableResource):
    """Where artifacts, checkpoints and labels live, and how an asset writes and publishes its outputs."""

    storage_root: str = Field(
        default_factory=lambda: os.environ.get("OHLORA_STORAGE", ""),
        description="Root for models/, labels/ and artifacts/ (absolute, or relative to the "
        "repository); unset = $OHLORA_STORAGE or the repository's storage/.",
    )
    stylegan_checkpoint: str = Field(
        default=STYLEGAN_CHECKPOINT, description="genforce celeba_partial-256x256 checkpoint, relative to storage_root."
    )
    facexformer_checkpoint: str = Field(
        default=FACEXFORMER_CHECKPOINT, description="Official FaceXFormer checkpoint, relative to storage_root."
    )
    hand_labels_csv: str | None = Field(
        default=None,
        description="Hand labels (img_name,quality,gender); unset = "
        "labels/synthesize_results_quality_and_gender.csv (full mode).",
    )

    def layout(self, mode: str):
        from ohlora_core.layout import StorageLayout, storage_root

        return StorageLayout(storage_root(self.storage_root or None), mode)

    def sources(self, mode: str):
        from ohlora_core.pretrained import Sources

        return Sources(self.layout(mode), self.stylegan_checkpoint, self.facexformer_checkpoint, self.hand_labels_csv)

    def run(self, context: dg.AssetExecutionContext, settings: RunSettings):
        """The run-wide settings the core's stage functions take (`ohlora_core.pipeline.Run`)."""
        from ohlora_core.pipeline import Run

        layout = self.layout(mode_of(context))
        return Run(layout.mode, layout.root, settings.seed, settings.resolved_device, context.log.info)

    # -- the storage protocol --------------------------------------------------------------------------------------
    def stage(
        self, context: dg.AssetExecutionContext, item: dict | None = None, key: dg.AssetKey | None = None, **recipe: Any
    ):
        """The recipe folder this materialization of `key` (default: the context's asset) writes into
        (`ohlora_core.store.RecipeDir`). The recipe holds the asset's code version, the data versions of its
        inputs and dependencies, the mode, `recipe` and, for per-image stages, `item` (what fixes each image's
        bytes, which decides what may be reused across recipes; the code version is added to it)."""
        from ohlora_core.store import RecipeDir
        from ohlora_dagster.lineage import code_version, upstream_versions

        key = key or context.asset_key
        layout = self.layout(key.path[0])
        full = {
            **recipe,
            "version": code_version(context, key),
            "upstream": upstream_versions(context, key, layout),
            "mode": layout.mode,
        }
        if item is not None:
            full["item"] = {**item, "version": full["version"]}
        return RecipeDir(layout.artifact_dir(key.path[-1]), full)

    def stage_halving(
        self,
        context: dg.AssetExecutionContext,
        batch_size: int,
        item: Callable[[int], dict],
        work: Callable[[Any, int], Any],
        **recipe: Any,
    ):
        """`work(stage, batch)` in the recipe folder of `item(batch)`; out of GPU memory, again at half the batch
        in that batch's own folder (the result equals a run started there). Returns (stage, result); the batch
        used and the sizes that failed are added to the result's figures."""
        from ohlora_core.device import halving_batches

        def attempt(batch: int):
            stage = self.stage(context, item=item(batch), **recipe)
            return stage, work(stage, batch)

        (stage, result), batch, failed = halving_batches(attempt, batch_size, context.log.info)
        result.figures.update(batch_size=batch, out_of_memory_at=", ".join(map(str, failed)) or "none")
        return stage, result

    def publish(self, context: dg.AssetExecutionContext, stage, result) -> dg.MaterializeResult:
        """Record `result.outputs`, switch the asset's `current` to this recipe, and describe it for the UI."""
        from ohlora_dagster.previews import describe

        digest = stage.promote(result.outputs, digest=result.digest)
        key = dg.AssetKey([stage.recipe["mode"], stage.asset_dir.name])
        return describe(key, result, digest, stage.asset_dir / "current" / result.path, stage.recipe)


class ArtifactInputs(dg.ConfigurableIOManager):
    """Typed inputs: the upstream asset's `current/` files, as its `ohlora_core.artifacts` class."""

    store: ArtifactStore

    def load_input(self, context: dg.InputContext):
        from ohlora_core.artifacts import ASSET_FILES

        mode, name = context.asset_key.path[0], context.asset_key.path[-1]
        return self.store.layout(mode).current(ASSET_FILES[name])

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is not None:  # assets return MaterializeResult and write their own files
            raise TypeError(f"{context.asset_key.to_user_string()} returned a value; ohlora assets write files")
