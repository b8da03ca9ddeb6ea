"""Repair the DAGSTER_HOME instance: end runs whose process is gone and free the pool slots they held.

    python -m ohlora_dagster.instance doctor              # fix what can be checked on this host
    python -m ohlora_dagster.instance doctor --dry-run    # only say what it would fix
    python -m ohlora_dagster.instance doctor --end RUN_ID # also end this run (its process cannot be checked)

Runs and waiting steps do the same by themselves (ohlora_dagster/dagster_workarounds/recovery.py); this is
the command for what they cannot decide: a run without a recorded process, or one on another host.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from ohlora_dagster.dagster_workarounds.recovery import (  # noqa: F401 - WORKER_TAG: this module's public names
    IN_PROGRESS,
    WORKER_TAG,
    describe_worker,
    recover_dead_runs,
    worker_alive,
)

PROG = "python -m ohlora_dagster.instance"


class DoctorError(Exception):
    """A request doctor refuses, with the message to print."""


def _check_end(instance: dg.DagsterInstance, run_ids: frozenset[str]) -> None:
    """Refuse --end for a run that does not exist, is alive here, or has nothing left to end."""
    claimants = (
        instance.event_log_storage.get_concurrency_run_ids()
        if instance.event_log_storage.supports_global_concurrency_limits
        else set()
    )
    for run_id in sorted(run_ids):
        run = instance.get_run_by_id(run_id)
        if run is None:
            if run_id in claimants:
                continue  # a deleted run that still holds a slot: freeing it is what was asked
            raise DoctorError(
                f"no run {run_id!r} in this instance (DAGSTER_HOME); the run ids are in the "
                "UI's Runs page and in each run's log lines"
            )
        if worker_alive(run):
            raise DoctorError(
                f"run {run_id} is running: its process {run.tags[WORKER_TAG]} is alive on this "
                "host. Stop it there (Ctrl-C, or kill its pid); doctor ends only dead runs."
            )
        if run.is_finished and run_id not in claimants:
            raise DoctorError(f"run {run_id} is already {run.status.value} and holds no pool slot: nothing to end")


def doctor(dry_run: bool = False, end: frozenset[str] = frozenset()) -> list[str]:
    """Print and fix (unless dry_run) dead runs and leaked pool slots of the DAGSTER_HOME instance."""
    with dg.DagsterInstance.get() as instance:
        _check_end(instance, end)
        fixes = recover_dead_runs(instance, dry_run=dry_run, end=end)
        for fix in fixes:
            print(("would fix: " if dry_run else "fixed: ") + fix)
        for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
            run = record.dagster_run
            if run.run_id in end:
                continue
            if worker_alive(run) is None:
                print(
                    f"left alone: run {run.run_id} ({run.status.value}), {describe_worker(run)}; "
                    f"if it is dead: {PROG} doctor --end {run.run_id}"
                )
            else:
                print(f"running: run {run.run_id} ({run.status.value}), process {run.tags[WORKER_TAG]}")
        if not fixes:
            print("nothing to fix")
        return fixes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor_cmd = commands.add_parser("doctor", help="end runs whose process is gone, free their pool slots")
    doctor_cmd.add_argument("--dry-run", action="store_true", help="only print what would be fixed")
    doctor_cmd.add_argument(
        "--end",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="also end this run and free its slots: a run whose process cannot be checked "
        "here (not recorded, or on another host) and that you know is dead",
    )
    args = parser.parse_args(argv)
    try:
        doctor(dry_run=args.dry_run, end=frozenset(args.end))
    except DoctorError as error:
        print(f"{PROG} doctor: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
