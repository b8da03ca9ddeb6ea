"""List the assets whose code or inputs changed since they were last materialized.

    DAGSTER_HOME=$PWD python -m ohlora_dagster.stale              # what is stale, and why
    DAGSTER_HOME=$PWD python -m ohlora_dagster.stale --selection  # 'a,b,c' for `dagster asset materialize --select`

The command-line twin of the UI's "Unsynced" badges. It uses Dagster's own stale-status
resolver (a 1.13 internal, pinned with the rest of the Dagster family in constraints.txt).
"""
import argparse
from collections.abc import Sequence

import dagster as dg


def stale_assets(instance: dg.DagsterInstance, assets: Sequence[dg.AssetsDefinition]) -> dict[str, list[str]]:
    """{asset key: [reasons]} for every STALE asset, in graph order."""
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, assets)
    out = {}
    for asset in assets:
        for key in asset.keys:
            if resolver.get_status(key) == StaleStatus.STALE:
                out[key.to_user_string()] = [f"{c.category.value}: {c.reason}" for c in resolver.get_stale_causes(key)]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selection", action="store_true", help="print only a comma-separated asset selection")
    args = parser.parse_args(argv)
    from ohlora_dagster.definitions import all_assets

    stale = stale_assets(dg.DagsterInstance.get(), all_assets)
    if args.selection:
        print(",".join(stale))
        return
    if not stale:
        print("nothing is stale")
    for key, reasons in stale.items():
        print(f"{key}: " + "; ".join(reasons))


if __name__ == "__main__":
    main()
