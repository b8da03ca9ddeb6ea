"""The job of a run, rebuilt from the code location the run was launched from (module or file, working
directory, job name), as Dagster's run worker rebuilds it: what `python -m ohlora_dagster.reexecute`
re-executes, since Dagster 1.13's CLI has no re-execute command.
"""

from __future__ import annotations

import dagster as dg

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster._utils.hosted_user_process.recon_job_from_origin": (
        "a53a3902cce7a134",
        "still rebuilds a ReconstructableJob from DagsterRun.job_code_origin?",
    ),
}


def job_of(run: dg.DagsterRun):
    """Dagster's CLI cannot re-execute a run (only the UI can); a CLI run's job has no public rebuild.
    Ours rebuilds it from the run's recorded code origin, as `dagster api execute_run` does.
    Story: docs/dagster_workarounds.md#re-execute-from-the-command-line"""
    from dagster._utils.hosted_user_process import recon_job_from_origin

    if run.job_code_origin is None:
        raise ValueError(f"run {run.run_id} records no code location to rebuild its job from")
    return recon_job_from_origin(run.job_code_origin)
