"""Re-execute a run of this code location on the DAGSTER_HOME instance, from the CLI:

    python -m ohlora_dagster.reexecute RUN_ID          # from failure: failed and not-run steps only
    python -m ohlora_dagster.reexecute RUN_ID --all    # every step of the run again

Dagster 1.13's CLI has no re-execute command (the UI has: the run's page -> Re-execute -> From
failure). The new run reuses the parent run's config and asset selection, is linked to it as its
child in the UI, and runs in this process (like `dg launch` with the in-process executor config).
"""
from __future__ import annotations

import argparse
import os
import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

def reexecute(run_id: str, instance: dg.DagsterInstance, from_failure: bool = True) -> dg.ExecuteJobResult:
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise SystemExit(f"no run {run_id} in the instance at DAGSTER_HOME")
    if from_failure and run.status != dg.DagsterRunStatus.FAILURE:
        raise SystemExit(f"run {run_id} is {run.status.value}, not FAILURE: nothing to re-execute from failure "
                         "(use --all to run every step again)")
    options = (dg.ReexecutionOptions.from_failure(run_id, instance) if from_failure
               else dg.ReexecutionOptions(parent_run_id=run_id))
    # the run's job (ohlora_pipeline, or __ASSET_JOB for an asset selection) from this code location, rebuilt
    # by name in the step processes as `dagster job execute -m` does
    job = ReconstructableRepository.for_module("ohlora_dagster.definitions", "defs",
                                               working_directory=os.getcwd()).get_reconstructable_job(run.job_name)
    return dg.execute_job(job, instance, reexecution_options=options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ohlora_dagster.reexecute", description=__doc__.split("\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--all", action="store_true", help="every step again, not only the failed ones")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        result = reexecute(args.run_id, instance, from_failure=not args.all)
    print(f"run {result.run_id} (re-execution of {args.run_id}): {'SUCCESS' if result.success else 'FAILURE'}")
    sys.exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
