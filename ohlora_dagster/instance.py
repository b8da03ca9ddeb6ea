"""The ohlora Dagster instance: dead-run recovery and race-free SQLite set-up.

`dagster.yaml` selects this module's storage (`storage: custom: ... OhloraSqliteStorage`), plain
Dagster SQLite storage with two additions that Dagster 1.13 lacks for CLI runs on one machine.

**A killed run gives its pool slot back.** A step in pool `gpu` claims the pool's slot in the
instance; only the process running the run gives it back. After `kill -9` (or OOM, power loss)
nothing does, so every later run waits forever ("Step blocked by limit for pool gpu") and the dead
run stays STARTED. Dagster cannot tell: its run monitoring needs the daemon and a run launcher that
checks worker health, which `DefaultRunLauncher` does not (`supports_check_run_worker_health` is
False) and a `dagster job execute` run has no launcher at all; the daemon frees slots only of runs
that have already *ended* (`run_monitoring.free_slots_after_run_end_seconds`).
So each run records who runs it: when a run starts, its process tags it
`ohlora/worker = <host>:<pid>:<process start time>` (the start time, from /proc, tells a reused pid
from the original). `recover_dead_runs` marks an in-progress run whose process is gone as FAILED
(CANCELED if it was canceling), with Dagster's own `report_run_failed` / `report_run_canceled`,
and frees the pool slots and queued claims of runs that are over
(`event_log_storage.free_concurrency_slots_for_run`). It runs by itself
  - at the start of every run, before that run claims anything, and
  - whenever a step is blocked on a pool, so a run already waiting gets the slot of one that dies,
and by hand as `python -m ohlora_dagster.instance doctor [--dry-run]`. Runs on another host, and
runs without the tag (started before this module), are only ended when named: `doctor --end RUN_ID`.

**Two processes can create the instance at once.** On an empty DAGSTER_HOME every Dagster process
creates the SQLite databases and stamps their schema version, unguarded: two at once can stamp
`runs.db` twice ("alembic_version has more than one head present", after which every command,
`dagster instance migrate` included, fails). Here the databases are opened under an exclusive
`flock` on `<base_dir>/.init.lock`, so the second process finds them complete.
"""
import argparse
import fcntl
import logging
import os
import socket
from contextlib import contextmanager

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)

WORKER_TAG = "ohlora/worker"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
log = logging.getLogger(__name__)


# --- who runs a run --------------------------------------------------------------------------

