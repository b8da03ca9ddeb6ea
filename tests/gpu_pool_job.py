"""A tiny stand-in for the pipeline's GPU steps, for tests/test_instance.py (no torch).

`gpu_job` materializes one asset in pool "gpu" that writes `<marker>` once it holds the pool's
slot, then sleeps `seconds`. `execute_args` gives the `dagster job execute` arguments for a run of it
(used by tests/test_instance.py and bench/pool_wait.py).
"""
import os
import time
from pathlib import Path

import dagster as dg


class HoldConfig(dg.Config):
    seconds: float = 0.0
    marker: str = ""


@dg.asset(pool="gpu")
def holds_gpu(config: HoldConfig) -> None:
    if config.marker:
        with open(config.marker, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(config.seconds)


gpu_job = dg.define_asset_job("gpu_job", selection=[holds_gpu])
defs = dg.Definitions(assets=[holds_gpu], jobs=[gpu_job])


def execute_args(home: Path, name: str, seconds: float, marker: str = "", in_process: bool = False) -> list[str]:
    """Arguments after `dagster` for run `name` of gpu_job; its run config is written to `home/run-<name>.yaml`."""
    config = Path(home) / f"run-{name}.yaml"
    execution = "execution: {config: {in_process: {}}}\n" if in_process else ""
    config.write_text(f"ops: {{holds_gpu: {{config: {{seconds: {seconds}, marker: '{marker}'}}}}}}\n" + execution)
    return ["job", "execute", "-f", __file__, "-j", "gpu_job", "-c", str(config)]
