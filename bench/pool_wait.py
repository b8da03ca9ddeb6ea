"""Benchmark: CPU used by a run while it waits for the `gpu` pool slot.

A run holds the slot (tests/gpu_pool_job.py, asleep); a second run of the same job waits for it for
`--seconds`, with Dagster 1.13's own executor loop (ohlora_dagster/pool_wait.py undone in that
process) and with ours, interleaved: Dagster's, ours, Dagster's, ours ... (--pairs pairs). Same instance
(a fresh SQLite DAGSTER_HOME configured like dagster.yaml), same job, same machine. Prints each side's
CPU seconds per waiting run (median, min..max) and the ratio per pair; fails if any waiting run got the
slot or ended (each must wait the whole time: the same work), or if ours did not use less CPU.

    python bench/pool_wait.py [--seconds 10] [--executor in_process|multiprocess] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from gpu_pool_job import execute_args  # noqa: E402
from interleave import Paired  # noqa: E402
from proc_stats import group_cpu_seconds  # noqa: E402

from ohlora_dagster.dagster_workarounds.recovery import recover_dead_runs  # noqa: E402

# Runs `dagster job execute ...`; with "dagster" as its first argument, opening the instance installs every
# workaround but the nap (the executor loop stays Dagster's own).
WAITER = """
import sys
from ohlora_dagster.dagster_workarounds import pool
if sys.argv.pop(1) == "dagster":
    pool._napping = lambda get_steps_to_execute: get_steps_to_execute
from dagster._cli import main
main()
"""


def _start(cmd: list[str], home: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def _waiting_cpu(home: Path, flavour: str, seconds: float, executor: str) -> float:
    """CPU seconds a run of `flavour` used while blocked on the pool for `seconds`."""
    import dagster as dg

    args = execute_args(home, flavour, 0, in_process=executor == "in_process")
    proc = _start([sys.executable, "-c", WAITER, flavour, *args], home, home / f"{flavour}.log")
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:

            def waiting() -> bool:
                info = instance.event_log_storage.get_concurrency_info("gpu")
                return any(step.assigned_timestamp is None for step in info.pending_steps)

            _wait_for(waiting, f"the {flavour} run to wait for the slot")
        time.sleep(1.0)  # past start-up: measure the wait alone
        before, t0 = group_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        used, waited = group_cpu_seconds(proc.pid) - before, time.monotonic() - t0
        if proc.poll() is not None:
            raise SystemExit(f"the {flavour} run ended while it should wait:\n" + (home / f"{flavour}.log").read_text())
        return used * seconds / waited
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            recover_dead_runs(instance)  # its queued claim goes, so the next waiter is the only one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--executor", choices=["in_process", "multiprocess"], default="in_process")
    parser.add_argument("--pairs", type=int, default=3, help="waiting runs per side, interleaved")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text().replace("storage/dagster", str(home)))
        marker = home / "holding"
        holding = execute_args(home, "holder", 3600, str(marker), in_process=True)
        holder = _start([sys.executable, "-m", "dagster", *holding], home, home / "holder.log")
        try:
            _wait_for(lambda: marker.exists() or holder.poll() is not None, "the holder to take the slot")
            if holder.poll() is not None:
                raise SystemExit((home / "holder.log").read_text())
            cpu = Paired("ohlora's wait", "Dagster's loop")
            for _ in range(args.pairs):  # B A B A ...: each side sees the same conditions
                cpu.b.append(_waiting_cpu(home, "dagster", args.seconds, args.executor))
                cpu.a.append(_waiting_cpu(home, "ohlora", args.seconds, args.executor))
        finally:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    print(
        f"CPU seconds used while waiting {args.seconds:.0f} s for the gpu slot ({args.executor} executor), "
        f"{args.pairs} interleaved pairs:\n{cpu.report(unit='s CPU')}"
    )
    assert max(cpu.a) < min(cpu.b), "ohlora's wait did not use less CPU than Dagster's in every pair"


if __name__ == "__main__":
    main()
