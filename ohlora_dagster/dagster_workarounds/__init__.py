"""Every use of Dagster's internals (`dagster._core`, `dagster._utils`) in ohlora, quarantined here.

`install()` puts the patches into the running process (pool waits, interrupts, the blocked message). Only
the instance storage classes call it: sqlite.OhloraSqliteStorage (`dagster.yaml`) and
postgres.OhloraPostgresStorage (`deploy/dagster-postgres.yaml`), so every process that opens the instance
(CLI run, step process, webserver, daemon) has them and importing `ohlora_dagster` changes nothing.
Each module lists the Dagster code it depends on in PINNED (checked against pins.CHECKED_AGAINST; a test
fails when that code changes). Why each workaround exists: docs/dagster_workarounds.md.
"""

from __future__ import annotations

MODULES = (
    "pool",
    "interrupts",
    "blocked",
    "recovery",
    "sqlite",
    "postgres",
    "stale",
    "reexecute",
    "run_failure",
)  # each has PINNED


def install() -> None:
    """Apply every patch to this process; idempotent."""
    from ohlora_dagster.dagster_workarounds import blocked, interrupts, pool

    pool.install()
    interrupts.install()
    blocked.install()
