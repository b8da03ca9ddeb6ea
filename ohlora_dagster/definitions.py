"""The code location: every ohlora asset, check, job and the settings resource.

torch and the models are imported inside asset bodies, so loading this module (the
UI, `dagster definitions validate`, each step process) stays fast.
"""
import dagster as dg

from ohlora_dagster.assets import control, filtering, generation, segmentation
from ohlora_dagster.assets.control import build_control_assets
from ohlora_dagster.assets.finetune import build_finetune_assets
from ohlora_dagster.assets.scores import build_score_assets
from ohlora_dagster.resources import OhloraSettings


def build_assets() -> list[dg.AssetsDefinition]:
    """All assets; the score and fine-tuning stages take the score versions from ohlora_core at call time."""
    return [*dg.load_assets_from_modules([generation, filtering, segmentation, control]), *build_score_assets(),
            *build_finetune_assets(), *build_control_assets()]


all_assets = build_assets()
all_checks = dg.load_asset_checks_from_modules([filtering])

# The whole graph in one run (what README's main command and CI materialize).
pipeline_job = dg.define_asset_job("ohlora_pipeline", selection=dg.AssetSelection.all())

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[pipeline_job],
    resources={"settings": OhloraSettings()},
)
