"""A run the preflight refuses ends FAILURE with our message alone: Dagster turns an exception raised by an
executor into "An exception was thrown during execution" plus a stack trace, which an expected mistake must
not show. Story: docs/dagster_workarounds.md#a-refused-run-without-a-stack-trace"""

from __future__ import annotations

PINNED = {
    "dagster._core.execution.api.job_execution_iterator": (
        "49ba219757f1e583",
        "an interrupt of a run already in FAILURE still logs an engine event, not a failure?",
    ),
}


def fail_before_any_step(plan_context, message: str) -> None:
    """Log `message`, record it as the run's one failure, then stop the run's execution."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    plan_context.log.error(message)  # the console of a CLI run; the failure event below is for the instance
    plan_context.instance.report_run_failed(plan_context.dagster_run, message)
    raise DagsterExecutionInterruptedError(message)
