"""CLI runs of tests/gpu_pool_job.py against a test's instance, for test_instance.py and test_postgres.py:
start a run that holds the gpu slot, start one that waits for it, interrupt the waiting one. Everything waits
on observable state (a marker file, the pool's queue, a process exit) with generous deadlines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from gpu_pool_job import execute_args

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # an upper bound for a stuck process; each step takes seconds (more under load)
STOPS_WITHIN = 60  # seconds from SIGINT/SIGTERM to the waiting run's exit (about 2 s on an idle machine)


def _default_signals() -> None:
    # a sandbox may start us with SIGINT/SIGTERM ignored, and children inherit that: restore the defaults
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(cmd: list[str], env: dict, log: Path, groups: list) -> subprocess.Popen:
    """Start `cmd` in its own process group (so a test can kill all of it), output to `log`."""
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    groups.append(proc)
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def dagster_cmd(home: Path, name: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "dagster", *execute_args(home, name, 0, **kwargs)]


def dg_launch_cmd(home: Path, name: str, **kwargs) -> list[str]:
    """README's command (`dg launch --job ...`) for a run of gpu_job."""
    args = execute_args(home, name, 0, **kwargs)
    return ["dg", "launch", "--job", "gpu_job", "-f", args[args.index("-f") + 1], "-c", args[-1]]


def hold_slot(home: Path, env: dict, name: str, groups: list, instance: dg.DagsterInstance):
    """Start a run whose step holds the gpu slot until `release_path` exists; returns (proc, run id, release_path)."""
    marker, release = home / f"{name}.holding", home / f"{name}.release"
    proc = start(
        dagster_cmd(home, name, marker=str(marker), release=str(release), in_process=True),
        env,
        home / f"{name}.log",
        groups,
    )
    wait_for(lambda: marker.exists() or proc.poll() is not None, f"{name} to hold the gpu slot")
    assert proc.poll() is None, (home / f"{name}.log").read_text()
    (slot,) = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    return proc, slot.run_id, release


def waiting_run_ids(instance: dg.DagsterInstance) -> set[str]:
    """Runs whose step is queued for the gpu slot, not holding it."""
    info = instance.event_log_storage.get_concurrency_info("gpu")
    return {step.run_id for step in info.pending_steps if step.assigned_timestamp is None}


def stop_waiting_run(
    home: Path, env: dict, name: str, groups: list, instance: dg.DagsterInstance, cmd: list[str], signum: int
) -> tuple[str, float, str]:
    """Start `cmd` (a run of gpu_job), wait until it waits for the slot, send it `signum`, wait for its exit.
    Returns (its run id, seconds from the signal to its exit, its output); asserts it exited non-zero."""
    before = waiting_run_ids(instance)
    proc = start(cmd, env, home / f"{name}.log", groups)
    wait_for(lambda: waiting_run_ids(instance) - before or proc.poll() is not None, f"{name} to wait for the slot")
    assert proc.poll() is None, (home / f"{name}.log").read_text()
    (run_id,) = waiting_run_ids(instance) - before
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    try:
        proc.wait(timeout=STOPS_WITHIN)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise AssertionError(
            f"{name} ignored {signal.Signals(signum).name}: still waiting after {STOPS_WITHIN} s:\n"
            + (home / f"{name}.log").read_text()[-3000:]
        ) from None
    took, output = time.monotonic() - sent, (home / f"{name}.log").read_text()
    assert proc.returncode != 0, output
    return run_id, took, output


def assert_stopped_cleanly(instance: dg.DagsterInstance, run_id: str, output: str, holder_run_id: str) -> None:
    """The interrupted run is CANCELED, said why, holds and queues nothing; the holder still holds the slot."""
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED, output[-3000:]
    assert "Interrupted (SIGINT or SIGTERM) while holds_gpu waited for a pool slot" in output
    info = instance.event_log_storage.get_concurrency_info("gpu")
    assert [s.run_id for s in info.claimed_slots] == [holder_run_id]
    assert run_id not in {step.run_id for step in info.pending_steps}
    assert run_id not in instance.event_log_storage.get_concurrency_run_ids()
    assert instance.get_run_by_id(holder_run_id).status == dg.DagsterRunStatus.STARTED
