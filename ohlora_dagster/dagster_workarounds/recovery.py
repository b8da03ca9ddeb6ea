"""Dead-run recovery: each run records the process that runs it (`ohlora/worker`); a run whose process is
gone is ended and its pool slots are freed, at every run start, whenever a step is blocked on a pool, and
by hand (`python -m ohlora_dagster.instance doctor`). Why Dagster 1.13 needs it: docs/dagster_workarounds.md.
"""

from __future__ import annotations

import logging
import os
import socket

import dagster as dg

WORKER_TAG = "ohlora/worker"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
log = logging.getLogger(__name__)

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster._core.storage.event_log.sql_event_log.SqlEventLogStorage.free_concurrency_slots_for_run": (
        "5881be36a0a96fab",
        "still frees a run's claimed slots and its queued claims, and hands the slots on?",
    ),
    "dagster._core.storage.event_log.sql_event_log.SqlEventLogStorage.get_concurrency_run_ids": (
        "03854335cddce114",
        "still every run with a row in the pending-steps table (holding or waiting)?",
    ),
    "dagster._core.storage.runs.sql_run_storage.SqlRunStorage.handle_run_event": (
        "1c95c3b77926acd3",
        "RUN_START still arrives here from the run's own process (the tag is written then)?",
    ),
}


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
    """The `ohlora/worker` tag value for the current process: host, pid and start time (tells a reused pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def worker_alive(run: dg.DagsterRun) -> bool | None:
    """Whether the process running `run` is alive; None if unknown (no tag, or another host)."""
    host, _, rest = run.tags.get(WORKER_TAG, "").partition(":")
    if host != socket.gethostname():
        return None
    pid, _, start = rest.partition(":")
    return _process_start(int(pid)) == start


def describe_worker(run: dg.DagsterRun) -> str:
    """The run's worker in words, for messages."""
    worker = run.tags.get(WORKER_TAG)
    if worker is None:
        return "worker not recorded"
    alive = worker_alive(run)
    if alive is None:
        return f"worker {worker} on another host, cannot be checked here"
    return f"process {worker} {'alive' if alive else 'gone'}"


# --- recovery --------------------------------------------------------------------------------


def recover_dead_runs(
    instance: dg.DagsterInstance, dry_run: bool = False, end: frozenset[str] = frozenset()
) -> list[str]:
    """End in-progress runs whose process is gone and free the pool slots of runs that are over.

    `end`: run ids to treat as dead whatever their tag says (the caller checks they are not alive here).
    Returns one line per fix (what would be fixed, with `dry_run`).
    """
    fixes, dead = [], set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        if run.run_id not in end and worker_alive(run) is not False:
            continue
        canceling = run.status == dg.DagsterRunStatus.CANCELING
        why = (
            f"asked to end it ({describe_worker(run)})"
            if run.run_id in end
            else f"its process {run.tags[WORKER_TAG]} is gone"
        )
        fixes.append(
            f"run {run.run_id} ({run.job_name}): {run.status.value}, {why} -> {'CANCELED' if canceling else 'FAILURE'}"
        )
        dead.add(run.run_id)
        if not dry_run:
            message = f"Ended by ohlora's dead-run recovery: {why} (killed or crashed)."
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


def recover_quietly(storage) -> list[str]:
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


# --- what the storage classes add ------------------------------------------------------------


class RecordsWorker:
    """Run storage mixin: Dagster records no process for a CLI run, so a killed run looks alive forever.
    Ours tags the run with its process when it starts, then recovers runs whose process is gone.
    Story: docs/dagster_workarounds.md#a-killed-run-gives-its-slot-back"""

    def handle_run_event(self, run_id, event, update_timestamp=None):
        starting = event.event_type == dg.DagsterEventType.RUN_START  # emitted by the run's own process
        if starting:
            self.add_run_tags(run_id, {WORKER_TAG: this_worker()})
        super().handle_run_event(run_id, event, update_timestamp)
        if starting:
            recover_quietly(self)


class RecoversWhenBlocked:
    """Event log storage mixin: a step blocked on a pool waits forever for the slot of a dead run.
    Ours recovers dead runs when a claim is blocked and claims again if that freed anything.
    Story: docs/dagster_workarounds.md#a-killed-run-gives-its-slot-back"""

    def claim_concurrency_slot(self, concurrency_key, run_id, step_key, priority=None):
        status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        if not status.is_claimed and recover_quietly(self):
            status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        return status
