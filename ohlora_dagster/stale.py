"""List the assets whose code or inputs changed since they were last materialized.

    DAGSTER_HOME=$PWD python -m ohlora_dagster.stale              # what is stale, and why
    DAGSTER_HOME=$PWD python -m ohlora_dagster.stale --selection  # 'a,b,c' for `dagster asset materialize --select`
    DAGSTER_HOME=$PWD python -m ohlora_dagster.stale --location ohlora_dagster.full   # another code location

The command-line twin of the UI's "Unsynced" badges (Dagster's own resolver, through
ohlora_dagster/dagster_workarounds/stale.py).
"""

import argparse
import importlib
from collections.abc import Sequence

import dagster as dg

from ohlora_dagster.dagster_workarounds.stale import stale_assets

__all__ = ["stale_assets", "main"]


def _default_location() -> str:
    """The one code location module, or the smoke one where there are one per mode."""
    module = importlib.import_module("ohlora_dagster.definitions")
    return (
        "ohlora_dagster.definitions"
        if isinstance(getattr(module, "defs", None), dg.Definitions)
        else "ohlora_dagster.smoke"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ohlora_dagster.stale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--selection", action="store_true", help="print only a comma-separated asset selection")
    parser.add_argument(
        "--location",
        metavar="MODULE",
        help="the code location's module (its `defs`); default: "
        "ohlora_dagster.definitions, or ohlora_dagster.smoke where each mode has its own",
    )
    args = parser.parse_args(argv)
    module = args.location or _default_location()
    try:
        defs = importlib.import_module(module).defs
    except (ImportError, AttributeError) as error:
        parser.error(f"--location {module}: no code location there ({error})")

    with dg.DagsterInstance.get() as instance:
        stale = stale_assets(instance, defs)
    if args.selection:
        print(",".join(stale))
        return
    if not stale:
        print("nothing is stale")
    for key, reasons in stale.items():
        print(f"{key}: " + "; ".join(reasons))


if __name__ == "__main__":
    main()
