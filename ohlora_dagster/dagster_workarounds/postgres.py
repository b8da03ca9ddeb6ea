"""The instance storage `deploy/dagster-postgres.yaml` names: Dagster's Postgres storage (same tables, same
config: postgres_url or postgres_db) with the dead-run recovery of the SQLite one, and the workarounds of
this package installed. Needs dagster-postgres (the [k8s] / [test] extras); only this module imports it.
"""

from __future__ import annotations

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from ohlora_dagster.dagster_workarounds import install
from ohlora_dagster.dagster_workarounds.recovery import RecordsWorker, RecoversWhenBlocked

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster_postgres.storage.DagsterPostgresStorage.__init__": (
        "8e85b361f6594901",
        "re-implemented in OhloraPostgresStorage.__init__: same three storages, same arguments?",
    ),
    "dagster_postgres.storage.DagsterPostgresStorage.from_config_value": (
        "d6d1114f16d05e2b",
        "re-implemented in OhloraPostgresStorage.from_config_value: same config keys?",
    ),
}


class OhloraPostgresRunStorage(RecordsWorker, PostgresRunStorage):
    pass


class OhloraPostgresEventLogStorage(RecoversWhenBlocked, PostgresEventLogStorage):
    pass


class OhloraPostgresStorage(DagsterPostgresStorage):
    """Dagster's Postgres storage records no run process: a run killed (e.g. by a database outage) kept
    the gpu slot forever. Ours records it and recovers dead runs as the SQLite storage does.
    Story: docs/dagster_workarounds.md#a-killed-run-gives-its-slot-back"""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        install()
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = OhloraPostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._event_log_storage = OhloraPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = PostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
