"""Tiny jobs for the instance tests (tests/test_instance.py, test_postgres.py, test_operations.py) and
bench/pool_wait.py: no torch, seconds to run.

`gpu_job` materializes one asset in pool "gpu" that writes `<marker>` once it holds the pool's slot, then
sleeps `seconds`, or, given `release`, holds the slot until that file exists. `two_step_job` runs
`first_step`, then `needs_file`, which fails while `<path>` is missing (a run to re-execute from failure).
`execute_args` gives the `dagster job execute` arguments for a run of gpu_job.
"""

import os
import time
from pathlib import Path

import dagster as dg

HOLD_AT_MOST = 3600  # seconds a `release` hold lasts if nobody releases it


class HoldConfig(dg.Config):
    seconds: float = 0.0
    marker: str = ""
    release: str = ""


@dg.asset(pool="gpu")
def holds_gpu(config: HoldConfig) -> None:
    if config.marker:
        with open(config.marker, "w") as f:
            f.write(str(os.getpid()))
    if config.release:
        deadline = time.monotonic() + HOLD_AT_MOST
        while not os.path.exists(config.release) and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        time.sleep(config.seconds)


class NeedsConfig(dg.Config):
    path: str


@dg.asset
def first_step() -> None:
    pass


@dg.asset(deps=[first_step])
def needs_file(config: NeedsConfig) -> None:
    if not os.path.exists(config.path):
        raise dg.Failure(f"{config.path} is missing")


gpu_job = dg.define_asset_job("gpu_job", selection=[holds_gpu])
two_step_job = dg.define_asset_job("two_step_job", selection=[first_step, needs_file])
defs = dg.Definitions(assets=[holds_gpu, first_step, needs_file], jobs=[gpu_job, two_step_job])


def execute_args(
    home: Path, name: str, seconds: float, marker: str = "", in_process: bool = False, release: str = ""
) -> list[str]:
    """Arguments after `dagster` for run `name` of gpu_job; its run config is written to `home/run-<name>.yaml`."""
    config = Path(home) / f"run-{name}.yaml"
    execution = "execution: {config: {in_process: {}}}\n" if in_process else ""
    config.write_text(
        f"ops: {{holds_gpu: {{config: {{seconds: {seconds}, marker: '{marker}', "
        f"release: '{release}'}}}}}}\n" + execution
    )
    return ["job", "execute", "-f", __file__, "-j", "gpu_job", "-c", str(config)]