def _process_start(pid: int) -> str | None:
    """The start time of live process `pid` (clock ticks since boot), None if there is none.

    Without /proc (macOS) only existence can be checked, and "-" stands for the start time.
    """
    if not os.path.exists("/proc/self/stat"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "-"
    try:
        with open(f"/proc/{pid}/stat") as f:
            state, *fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return None if state in ("Z", "X") else fields[18]  # a zombie is dead; field 22 = starttime


def this_worker() -> str:
    """The `ohlora/worker` tag value for the current process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def worker_alive(run: dg.DagsterRun) -> bool | None:
    """Whether the process running `run` is alive; None if unknown (no tag, or another host)."""
    host, _, rest = run.tags.get(WORKER_TAG, "").partition(":")
    if host != socket.gethostname():
        return None
    pid, _, start = rest.partition(":")
    return _process_start(int(pid)) == start


# --- recovery --------------------------------------------------------------------------------

def recover_dead_runs(instance: dg.DagsterInstance, dry_run: bool = False,
                      end: frozenset[str] = frozenset()) -> list[str]:
    """End in-progress runs whose process is gone and free the pool slots of runs that are over.

    `end`: run ids to treat as dead whatever their tag says (runs started before this module).
    Returns one line per fix (what would be fixed, with `dry_run`).
    """
    fixes, dead = [], set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        if run.run_id not in end and worker_alive(run) is not False:
            continue
        canceling = run.status == dg.DagsterRunStatus.CANCELING
        why = "asked to end it" if run.run_id in end else f"its process {run.tags[WORKER_TAG]} is gone"
        fixes.append(f"run {run.run_id} ({run.job_name}): {run.status.value}, {why} "
                     f"-> {'CANCELED' if canceling else 'FAILURE'}")
        dead.add(run.run_id)
        if not dry_run:
            message = f"Ended by ohlora_dagster.instance: {why} (killed or crashed)."
            (instance.report_run_canceled if canceling else instance.report_run_failed)(run, message)

    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        # every run holding or waiting for a pool slot has a row in the pending-steps table
        for run_id in sorted(storage.get_concurrency_run_ids()):
            run = instance.get_run_by_id(run_id)
            if run is None or run_id in dead or run_id in end or (run.is_finished and not worker_alive(run)):
                fixes.append(f"run {run_id}: freed the pool slots and claims it held")
                if not dry_run:
                    storage.free_concurrency_slots_for_run(run_id)
    return fixes


def _recover_quietly(storage) -> list[str]:
    """recover_dead_runs for the automatic paths: log, never break the run that calls it."""
    if not storage.has_instance:
        return []
    try:
        fixes = recover_dead_runs(storage._instance)
    except Exception:  # noqa: BLE001 - recovery is best effort; the doctor command reports errors
        log.warning("ohlora: dead-run recovery failed", exc_info=True)
        return []
    for fix in fixes:
        log.warning("ohlora: recovered %s", fix)
    return fixes


# --- the storage dagster.yaml selects --------------------------------------------------------

class OhloraRunStorage(SqliteRunStorage):
    def handle_run_event(self, run_id, event, update_timestamp=None):
        starting = event.event_type == DagsterEventType.RUN_START  # emitted by the run's own process
        if starting:
            self.add_run_tags(run_id, {WORKER_TAG: this_worker()})
        super().handle_run_event(run_id, event, update_timestamp)
        if starting:
            _recover_quietly(self)


class OhloraEventLogStorage(SqliteEventLogStorage):
    def claim_concurrency_slot(self, concurrency_key, run_id, step_key, priority=None):
        status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        if not status.is_claimed and _recover_quietly(self):
            status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        return status


@contextmanager
def _exclusive(path: str):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


class OhloraSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (same files under base_dir), created under a lock, with recovery."""

    def __init__(self, base_dir: str, inst_data=None):
        self.base_dir = base_dir
        self._inst_data = inst_data
        with _exclusive(os.path.join(base_dir, ".init.lock")):
            self._run_storage = OhloraRunStorage.from_local(_runs_directory(base_dir))
            self._event_log_storage = OhloraEventLogStorage(_event_logs_directory(base_dir))
            self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)  # from_local creates base_dir


# --- python -m ohlora_dagster.instance doctor ------------------------------------------------

def doctor(dry_run: bool = False, end: frozenset[str] = frozenset()) -> None:
    """Print and fix (unless dry_run) dead runs and leaked pool slots of the DAGSTER_HOME instance."""
    with dg.DagsterInstance.get() as instance:
        fixes = recover_dead_runs(instance, dry_run=dry_run, end=end)
        for fix in fixes:
            print(("would fix: " if dry_run else "fixed: ") + fix)
        for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
            run = record.dagster_run
            if run.run_id in end:
                continue
            if worker_alive(run) is None:
                print(f"left alone: run {run.run_id} ({run.status.value}), worker "
                      f"{run.tags.get(WORKER_TAG, 'not recorded')} cannot be checked here; if it is "
                      f"gone: python -m ohlora_dagster.instance doctor --end {run.run_id}")
            else:
                print(f"running: run {run.run_id} ({run.status.value}), process {run.tags[WORKER_TAG]}")
        if not fixes:
            print("nothing to fix")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ohlora_dagster.instance",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor_cmd = commands.add_parser("doctor", help="end runs whose process is gone, free their pool slots")
    doctor_cmd.add_argument("--dry-run", action="store_true", help="only print what would be fixed")
    doctor_cmd.add_argument("--end", action="append", default=[], metavar="RUN_ID",
                            help="also end this run and free its slots (a run that has no worker "
                                 "tag, or runs on another host, and that you know is dead)")
    args = parser.parse_args(argv)
    doctor(dry_run=args.dry_run, end=frozenset(args.end))


if __name__ == "__main__":
    main()
