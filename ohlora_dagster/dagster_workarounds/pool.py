"""Waiting for a pool slot, fixed where Dagster 1.13 fails: the wait sleeps, a freed slot is not lost,
a slot goes to one step only, and a pool's first set-up by two runs at once does not fail one of them.
The incidents behind each: docs/dagster_workarounds.md.
"""

from __future__ import annotations

import functools
import time

MAX_NAP = 0.25  # seconds; a multiprocess run also handles its running steps' events between naps

# The Dagster code these workarounds wrap, replace or read the insides of, as of pins.CHECKED_AGAINST:
# {dotted name: (source digest, what to re-check when it changed)}
PINNED = {
    "dagster._core.execution.plan.active.ActiveExecution.get_steps_to_execute": (
        "682e584ce6cbf345",
        "the nap: still claims, still returns [] while blocked",
    ),
    "dagster._core.execution.plan.instance_concurrency_context.InstanceConcurrencyContext": (
        "b8e7057334156c8b",
        "the nap reads _pending_timeouts and pending_claim_steps()",
    ),
    "dagster._core.storage.event_log.sql_event_log.SqlEventLogStorage.claim_concurrency_slot": (
        "cbfe2436f7e3b1e6",
        "the lost slot: check-then-queue still unguarded?",
    ),
    "dagster._core.storage.event_log.sql_event_log.SqlEventLogStorage._claim_concurrency_slot": (
        "7628812bbe08bc3e",
        "re-implemented in _take_free_slot: same select, same result values",
    ),
    "dagster._core.storage.event_log.sql_event_log.SqlEventLogStorage.initialize_concurrency_limit_to_default": (
        "6d44fe17c895aa29",
        "the set-up race: insert-then-update in one transaction?",
    ),
    "dagster._core.storage.event_log.sql_event_log.SqlEventLogStorage.assign_pending_steps": (
        "d7d5d9f84bd42141",
        "hands free slots to the queue's head (used by _requeue_lost_slot)",
    ),
}


def _nap(ctx) -> float:
    due = getattr(ctx, "_pending_timeouts", {})
    times = [due[k] for k in ctx.pending_claim_steps() if k in due]
    return min(MAX_NAP, max(0.0, min(times) - time.time())) if times else 0.0


def _napping(get_steps_to_execute):
    """Dagster's executors re-check a blocked pool claim without sleeping: a waiting run spins a core.
    Ours sleeps until the next claim check, at most MAX_NAP at a time.
    Story: docs/dagster_workarounds.md#the-wait-sleeps"""

    @functools.wraps(get_steps_to_execute)
    def wrapper(self, limit=None):
        steps = get_steps_to_execute(self, limit)
        ctx = getattr(self, "_instance_concurrency_context", None)
        if not steps and ctx is not None and ctx.has_pending_claims():
            time.sleep(_nap(ctx))
        return steps

    wrapper.ohlora_workaround = "nap"
    return wrapper


def _requeue_lost_slot(claim):
    """Dagster checks for a free slot, then queues the step: a slot freed in between goes to nobody.
    A claim left unassigned while the pool has a free slot hands it to the queue's head and claims again.
    Story: docs/dagster_workarounds.md#a-freed-slot-is-not-lost"""

    @functools.wraps(claim)
    def claim_concurrency_slot(self, concurrency_key, run_id, step_key, priority=None):
        status = claim(self, concurrency_key, run_id, step_key, priority)
        if not status.is_assigned and self.has_unassigned_slots(concurrency_key):
            self.assign_pending_steps([concurrency_key])
            status = claim(self, concurrency_key, run_id, step_key, priority)
        return status

    claim_concurrency_slot.ohlora_workaround = "requeue"
    return claim_concurrency_slot


def _take_free_slot(self, concurrency_key, run_id, step_key):
    """Dagster selects a free slot FOR UPDATE, then writes it by id: under autocommit two steps take it.
    Ours writes only a slot that is still free; the loser tries the next, else stays blocked.
    Story: docs/dagster_workarounds.md#one-slot-one-step"""
    import sqlalchemy as db
    from dagster._core.storage.event_log.schema import ConcurrencySlotsTable as slots
    from dagster._utils.concurrency import ConcurrencySlotStatus

    free = db.and_(slots.c.concurrency_key == concurrency_key, slots.c.step_key.is_(None), slots.c.deleted == False)  # noqa: E712 - SQL, as Dagster writes it
    with self.index_connection() as conn:
        for (slot_id,) in conn.execute(db.select(slots.c.id).where(free).order_by(slots.c.id)).fetchall():
            taken = conn.execute(
                slots.update().values(run_id=run_id, step_key=step_key).where(db.and_(slots.c.id == slot_id, free))
            ).rowcount
            if taken:
                return ConcurrencySlotStatus.CLAIMED
    return ConcurrencySlotStatus.BLOCKED


_take_free_slot.ohlora_workaround = "take-once"


def _tolerate_concurrent_setup(initialize):
    """Two runs setting up a pool's default limit at once on Postgres: the second's transaction aborts.
    When the limit is there as configured after all, the other run set it up and the claim goes on.
    Story: docs/dagster_workarounds.md#a-pools-first-set-up"""

    @functools.wraps(initialize)
    def initialize_concurrency_limit_to_default(self, concurrency_key):
        from sqlalchemy.exc import DBAPIError

        try:
            return initialize(self, concurrency_key)
        except DBAPIError:
            pool = {p.name: p for p in self.get_pool_limits()}.get(concurrency_key)
            default = self._instance.global_op_concurrency_default_limit
            if pool is None or (pool.from_default and pool.limit != default):
                raise
            return True

    initialize_concurrency_limit_to_default.ohlora_workaround = "tolerate-setup"
    return initialize_concurrency_limit_to_default


def _installed(function) -> bool:
    return hasattr(function, "ohlora_workaround")


def install() -> None:
    """Idempotent: each patch is applied once per process."""
    from dagster._core.execution.plan.active import ActiveExecution
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage as Sql

    if not _installed(ActiveExecution.get_steps_to_execute):
        ActiveExecution.get_steps_to_execute = _napping(ActiveExecution.get_steps_to_execute)
    if not _installed(Sql.claim_concurrency_slot):
        Sql.claim_concurrency_slot = _requeue_lost_slot(Sql.claim_concurrency_slot)
    if not _installed(Sql._claim_concurrency_slot):
        _take_free_slot.__wrapped__ = Sql._claim_concurrency_slot
        Sql._claim_concurrency_slot = _take_free_slot
    if not _installed(Sql.initialize_concurrency_limit_to_default):
        Sql.initialize_concurrency_limit_to_default = _tolerate_concurrent_setup(
            Sql.initialize_concurrency_limit_to_default
        )
