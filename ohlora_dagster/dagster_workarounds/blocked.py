"""A step that starts waiting for a pool slot says, once, which run holds the slot and what to run if that
run is dead (`python -m ohlora_dagster.instance doctor`, or `doctor --end RUN_ID` for a run it cannot
check). Dagster's own "Step blocked by limit for pool" line names neither.
"""

from __future__ import annotations

import functools

from ohlora_dagster.dagster_workarounds.recovery import describe_worker, worker_alive

DOCTOR = "python -m ohlora_dagster.instance doctor"

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster._core.execution.plan.active.ActiveExecution.concurrency_event_iterator": (
        "e825f2aadcb04e9b",
        "wrapped: still yields the blocked messages, called by every executor's loop?",
    ),
}


def blocked_hint(instance, run_id: str, step_key: str, pool: str) -> str:
    """What a user reads when `step_key` of run `run_id` starts waiting for `pool`."""
    holders = instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    lines = [f"{step_key} waits for a slot of pool '{pool}'."]
    for slot in holders:
        if slot.run_id == run_id:
            lines.append(f"Step {slot.step_key} of this run holds one; {step_key} starts when it ends.")
            continue
        run = instance.get_run_by_id(slot.run_id)
        if run is None:
            lines.append(f"Run {slot.run_id} (not in this instance) holds one: {DOCTOR} frees it.")
            continue
        who = f"Run {run.run_id} ({run.job_name}, {run.status.value}, {describe_worker(run)}) holds one"
        if worker_alive(run) is None:
            lines.append(f"{who}. If that run is dead: {DOCTOR} --end {run.run_id}")
        else:
            lines.append(f"{who}; {step_key} starts when its step {slot.step_key} ends. If that run is dead: {DOCTOR}")
    if not holders:
        lines.append(f"No run holds a slot now; it is being handed on. If this lasts: {DOCTOR}")
    lines.append("Ctrl-C (or SIGTERM) ends this run as CANCELED.")
    return " ".join(lines)


def _hinting(concurrency_event_iterator):
    """Dagster's blocked message names neither the run holding the slot nor what to do if it is dead.
    Ours follows it once per waiting step with the holder and the doctor command that frees its slot.
    Story: docs/dagster_workarounds.md#the-blocked-message-says-what-to-do"""
    from dagster._core.events import DagsterEvent, EngineEventData

    @functools.wraps(concurrency_event_iterator)
    def wrapper(self, plan_context):
        yield from concurrency_event_iterator(self, plan_context)
        ctx = self._instance_concurrency_context
        if ctx is None:
            return
        hinted = self.__dict__.setdefault("_ohlora_hinted", set())
        for step_key in ctx.pending_claim_steps():
            if step_key in hinted:
                continue
            hinted.add(step_key)
            step = self.get_step_by_key(step_key)
            pool = step.pool or step.tags.get("dagster/concurrency_key", "")  # as Dagster reads it
            try:
                hint = blocked_hint(plan_context.instance, plan_context.run_id, step_key, pool)
            except Exception as error:  # noqa: BLE001 - a hint must never break the run
                hint = f"{step_key} waits for a slot of pool '{pool}' ({error!r}). If this lasts: {DOCTOR}"
            yield DagsterEvent.engine_event(plan_context.for_step(step), hint, EngineEventData())

    wrapper.ohlora_workaround = "blocked-hint"
    return wrapper


def install() -> None:
    """Idempotent: the patch is applied once per process."""
    from dagster._core.execution.plan.active import ActiveExecution

    if not hasattr(ActiveExecution.concurrency_event_iterator, "ohlora_workaround"):
        ActiveExecution.concurrency_event_iterator = _hinting(ActiveExecution.concurrency_event_iterator)
