"""A step waiting for a pool slot waits asleep (Dagster 1.13 spins a CPU core instead).

While a step is blocked on a pool, Dagster asks for the slot again only every 1..15 s (its back-off),
but neither executor sleeps in between: the in-process executor's sleep interval
(`InstanceConcurrencyContext.interval_to_next_pending_claim_check`) is `min(0, ...)`, never positive,
and the multiprocess executor's loop has no sleep at all. Measured here: a run blocked on `gpu` used
10 s of CPU per 10 s of waiting, with either executor. (dagster-io/dagster#20367 fixed the first and
was closed unmerged.)

`install()` wraps `ActiveExecution.get_steps_to_execute`: when no step can start while claims are
pending, it sleeps until the next claim check, at most 0.25 s (so a multiprocess run still handles
the events of its running steps promptly). The "blocked by limit for pool" message is Dagster's own:
logged once, repeated every 5 minutes while blocked.
"""
from __future__ import annotations

import functools
import time

MAX_NAP = 0.25


def _nap(ctx) -> float:
    due = getattr(ctx, "_pending_timeouts", {})
    times = [due[k] for k in ctx.pending_claim_steps() if k in due]
    return min(MAX_NAP, max(0.0, min(times) - time.time())) if times else 0.0


def install() -> None:
    """Idempotent; runs on import of ohlora_dagster (every run worker imports it, via the code location
    or the instance's storage class)."""
    from dagster._core.execution.plan.active import ActiveExecution

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
