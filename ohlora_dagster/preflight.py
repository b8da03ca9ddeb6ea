"""A run that cannot work fails once, at its start: before any step runs, and so before one waits for the
`gpu` slot. The executor of both code locations (`ohlora_executor`: Dagster's in-process / multiprocess
executor, chosen by run config as usual) first checks, cheaply, what the selected assets need in this mode:
the device (and each shard's, for the sharded image stages), the count settings, every input file
(checkpoints, the label file and its row count), every upstream asset the run reads but does not make, and
disk and memory for the requested image count. Any problem fails the run with one message listing them all.
The run's log also says once which mode it runs in, and ends with a summary: each asset materialized, its
folder, its key figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

SMOKE_BANNER = (
    "smoke mode: deterministic random weights and stand-in labels — the images are noise and every "
    "figure is meaningless; the code paths are the real ones (README 'Full mode' for real checkpoints)"
)
SUMMARY_FIGURES = 3  # key figures per asset in the end-of-run summary
SHARDED_ASSETS = {"raw_images", "gender_quality_scores", "segmentation_maps"}  # take settings.shards


def check(mode: str, settings, store, assets: set[str], inputs: dict[str, set[str]]) -> list[str]:
    """Everything that would make a run of `assets` fail, as messages. `inputs` maps each selected asset to the
    upstream assets it reads (the run must make them or find them materialized)."""
    from ohlora_core import budget
    from ohlora_core.artifacts import ASSET_FILES
    from ohlora_core.device import DeviceError, check_device
    from ohlora_core.shards import problems as shard_problems

    out = []
    try:
        check_device(settings.device, "settings.device")
    except DeviceError as exc:
        out.append(str(exc))
    if assets & SHARDED_ASSETS and not out:
        out += shard_problems(settings.shards, settings.shard_devices, settings.resolved_device)
    n_images, n_labelled = settings.counts(mode)
    if n_labelled > n_images:
        out.append(
            f"settings.n_labelled={n_labelled} is more than the {n_images} images generated (settings.n_images);"
            f" lower n_labelled or raise n_images"
        )
    sources, layout = store.sources(mode), store.layout(mode)
    out += [
        f"{what} not found at {path} (README 'Full mode': put it there or set the store's path)"
        for path, what in sources.required_files(assets).items()
        if not Path(path).is_file()
    ]
    out += _label_problems(sources, assets, n_images, n_labelled)
    out += [
        f"{asset} reads {parent}, which is neither materialized in {mode} mode nor part of this run; add it to the run"
        for asset in sorted(assets)
        for parent in sorted(inputs.get(asset, ()))
        if parent not in assets and not layout.has(ASSET_FILES[parent])
    ]
    return out + budget.problems(assets, n_images, n_labelled, layout.root)


def _label_problems(sources, assets: set[str], n_images: int, n_labelled: int) -> list[str]:
    from ohlora_core.cnn.labels import LabelError, load_hand_labels

    csv = sources.labels_csv()
    if sources.smoke or "hand_labels" not in assets or not csv.is_file():
        return []
    try:
        load_hand_labels(csv, n_images, expected_rows=n_labelled)
    except LabelError as exc:
        return [str(exc)]
    return []


class Preflighted(dg.Executor):
    """Dagster's executor, with the checks above first and the summary last."""

    def __init__(self, inner: dg.Executor):
        self.inner = inner

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        job = plan_context.job.get_definition()
        keys = _selected_keys(plan_context, job)
        mode = next(iter(keys)).path[0] if keys else "smoke"
        problems = _run_checks(plan_context, job, mode, keys)
        if problems:
            from ohlora_dagster.dagster_workarounds.run_failure import fail_before_any_step

            fail_before_any_step(
                plan_context, "this run cannot work as configured (nothing was run):\n- " + "\n- ".join(problems)
            )
        plan_context.log.info(SMOKE_BANNER if mode == "smoke" else "full mode: real checkpoints (README 'Full mode')")
        done = []
        for event in self.inner.execute(plan_context, execution_plan):
            if event.is_step_materialization:
                done.append(event.step_materialization_data.materialization)
            yield event
        if done:
            plan_context.log.info(summary(done))


def _selected_keys(plan_context, job) -> set[dg.AssetKey]:
    selection = plan_context.dagster_run.asset_selection
    return set(selection) if selection else set(job.asset_layer.executable_asset_keys)


def _run_checks(plan_context, job, mode: str, keys: set[dg.AssetKey]) -> list[str]:
    config = plan_context.run_config.get("resources") or {}
    wanted = {k: job.resource_defs[k] for k in ("settings", "store")}
    graph = job.asset_layer.asset_graph
    inputs = {k.path[-1]: {p.path[-1] for p in graph.get(k).parent_keys} - _optional(graph, k) for k in keys}
    with dg.build_resources(
        wanted, instance=plan_context.instance, resource_config={k: config[k] for k in wanted if k in config}
    ) as res:
        return check(mode, res.settings, res.store, {k.path[-1] for k in keys}, inputs)


def _optional(graph, key: dg.AssetKey) -> set[str]:
    """Dependencies an asset uses only when they exist (declared as `deps`, not inputs): the report's methods."""
    from ohlora_dagster.assets.control import METHODS

    return set(METHODS) if key.path[-1] == "controllability_report" else set()


def summary(materializations) -> str:
    lines = ["materialized:"]
    for m in materializations:
        meta = {k: v.value for k, v in m.metadata.items()}
        figures = [
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in meta.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ][:SUMMARY_FIGURES]
        lines.append(
            f"  {m.asset_key.to_user_string():34s} {meta.get('path', '')}"
            + (f"  ({', '.join(figures)})" if figures else "")
        )
    return "\n".join(lines)


def _requirements(config) -> list:
    return dg.multiple_process_executor_requirements() if "multiprocess" in config else []


@dg.executor(
    name="ohlora_executor", config_schema=dg.multi_or_in_process_executor.config_schema, requirements=_requirements
)
def ohlora_executor(init_context) -> dg.Executor:
    """In-process or multiprocess as run config says (`execution: config: in_process: {}`), with the preflight."""
    return Preflighted(dg.multi_or_in_process_executor.executor_creation_fn(init_context))
