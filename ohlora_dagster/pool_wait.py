"""Waiting for a pool slot, fixed where Dagster 1.13 fails: the wait sleeps, ends when the slot is free,
a slot goes to one step only, and a pool's first claim by two runs at once does not fail one of them.

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

**One slot, one step.** Taking a slot (`_claim_concurrency_slot`) selects a free slot `FOR UPDATE`, then
writes the step into it by id alone. Dagster's Postgres connections autocommit, so the lock ends with the
select: two assigned steps can select the same free slot and both write it, and both run (seen once in
7 tries of tests/test_postgres.py: the two runs' gpu steps overlapped; a test there replays it). `install()` replaces it with the
same select and a conditional write (`... WHERE id = ? AND step_key IS NULL`): the loser tries the next
free slot, else stays blocked as if it had found none.

**It starts.** The first claim on a pool sets the pool's default limit
(`initialize_concurrency_limit_to_default`: insert the limit row; if it exists, update it in the same
transaction). Two runs doing that at once on Postgres: the second insert fails on the first's row,
Postgres aborts the transaction, the update fails too ("current transaction is aborted") and the
second run's step fails. Seen as 3 of 10 tries of tests/test_postgres.py's two runs started at once.
`install()` wraps it: when it fails and the pool's limit is, after all, there as configured, the other
run has set it up and the claim goes on; any other failure is raised as it was.
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


def _take_free_slot(self, concurrency_key, run_id, step_key):
    import sqlalchemy as db
    from dagster._core.storage.event_log.schema import ConcurrencySlotsTable as slots
    from dagster._utils.concurrency import ConcurrencySlotStatus

    free = db.and_(slots.c.concurrency_key == concurrency_key, slots.c.step_key.is_(None),
                   slots.c.deleted == False)  # noqa: E712 - SQL, as Dagster writes it
    with self.index_connection() as conn:
        for (slot_id,) in conn.execute(db.select(slots.c.id).where(free).order_by(slots.c.id)).fetchall():
            taken = conn.execute(slots.update().values(run_id=run_id, step_key=step_key)
                                 .where(db.and_(slots.c.id == slot_id, free))).rowcount
            if taken:
                return ConcurrencySlotStatus.CLAIMED
    return ConcurrencySlotStatus.BLOCKED


_take_free_slot.ohlora_takes_once = True


def _tolerate_concurrent_setup(initialize):
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

    initialize_concurrency_limit_to_default.ohlora_tolerates = True
    return initialize_concurrency_limit_to_default


def install() -> None:
    """Idempotent; runs on import of ohlora_dagster (every run worker imports it, via the code location
    or the instance's storage class)."""
    from dagster._core.execution.plan.active import ActiveExecution
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    if not getattr(SqlEventLogStorage.claim_concurrency_slot, "ohlora_requeues", False):
        SqlEventLogStorage.claim_concurrency_slot = _requeue_lost_slot(SqlEventLogStorage.claim_concurrency_slot)
    if not getattr(SqlEventLogStorage._claim_concurrency_slot, "ohlora_takes_once", False):
        _take_free_slot.__wrapped__ = SqlEventLogStorage._claim_concurrency_slot
        SqlEventLogStorage._claim_concurrency_slot = _take_free_slot
    if not getattr(SqlEventLogStorage.initialize_concurrency_limit_to_default, "ohlora_tolerates", False):
        SqlEventLogStorage.initialize_concurrency_limit_to_default = _tolerate_concurrent_setup(
            SqlEventLogStorage.initialize_concurrency_limit_to_default)

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
