"""ohlora_dagster/instance.py on real CLI runs: a killed run gives the gpu slot back, and two runs
can create a new instance at once.

Each test uses its own DAGSTER_HOME holding the repository's dagster.yaml with its storage paths
rewritten (as .ci/run does), and the tiny pool-"gpu" job in tests/gpu_pool_job.py. Everything that
waits polls with a timeout; nothing relies on sleeps being long enough.
"""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ohlora_dagster.instance import WORKER_TAG
from gpu_pool_job import execute_args
from proc_stats import group_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # an upper bound for a stuck process; each step takes seconds (more under load)


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh DAGSTER_HOME configured like the repository's instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (REPO / "dagster.yaml").read_text().replace("storage/dagster", str(home))
    (home / "dagster.yaml").write_text(config)
    return home


@pytest.fixture
def groups():
    """The process groups a test starts; whatever still runs at its end is killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            _kill_group(proc)


def _env(home: Path) -> dict:
    return {**os.environ, "DAGSTER_HOME": str(home)}


def _dagster(home: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dagster", *args], cwd=REPO, env=_env(home),
                          capture_output=True, text=True, timeout=timeout)


def _start_holding_run(home: Path, name: str, groups: list) -> tuple[subprocess.Popen, str]:
    """Start a run (own process group) and wait until its step holds the gpu slot."""
    marker = home / f"{name}.holding"
    with open(home / f"{name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagster", *execute_args(home, name, 600, str(marker))],
                                cwd=REPO, env=_env(home), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    groups.append(proc)
    _wait_for(lambda: marker.exists() or proc.poll() is not None, f"{name} to hold the gpu slot")
    assert proc.poll() is None, (home / f"{name}.log").read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (slot,) = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    return proc, slot.run_id


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)


def _wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def _assert_recovered(home: Path, dead_run_id: str) -> None:
    """The dead run is FAILED, every other run succeeded, and no pool slot or claim is left."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = {run.run_id: run.status for run in instance.get_runs()}
        assert statuses.pop(dead_run_id) == dg.DagsterRunStatus.FAILURE
        assert statuses and set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS}
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
        assert instance.event_log_storage.get_concurrency_run_ids() == set()


