"""Waiting for a pool slot, fixed twice: the wait sleeps, and it ends when the slot is free.

**It sleeps.** Dagster 1.13 spins a CPU core while a step waits for a pool slot.

While a step is blocked on a pool, Dagster asks for the slot again only every 1..15 s (its back-off),
but neither executor sleeps in between: the in-process executor's sleep interval
(`InstanceConcurrencyContext.interval_to_next_pending_claim_check`) is `min(0, ...)`, never positive,
and the multiprocess executor's loop has no sleep at all. `bench/pool_wait.py`: a run blocked on `gpu` used
10 s of CPU per 10 s of waiting, with either executor. (dagster-io/dagster#20367 fixed the first and
was closed unmerged.)

`install()` wraps `ActiveExecution.get_steps_to_execute`: when no step can start while claims are
pending, it sleeps until the next claim check, at most 0.25 s (so a multiprocess run still handles
the events of its running steps promptly). The "blocked by limit for pool" message is Dagster's own:
logged once, repeated every 5 minutes while blocked.

**It ends.** Dagster's claim (`SqlEventLogStorage.claim_concurrency_slot`, SQLite and Postgres alike)
asks whether the pool has a free slot and then queues the step, marked "assigned" if it had, in two
unguarded statements. When the slot's holder frees it in between, the holder hands the slot to the
queue before the step is in it, and the step is queued unassigned: nobody assigns a free slot to it
again, and the run waits forever (seen as two runs started at once on a fresh instance where the first
run's step took no time; tests/test_instance.py replays the interleaving). `install()` wraps the claim:
a claim left unassigned while the pool has a slot no queued step holds hands that slot to the queue's
head (Dagster's own `assign_pending_steps`, priority then age) and claims again.
"""
from __future__ import annotations

import functools
import time

MAX_NAP = 0.25


def _nap(ctx) -> float:
    due = getattr(ctx, "_pending_timeouts", {})
    times = [due[k] for k in ctx.pending_claim_steps() if k in due]
    return min(MAX_NAP, max(0.0, min(times) - time.time())) if times else 0.0


def _requeue_lost_slot(claim):
    @functools.wraps(claim)
    def claim_concurrency_slot(self, concurrency_key, run_id, step_key, priority=None):
        status = claim(self, concurrency_key, run_id, step_key, priority)
        if not status.is_assigned and self.has_unassigned_slots(concurrency_key):
            self.assign_pending_steps([concurrency_key])
            status = claim(self, concurrency_key, run_id, step_key, priority)
        return status

    claim_concurrency_slot.ohlora_requeues = True
    return claim_concurrency_slot


def install() -> None:
    """Idempotent; runs on import of ohlora_dagster (every run worker imports it, via the code location
    or the instance's storage class)."""
    from dagster._core.execution.plan.active import ActiveExecution
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    if not getattr(SqlEventLogStorage.claim_concurrency_slot, "ohlora_requeues", False):
        SqlEventLogStorage.claim_concurrency_slot = _requeue_lost_slot(SqlEventLogStorage.claim_concurrency_slot)

    original = ActiveExecution.get_steps_to_execute
    if getattr(original, "ohlora_naps", False):
        return

    @functools.wraps(original)
    def get_steps_to_execute(self, limit=None):
        steps = original(self, limit)
        ctx = getattr(self, "_instance_concurrency_context", None)
        if not steps and ctx is not None and ctx.has_pending_claims():
            time.sleep(_nap(ctx))
        return steps

    get_steps_to_execute.ohlora_naps = True
    ActiveExecution.get_steps_to_execute = get_steps_to_execute
