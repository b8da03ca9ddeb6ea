"""Re-execute a run on the DAGSTER_HOME instance, from the CLI:

    python -m ohlora_dagster.reexecute RUN_ID          # from failure: failed and not-run steps only
    python -m ohlora_dagster.reexecute RUN_ID --all    # every step of the run again

Dagster 1.13's CLI has no re-execute command (the UI has: the run's page -> Re-execute -> From
failure). The new run reuses the parent run's config and asset selection, is linked to it as its
child in the UI, and runs in this process with the parent's executor. A run that ended FAILURE or
CANCELED (e.g. stopped with Ctrl-C while it waited for the gpu slot) can be re-executed from failure.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from ohlora_dagster.dagster_workarounds.reexecute import job_of

PROG = "python -m ohlora_dagster.reexecute"
RESUMABLE = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)  # as Dagster's from-failure allows


def reexecute(run_id: str, instance: dg.DagsterInstance, from_failure: bool = True) -> dg.ExecuteJobResult:
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise SystemExit(f"{PROG}: no run {run_id!r} in the instance at DAGSTER_HOME")
    if from_failure and run.status not in RESUMABLE:
        raise SystemExit(
            f"{PROG}: run {run_id} is {run.status.value}, not FAILURE or CANCELED: nothing to "
            "re-execute from failure (use --all to run every step again)"
        )
    options = (
        dg.ReexecutionOptions.from_failure(run_id, instance)
        if from_failure
        else dg.ReexecutionOptions(parent_run_id=run_id)
    )
    return dg.execute_job(job_of(run), instance, reexecution_options=options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--all", action="store_true", help="every step again, not only the failed ones")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        result = reexecute(args.run_id, instance, from_failure=not args.all)
    print(f"run {result.run_id} (re-execution of {args.run_id}): {'SUCCESS' if result.success else 'FAILURE'}")
    sys.exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
