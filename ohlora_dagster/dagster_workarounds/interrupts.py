"""SIGINT and SIGTERM end a run whose step waits for a pool slot, within a nap, as CANCELED; its claim is
withdrawn (Dagster's InstanceConcurrencyContext does that on the way out) and no slot is taken.
Why Dagster 1.13 ignored them, and what it did with the multiprocess executor: docs/dagster_workarounds.md.
"""

from __future__ import annotations

import functools
import logging
import time

import dagster as dg

from ohlora_dagster.dagster_workarounds.pool import MAX_NAP

log = logging.getLogger(__name__)

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster._core.execution.plan.active.ActiveExecution.sleep_til_ready": (
        "bad9225fc3c67290",
        "wrapped: still only called by the in-process loop, with no step in flight?",
    ),
    "dagster._core.execution.plan.active.ActiveExecution.sleep_interval": (
        "f49c9f3e9028a7d1",
        "still 0 while a claim is pending (the nap sleeps), else the retry wait?",
    ),
    "dagster._core.execution.plan.active.ActiveExecution.mark_interrupted": (
        "8cedebabf164d0a7",
        "wrapped: still what the multiprocess / step-delegating executors call on a signal?",
    ),
    "dagster._core.execution.plan.execute_plan.inner_plan_execution_iterator": (
        "87243a56e08e8a6a",
        "the in-process loop: sleep_til_ready when no step can start, never with one running?",
    ),
    "dagster._core.executor.multiprocess.MultiprocessExecutor.execute": (
        "60b1287e2c5b3cd8",
        "still checks check_for_interrupts() each loop and raises once children are done?",
    ),
    "dagster._core.execution.api.job_execution_iterator": (
        "49ba219757f1e583",
        "an interrupted run that is CANCELING still ends CANCELED?",
    ),
    "dagster._utils.interrupts.capture_interrupts": (
        "9092d28bdcd6461b",
        "a signal still only sets the flag that check_captured_interrupt() reads?",
    ),
}


def _cancel_if_waiting(active) -> None:
    """Mark the run CANCELING (so Dagster ends it CANCELED, not 'interrupted unexpectedly') when one of
    its steps waits for a pool slot."""
    ctx = getattr(active, "_instance_concurrency_context", None)
    if ctx is None or not ctx.has_pending_claims():
        return
    run = ctx._instance.get_run_by_id(ctx._run_id)
    if run is None or run.is_finished or run.status == dg.DagsterRunStatus.CANCELING:
        return
    steps = ", ".join(sorted(ctx.pending_claim_steps()))
    message = (
        f"Interrupted (SIGINT or SIGTERM) while {steps} waited for a pool slot: run {run.run_id} ends as "
        f"CANCELED and leaves the queue (re-run it: python -m ohlora_dagster.reexecute {run.run_id})"
    )
    log.warning("ohlora: %s", message)  # the terminal's copy: a CLI run prints no RUN_CANCELING event
    ctx._instance.report_run_canceling(run, message=message)


def _interruptible(sleep_til_ready):
    """The in-process executor sleeps between claim checks and only looks at a captured signal once a step
    runs: a waiting run ignored Ctrl-C and SIGTERM. Ours looks while it waits and ends the run.
    Story: docs/dagster_workarounds.md#waiting-is-interruptible"""
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._utils.interrupts import check_captured_interrupt, pop_captured_interrupt

    @functools.wraps(sleep_til_ready)
    def wrapper(self):
        deadline = time.monotonic() + max(0.0, self.sleep_interval())
        while True:
            if check_captured_interrupt():  # the in-process loop calls this with no step in flight
                pop_captured_interrupt()
                self.mark_interrupted()
                raise DagsterExecutionInterruptedError("interrupted while waiting to start a step")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(MAX_NAP, left))

    wrapper.ohlora_workaround = "interruptible"
    return wrapper


def _cancels_waiting_run(mark_interrupted):
    """Dagster ends a run interrupted while it waits as FAILURE, 'interrupted unexpectedly', traceback included.
    Ours marks it CANCELING first, so it ends CANCELED with a message that says what was interrupted.
    Story: docs/dagster_workarounds.md#waiting-is-interruptible"""

    @functools.wraps(mark_interrupted)
    def wrapper(self):
        _cancel_if_waiting(self)
        return mark_interrupted(self)

    wrapper.ohlora_workaround = "cancel-waiting"
    return wrapper


def install() -> None:
    """Idempotent: each patch is applied once per process."""
    from dagster._core.execution.plan.active import ActiveExecution

    if not hasattr(ActiveExecution.sleep_til_ready, "ohlora_workaround"):
        ActiveExecution.sleep_til_ready = _interruptible(ActiveExecution.sleep_til_ready)
    if not hasattr(ActiveExecution.mark_interrupted, "ohlora_workaround"):
        ActiveExecution.mark_interrupted = _cancels_waiting_run(ActiveExecution.mark_interrupted)
