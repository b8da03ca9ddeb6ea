"""Running assets of a code location in tests: resources on a temporary storage root, a materialize helper
and the metadata of a result."""

from __future__ import annotations

import dagster as dg

from ohlora_dagster.definitions import location
from ohlora_dagster.resources import ArtifactInputs, ArtifactStore, RunSettings

LOCATIONS = {}


def defs_of(mode: str) -> dg.Definitions:
    if mode not in LOCATIONS:
        LOCATIONS[mode] = location(mode)
    return LOCATIONS[mode]


def resources(root, store: dict | None = None, **settings) -> dict:
    """The location's resources on storage root `root`; settings default to the CPU."""
    artifact_store = ArtifactStore(storage_root=str(root), **(store or {}))
    return {
        "settings": RunSettings(**{"device": "cpu", **settings}),
        "store": artifact_store,
        "io_manager": ArtifactInputs(store=artifact_store),
    }


def key(mode: str, name: str) -> dg.AssetKey:
    return dg.AssetKey([mode, name])


def materialize(
    mode: str,
    names,
    root,
    instance,
    *,
    defs: dg.Definitions | None = None,
    store: dict | None = None,
    run_config=None,
    raise_on_error: bool = True,
    **settings,
):
    """Materialize assets `names` of the `mode` location (their upstream assets must be on disk already)."""
    defs = defs or defs_of(mode)
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=[key(mode, n) for n in names],
        resources=resources(root, store, **settings),
        instance=instance,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


def meta(result, mode: str, name: str) -> dict:
    """The metadata values of the last materialization of `name` in a result."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key(mode, name)]
    return {k: v.value for k, v in events[-1].step_materialization_data.materialization.metadata.items()}


def op_config(mode: str, name: str, config) -> dict:
    """Run config for one asset's Config (op names are the asset names)."""
    return {"ops": {name: {"config": config}}}


def run_job(
    mode: str,
    root,
    instance,
    names=None,
    *,
    settings: dict | None = None,
    store: dict | None = None,
    ops: dict | None = None,
    executor: str = "in_process",
):
    """A real run of the location's job (`dg launch`'s path: the ohlora executor with its preflight) in this
    process; `names` selects assets (default: the whole graph)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    job = ReconstructableRepository.for_module(f"ohlora_dagster.{mode}", "defs").get_reconstructable_job(
        "ohlora_pipeline"
    )
    run_config = {
        "execution": {"config": {executor: {}}},
        "resources": {
            "settings": {"config": {"device": "cpu", **(settings or {})}},
            "store": {"config": {"storage_root": str(root), **(store or {})}},
        },
        "ops": {name: {"config": config} for name, config in (ops or {}).items()},
    }
    selection = [key(mode, n) for n in names] if names else None
    return dg.execute_job(job, instance, run_config=run_config, asset_selection=selection, raise_on_error=False)


def run_failure_messages(instance, run_id: str) -> list[str]:
    """The error messages the run's log holds (step and run failures)."""
    out = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and event.event_type_value in ("RUN_FAILURE", "STEP_FAILURE", "ENGINE_EVENT"):
            out.append(event.message or "")
        elif record.level >= 40:
            out.append(record.user_message)
    return out
