"""The code location: every ohlora asset, check, job and the settings resource.

torch and the models are imported inside asset bodies, so loading this module (the
UI, `dagster definitions validate`, each step process) stays fast.
"""
from __future__ import annotations

import dagster as dg

from ohlora_dagster.assets import filtering, generation, scores, segmentation
from ohlora_dagster.resources import OhloraSettings

all_assets = dg.load_assets_from_modules([generation, filtering, segmentation, scores])
all_checks = dg.load_asset_checks_from_modules([generation, filtering, segmentation, scores])

# The whole graph in one run (what README's main command and CI materialize).
pipeline_job = dg.define_asset_job("ohlora_pipeline", selection=dg.AssetSelection.all())

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[pipeline_job],
    resources={"settings": OhloraSettings()},
)
