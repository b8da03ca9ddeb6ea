"""The two code locations, smoke and full: the same assets, their keys prefixed by the mode.

`location(mode)` builds one: every asset of `ohlora_dagster.assets` under `<mode>/` (so the mode is part of
every asset key and smoke and full never share a file or a history, while sharing the one instance and its
`gpu` pool), each asset's code version stamped from `versions.py`, the resources, and the job that
materializes everything. `ohlora_dagster.smoke` and `ohlora_dagster.full` hold the two (workspace.yaml
loads both); torch is imported inside asset bodies, so loading a location stays fast.
"""

import dagster as dg

from ohlora_dagster.assets import control, filtering, finetune, generation, scores, segmentation
from ohlora_dagster.lineage import stamp_code_versions
from ohlora_dagster.resources import ArtifactInputs, ArtifactStore, RunSettings

ASSET_MODULES = [generation, filtering, segmentation, scores, finetune, control]
MODES = ("smoke", "full")
PIPELINE_JOB = "ohlora_pipeline"  # the whole graph in one run (README's main command)


def location(mode: str) -> dg.Definitions:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from ohlora_dagster.preflight import ohlora_executor

    assets = stamp_code_versions(dg.load_assets_from_modules(ASSET_MODULES, key_prefix=mode))
    store = ArtifactStore.configure_at_launch()  # run config for "store" reaches the IO manager too
    return dg.Definitions(
        assets=assets,
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES, asset_key_prefix=mode),
        jobs=[dg.define_asset_job(PIPELINE_JOB, selection=dg.AssetSelection.all())],
        resources={"settings": RunSettings(), "store": store, "io_manager": ArtifactInputs(store=store)},
        executor=ohlora_executor,
    )
