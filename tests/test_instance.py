"""The instance's workarounds (ohlora_dagster/dagster_workarounds/) on real CLI runs: a killed run gives the
gpu slot back, a waiting run sleeps, says who holds the slot and stops on SIGINT / SIGTERM, two runs can create
a new instance at once, `doctor` repairs by hand; and the Dagster code they depend on is the code they were
checked against.

Each test uses its own DAGSTER_HOME holding the repository's dagster.yaml with its storage paths rewritten (as
.ci/run does), and the tiny jobs of tests/gpu_pool_job.py. Everything that waits polls observable state with a
deadline (tests/pool_runs.py); nothing relies on sleeps being long enough.
"""

import importlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from gpu_pool_job import execute_args
from pool_runs import (
    REPO,
    TIMEOUT,
    assert_stopped_cleanly,
    dagster_cmd,
    dg_launch_cmd,
    hold_slot,
    kill_group,
    start,
    stop_waiting_run,
    wait_for,
    waiting_run_ids,
)
from proc_stats import group_cpu_seconds

from ohlora_dagster.dagster_workarounds.recovery import WORKER_TAG


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh DAGSTER_HOME configured like the repository's instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (REPO / "dagster.yaml").read_text().replace("storage/dagster", str(home))
    (home / "dagster.yaml").write_text(config)
    return home


@pytest.fixture
def instance(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def groups():
    """The process groups a test starts; whatever still runs at its end is killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            kill_group(proc)


def _env(home: Path) -> dict:
    import os

    return {**os.environ, "DAGSTER_HOME": str(home)}


def _dagster(home: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster", *args],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _doctor(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ohlora_dagster.instance", "doctor", *args],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _assert_recovered(home: Path, dead_run_id: str) -> None:
    """The dead run is FAILED, every other run succeeded, and no pool slot or claim is left."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = {run.run_id: run.status for run in instance.get_runs()}
        assert statuses.pop(dead_run_id) == dg.DagsterRunStatus.FAILURE
        assert statuses and set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS}
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
        assert instance.event_log_storage.get_concurrency_run_ids() == set()


# --- the workarounds are installed by the instance, and checked against the Dagster they patch ---------------