def test_killed_run_gives_gpu_slot_to_next_run(home, groups):
    """Defect A: kill -9 while a pool-gpu step runs; the next run recovers it when it starts."""
    proc, dead_run_id = _start_holding_run(home, "killed", groups)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(dead_run_id).tags[WORKER_TAG].split(":")[1] == str(proc.pid)
    _kill_group(proc)

    result = _dagster(home, *execute_args(home, "next", 0, in_process=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"recovered run {dead_run_id}" in result.stderr
    _assert_recovered(home, dead_run_id)


def test_waiting_run_gets_gpu_slot_when_holder_is_killed(home, groups):
    """Defect A, the other order: a run already blocked on the pool takes over once the holder dies.
    While blocked it sleeps (ohlora_dagster/pool_wait.py): without that, Dagster's executor loop used a
    whole core (10 s of CPU per 10 s waited); and it says it is blocked once."""
    proc, dead_run_id = _start_holding_run(home, "killed", groups)
    with open(home / "waiting.log", "w") as log:
        waiting = subprocess.Popen([sys.executable, "-m", "dagster", *execute_args(home, "waiting", 0)],
                                   cwd=REPO, env=_env(home), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    groups.append(waiting)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        def blocked():
            info = instance.event_log_storage.get_concurrency_info("gpu")
            return any(step.run_id != dead_run_id for step in info.pending_steps)
        _wait_for(blocked, "the second run to wait for the gpu slot")
    before, t0 = group_cpu_seconds(waiting.pid), time.monotonic()
    time.sleep(6)
    used, waited = group_cpu_seconds(waiting.pid) - before, time.monotonic() - t0
    assert used < 0.25 * waited, f"the blocked run used {used:.1f} s of CPU in {waited:.1f} s"
    _kill_group(proc)
    waiting.wait(timeout=TIMEOUT)
    output = (home / "waiting.log").read_text()
    assert waiting.returncode == 0, output
    assert output.count("Step blocked by limit for pool gpu") == 1, output
    _assert_recovered(home, dead_run_id)


@pytest.mark.parametrize("requeue", [False, True], ids=["dagster", "ohlora"])
def test_slot_freed_while_a_step_queues_is_not_lost(tmp_path, monkeypatch, requeue):
    """The interleaving behind a run that waited forever: run B asks whether the gpu pool has a free
    slot (no: run A holds it), A frees its slot (and hands it to the queue, still empty), then B queues
    itself unassigned. Dagster's own claim leaves B blocked with the slot free; ours gives B the slot."""
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    claim = SqlEventLogStorage.claim_concurrency_slot
    assert claim.ohlora_requeues  # installed by importing ohlora_dagster
    if not requeue:
        monkeypatch.setattr(SqlEventLogStorage, "claim_concurrency_slot", claim.__wrapped__)
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:  # plain Dagster SQLite storage
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 1)
        assert storage.claim_concurrency_slot("gpu", "run-a", "holds_gpu").is_claimed

        looked = storage.has_unassigned_slots
        def look_then_a_frees(key):
            monkeypatch.setattr(storage, "has_unassigned_slots", looked)
            answer = looked(key)
            storage.free_concurrency_slot_for_step("run-a", "holds_gpu")
            return answer
        monkeypatch.setattr(storage, "has_unassigned_slots", look_then_a_frees)

        first = storage.claim_concurrency_slot("gpu", "run-b", "holds_gpu")
        again = storage.claim_concurrency_slot("gpu", "run-b", "holds_gpu")  # the executor's next check
        info = storage.get_concurrency_info("gpu")
        assert [s.run_id for s in info.claimed_slots] == (["run-b"] if requeue else [])
        assert (first.is_claimed, again.is_claimed) == (requeue, requeue)


def test_doctor_recovers_killed_run(home, groups):
    """Defect A by hand: `python -m ohlora_dagster.instance doctor [--dry-run]`."""
    proc, dead_run_id = _start_holding_run(home, "killed", groups)
    _kill_group(proc)

    def doctor(*args):
        result = subprocess.run([sys.executable, "-m", "ohlora_dagster.instance", "doctor", *args],
                                cwd=REPO, env=_env(home), capture_output=True, text=True, timeout=TIMEOUT)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    dry = doctor("--dry-run")
    assert f"would fix: run {dead_run_id} (gpu_job): STARTED" in dry
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(dead_run_id).status == dg.DagsterRunStatus.STARTED
        assert len(instance.event_log_storage.get_concurrency_info("gpu").claimed_slots) == 1

    fixed = doctor()
    assert f"fixed: run {dead_run_id} (gpu_job): STARTED" in fixed
    assert f"fixed: run {dead_run_id}: freed the pool slots" in fixed
    assert doctor().strip() == "nothing to fix"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(dead_run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []


def test_doctor_ends_untagged_run_only_when_named(home, monkeypatch, capsys):
    """A run without a worker tag (started before ohlora_dagster.instance) is left alone unless
    named with --end; then it is FAILED and its slot is free."""
    from ohlora_dagster.instance import main

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.add_run(dg.DagsterRun(job_name="legacy", status=dg.DagsterRunStatus.STARTED))
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        assert instance.event_log_storage.claim_concurrency_slot("gpu", run.run_id, "step").is_claimed

    main(["doctor"])
    out = capsys.readouterr().out
    assert f"doctor --end {run.run_id}" in out and "nothing to fix" in out
    main(["doctor", "--end", run.run_id])
    out = capsys.readouterr().out
    assert f"fixed: run {run.run_id} (legacy): STARTED, asked to end it -> FAILURE" in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []


# Runs the dagster CLI once dagster is imported and argv[2] processes are ready (a file each in
# argv[1]), so that they create the instance at the same moment: import times vary by seconds.
AT_THE_SAME_TIME = """
import glob, os, sys, time
from dagster._cli import main
folder, count = sys.argv.pop(1), int(sys.argv.pop(1))
open(os.path.join(folder, f"ready.{os.getpid()}"), "w").close()
deadline = time.monotonic() + 60
while len(glob.glob(os.path.join(folder, "ready.*"))) < count and time.monotonic() < deadline:
    time.sleep(0.001)
main()
"""


@pytest.mark.parametrize("attempt", range(3))
def test_two_runs_create_new_instance_at_once(tmp_path, attempt):
    """Defect B: two CLI runs start at once on an empty DAGSTER_HOME; both succeed, the instance
    stays usable and every database has exactly one schema version (no "more than one head")."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        (REPO / "dagster.yaml").read_text().replace("storage/dagster", str(home)))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", AT_THE_SAME_TIME, str(barrier), "2",
                               *execute_args(home, f"run{i}", 0, in_process=True)],
                              cwd=REPO, env=_env(home), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output

    for db in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        with sqlite3.connect(home / db) as conn:
            versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(versions) == 1, (db, versions)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        db_revision, head_revision = instance.run_storage.alembic_version()
        assert db_revision == head_revision
        runs = instance.get_runs()
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
    info = _dagster(home, "instance", "info")
    assert info.returncode == 0, info.stdout + info.stderr
