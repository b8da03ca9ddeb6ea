"""The instance storage `dagster.yaml` names: Dagster's SQLite storage (the same files under base_dir),
created under a lock, with dead-run recovery, and the one place (with postgres.py) that installs the
workarounds of this package into the process. Stories: docs/dagster_workarounds.md.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)

from ohlora_dagster.dagster_workarounds import install
from ohlora_dagster.dagster_workarounds.recovery import RecordsWorker, RecoversWhenBlocked

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster._core.storage.sqlite_storage.DagsterSqliteStorage.__init__": (
        "bcf5aa27a5dd083f",
        "re-implemented in OhloraSqliteStorage.__init__: same three storages, same folders?",
    ),
    "dagster._core.storage.sqlite_storage.DagsterSqliteStorage.from_local": (
        "ef1249f539d72156",
        "still creates base_dir and calls cls(base_dir, inst_data=...)?",
    ),
}


class OhloraRunStorage(RecordsWorker, SqliteRunStorage):
    pass


class OhloraEventLogStorage(RecoversWhenBlocked, SqliteEventLogStorage):
    pass


@contextmanager
def _exclusive(path: str):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


class OhloraSqliteStorage(DagsterSqliteStorage):
    """Two Dagster processes creating a new SQLite instance at once can stamp its schema twice (broken).
    Ours opens the databases under an exclusive flock on <base_dir>/.init.lock; adds dead-run recovery.
    Story: docs/dagster_workarounds.md#two-processes-create-the-instance-at-once"""

    def __init__(self, base_dir: str, inst_data=None):
        install()
        self.base_dir = base_dir
        self._inst_data = inst_data
        with _exclusive(os.path.join(base_dir, ".init.lock")):
            self._run_storage = OhloraRunStorage.from_local(_runs_directory(base_dir))
            self._event_log_storage = OhloraEventLogStorage(_event_logs_directory(base_dir))
            self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)  # from_local creates base_dir