def test_importing_ohlora_dagster_patches_nothing_and_the_instance_installs_the_workarounds(home):
    """Quarantine: `import ohlora_dagster` leaves Dagster as it is; opening the instance dagster.yaml names
    (ohlora's storage class) installs every workaround."""
    script = f"""
import dagster as dg, ohlora_dagster, ohlora_dagster.instance, ohlora_dagster.stale, ohlora_dagster.reexecute
from dagster._core.execution.plan.active import ActiveExecution as A
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage as S
patched = lambda: [f.__name__ for f in (A.get_steps_to_execute, A.sleep_til_ready, A.mark_interrupted,
    A.concurrency_event_iterator, S.claim_concurrency_slot, S._claim_concurrency_slot,
    S.initialize_concurrency_limit_to_default) if hasattr(f, "ohlora_workaround")]
assert patched() == [], patched()
with dg.DagsterInstance.from_config({str(home)!r}) as instance:
    assert type(instance.run_storage).__name__ == "OhloraRunStorage"
assert len(patched()) == 7, patched()
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dagster_code_the_workarounds_depend_on_is_unchanged():
    """Each workaround module lists the Dagster functions it patches, re-implements or reads the insides of,
    with a digest of their source as of pins.CHECKED_AGAINST. A Dagster upgrade that changes one fails here,
    naming it and what to re-check (then update the digest; docs/dagster_workarounds.md, 'Upgrading Dagster')."""
    from ohlora_dagster.dagster_workarounds import MODULES
    from ohlora_dagster.dagster_workarounds.pins import CHECKED_AGAINST, source_digest

    changed, checked = [], 0
    for name in MODULES:
        module = importlib.import_module(f"ohlora_dagster.dagster_workarounds.{name}")
        for dotted, (digest, recheck) in module.PINNED.items():
            checked += 1
            if source_digest(dotted) != digest:
                changed.append(
                    f"{dotted} changed since Dagster {CHECKED_AGAINST} (now {dg.__version__}): re-check "
                    f"{recheck} in ohlora_dagster/dagster_workarounds/{name}.py, then record its digest "
                    f"{source_digest(dotted)!r} there"
                )
    assert not changed, "\n".join(changed)
    assert checked >= 20


# --- a killed run gives the slot back -----------------------------------------------------------------------


def test_killed_run_gives_gpu_slot_to_next_run(home, instance, groups):
    """kill -9 while a pool-gpu step runs; the next run recovers it when it starts."""
    proc, dead_run_id, _ = hold_slot(home, _env(home), "killed", groups, instance)
    assert instance.get_run_by_id(dead_run_id).tags[WORKER_TAG].split(":")[1] == str(proc.pid)
    kill_group(proc)

    result = _dagster(home, *execute_args(home, "next", 0, in_process=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"recovered run {dead_run_id}" in result.stderr
    _assert_recovered(home, dead_run_id)


def test_waiting_run_gets_gpu_slot_when_holder_is_killed(home, instance, groups):
    """The other order: a run already blocked on the pool takes over once the holder dies. While blocked it
    sleeps (without that, Dagster's executor loop used a whole core: 10 s of CPU per 10 s waited), says it is
    blocked once (Dagster's line) and once which run holds the slot and what to run if that run is dead."""
    proc, dead_run_id, _ = hold_slot(home, _env(home), "killed", groups, instance)
    waiting = start(dagster_cmd(home, "waiting"), _env(home), home / "waiting.log", groups)
    wait_for(lambda: waiting_run_ids(instance), "the second run to wait for the gpu slot")
    before, t0 = group_cpu_seconds(waiting.pid), time.monotonic()
    time.sleep(6)
    used, waited = group_cpu_seconds(waiting.pid) - before, time.monotonic() - t0
    assert used < 0.25 * waited, f"the blocked run used {used:.1f} s of CPU in {waited:.1f} s"
    kill_group(proc)
    waiting.wait(timeout=TIMEOUT)
    output = (home / "waiting.log").read_text()
    assert waiting.returncode == 0, output
    assert output.count("Step blocked by limit for pool gpu") == 1, output
    hint = f"holds_gpu waits for a slot of pool 'gpu'. Run {dead_run_id} (gpu_job, STARTED, process "
    assert output.count(hint) == 1, output
    assert "If that run is dead: python -m ohlora_dagster.instance doctor" in output
    _assert_recovered(home, dead_run_id)


@pytest.mark.parametrize("requeue", [False, True], ids=["dagster", "ohlora"])
def test_slot_freed_while_a_step_queues_is_not_lost(tmp_path, monkeypatch, requeue):
    """The interleaving behind a run that waited forever: run B asks whether the gpu pool has a free
    slot (no: run A holds it), A frees its slot (and hands it to the queue, still empty), then B queues
    itself unassigned. Dagster's own claim leaves B blocked with the slot free; ours gives B the slot."""
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    from ohlora_dagster.dagster_workarounds import install

    install()
    claim = SqlEventLogStorage.claim_concurrency_slot
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


# --- a waiting run stops on SIGINT / SIGTERM ------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_waiting_run_stops_on_sigint_and_on_sigterm(home, instance, groups, executor):
    """A run holds the slot; a second run waits for it and gets SIGINT (Ctrl-C), a third gets SIGTERM. Each
    exits within seconds as CANCELED, with no slot or queued claim left; the holder keeps the slot and then
    succeeds, and a stopped run can be re-executed. Dagster 1.13's in-process executor ignored both signals
    while it waited (only kill -9 ended it, leaving a dead run); its multiprocess one ended the run FAILURE."""
    env = _env(home)
    holder, holder_run_id, release = hold_slot(home, env, "holder", groups, instance)
    stopped = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        name = f"waiting-{signum.name}"
        cmd = dg_launch_cmd(home, name, in_process=True) if executor == "in_process" else dagster_cmd(home, name)
        run_id, took, output = stop_waiting_run(home, env, name, groups, instance, cmd, signum)
        print(f"{executor}: {signum.name} -> exit in {took:.1f} s")
        assert_stopped_cleanly(instance, run_id, output, holder_run_id)
        assert holder.poll() is None
        stopped.append(run_id)
    release.touch()
    assert holder.wait(timeout=TIMEOUT) == 0, (home / "holder.log").read_text()
    assert instance.get_run_by_id(holder_run_id).status == dg.DagsterRunStatus.SUCCESS
    assert instance.event_log_storage.get_concurrency_run_ids() == set()
    if executor == "in_process":
        again = subprocess.run(
            [sys.executable, "-m", "ohlora_dagster.reexecute", stopped[0]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert again.returncode == 0 and f"(re-execution of {stopped[0]}): SUCCESS" in again.stdout, again.stderr


# --- doctor ---------------------------------------------------------------------------------------------------


def test_doctor_recovers_killed_run(home, instance, groups):
    """Recovery by hand: `python -m ohlora_dagster.instance doctor [--dry-run]`."""
    proc, dead_run_id, _ = hold_slot(home, _env(home), "killed", groups, instance)
    kill_group(proc)

    def doctor(*args):
        result = _doctor(home, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    dry = doctor("--dry-run")
    assert f"would fix: run {dead_run_id} (gpu_job): STARTED" in dry
    assert instance.get_run_by_id(dead_run_id).status == dg.DagsterRunStatus.STARTED
    assert len(instance.event_log_storage.get_concurrency_info("gpu").claimed_slots) == 1

    fixed = doctor()
    assert f"fixed: run {dead_run_id} (gpu_job): STARTED" in fixed
    assert f"fixed: run {dead_run_id}: freed the pool slots" in fixed
    assert doctor().strip() == "nothing to fix"
    assert instance.get_run_by_id(dead_run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []


def _untagged_run_holding_the_slot(instance) -> dg.DagsterRun:
    """A run whose process was never recorded (started before the recovery existed, or by plain Dagster)."""
    run = instance.add_run(dg.DagsterRun(job_name="legacy", status=dg.DagsterRunStatus.STARTED))
    instance.event_log_storage.set_concurrency_slots("gpu", 1)
    assert instance.event_log_storage.claim_concurrency_slot("gpu", run.run_id, "step").is_claimed
    return run


def test_doctor_ends_untagged_run_only_when_named(home, instance, monkeypatch, capsys):
    """A run without a worker tag is left alone unless named with --end; then doctor says it ended a run
    whose worker it could not check, the run is FAILED and its slot is free."""
    from ohlora_dagster.instance import main

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    run = _untagged_run_holding_the_slot(instance)
    main(["doctor"])
    out = capsys.readouterr().out
    assert f"left alone: run {run.run_id} (STARTED), worker not recorded" in out
    assert f"doctor --end {run.run_id}" in out and "nothing to fix" in out
    main(["doctor", "--end", run.run_id])
    out = capsys.readouterr().out
    assert f"fixed: run {run.run_id} (legacy): STARTED, asked to end it (worker not recorded) -> FAILURE" in out
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []


def test_doctor_refuses_to_end_an_unknown_or_live_run(home, instance, groups):
    """`doctor --end` with a run id the instance does not know (a typo) was silently ignored; now it is an
    error naming the id, with a non-zero exit, and nothing is changed. A run whose process is alive on this
    host is refused too (ending it would free the slot while its step still runs)."""
    dead = _untagged_run_holding_the_slot(instance)
    unknown = _doctor(home, "--end", "not-a-run-id")
    assert unknown.returncode == 2 and "no run 'not-a-run-id' in this instance" in unknown.stderr, unknown
    assert "Traceback" not in unknown.stderr
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.STARTED  # nothing changed

    instance.event_log_storage.free_concurrency_slots_for_run(dead.run_id)
    instance.report_run_failed(dead)
    proc, live_run_id, release = hold_slot(home, _env(home), "live", groups, instance)
    live = _doctor(home, "--end", live_run_id)
    assert live.returncode == 2 and f"run {live_run_id} is running: its process" in live.stderr, live
    assert instance.get_run_by_id(live_run_id).status == dg.DagsterRunStatus.STARTED
    finished = _doctor(home, "--end", dead.run_id)
    assert finished.returncode == 2 and "is already FAILURE and holds no pool slot" in finished.stderr
    release.touch()
    assert proc.wait(timeout=TIMEOUT) == 0


def test_blocked_message_names_the_holder_and_doctor_end_for_a_run_it_cannot_check(home, instance):
    """When the slot's holder has no recorded process (or runs on another host), the waiting step's message
    names it and the exact command that frees it: `doctor --end RUN_ID`."""
    from ohlora_dagster.dagster_workarounds.blocked import blocked_hint

    holder = _untagged_run_holding_the_slot(instance)
    hint = blocked_hint(instance, "run-b", "raw_images", "gpu")
    assert hint.startswith("raw_images waits for a slot of pool 'gpu'. ")
    assert f"Run {holder.run_id} (legacy, STARTED, worker not recorded) holds one." in hint
    assert f"If that run is dead: python -m ohlora_dagster.instance doctor --end {holder.run_id}" in hint
    assert "Ctrl-C (or SIGTERM) ends this run as CANCELED." in hint


# --- two processes create the instance at once ---------------------------------------------------------------

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
    """Two CLI runs start at once on an empty DAGSTER_HOME; both succeed, the instance stays usable and every
    database has exactly one schema version (no "more than one head")."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text().replace("storage/dagster", str(home)))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                AT_THE_SAME_TIME,
                str(barrier),
                "2",
                *execute_args(home, f"run{i}", 0, in_process=True),
            ],
            cwd=REPO,
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
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
