"""A tiny stand-in for the pipeline's GPU steps, for tests/test_instance.py (no torch).

`gpu_job` materializes one asset in pool "gpu" that writes `<marker>` once it holds the pool's
slot, then sleeps `seconds`. Load it with `dagster job execute -f tests/gpu_pool_job.py -j gpu_job`.
"""
import os
import time

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
