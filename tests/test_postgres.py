"""The instance on PostgreSQL (deploy/dagster-postgres.yaml, what README's "Scaling out" tells a deployment
to use; its storage is ohlora's OhloraPostgresStorage): two runs started at once share the `gpu` pool (one
waits for the other) and both finish; a waiting run stops on SIGINT / SIGTERM; a run killed by a database
outage gives its slot back once the database is back; and the pool races Dagster 1.13 loses on Postgres.

Debian's PostgreSQL server (apt package `postgresql`; .ci/run installs it) is started here, private to the
test (tests/postgres_server.py). .ci/run runs README's main job — the whole smoke graph — on the same kind of
private server.
"""

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest
from pool_runs import (
    TIMEOUT,
    assert_stopped_cleanly,
    dagster_cmd,
    dg_launch_cmd,
    hold_slot,
    kill_group,
    start,
    stop_waiting_run,
)

from tests.postgres_server import halt, private_postgres, resume

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres_url():
    # under /tmp: pytest's folders are root-only, and the server runs as user postgres
    with private_postgres(Path(tempfile.mkdtemp(prefix="ohlora-pg-"))) as url:
        yield url


@pytest.fixture
def groups():
    """The process groups a test starts; whatever still runs at its end is killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            kill_group(proc)


def _home(tmp_path: Path, url: str) -> tuple[Path, dict]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = (REPO / "deploy" / "dagster-postgres.yaml").read_text().replace("storage/dagster", str(home))
    (home / "dagster.yaml").write_text(config)
    return home, {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url}


def _instance(tmp_path: Path, url: str, monkeypatch) -> dg.DagsterInstance:
    """An instance on the test's server, configured by deploy/dagster-postgres.yaml (dispose it)."""
    home = tmp_path / "home"
    if not home.exists():
        _home(tmp_path, url)
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    return dg.DagsterInstance.from_config(str(home))


def _clean_pool(instance: dg.DagsterInstance) -> None:
    """The module's server is shared: no slot or claim of an earlier test is left."""
    for run_id in instance.event_log_storage.get_concurrency_run_ids():
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def _ours_or_dagsters(monkeypatch, name: str, ours: bool):
    """SqlEventLogStorage's method `name` as ohlora's workarounds install it, or (ours=False) Dagster's own.
    Call it after opening the instance: opening it installs the workarounds again."""
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    from ohlora_dagster.dagster_workarounds import install

    install()
    method = getattr(SqlEventLogStorage, name)
    assert hasattr(method, "__wrapped__"), f"{name}: ohlora's version not installed"
    if not ours:
        monkeypatch.setattr(SqlEventLogStorage, name, method.__wrapped__)


def test_two_runs_at_once_share_the_gpu_pool_on_postgres(postgres_url, tmp_path, monkeypatch, groups):
    """Two CLI runs (README's `dg launch --job`) started at once: both succeed, their gpu steps never overlap,
    each run records its process (ohlora's storage class is in use)."""
    home, env = _home(tmp_path, postgres_url)
    instance = _instance(tmp_path, postgres_url, monkeypatch)
    try:
        _clean_pool(instance)
        runs = [
            start(dg_launch_cmd(home, name, in_process=True), env, home / f"{name}.log", groups) for name in ("a", "b")
        ]
        for name, proc in zip(("a", "b"), runs):
            assert proc.wait(timeout=TIMEOUT) == 0, (home / f"{name}.log").read_text()[-3000:]
        assert type(instance.run_storage).__name__ == "OhloraPostgresRunStorage"
        records = instance.get_run_records()
        assert len(records) == 2 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        assert all("ohlora/worker" in r.dagster_run.tags for r in records)
        spans = []  # when each run's holds_gpu step (pool gpu) ran: the two must not overlap
        for r in records:
            times = {
                e.dagster_event.event_type_value: e.timestamp
                for e in instance.all_logs(r.dagster_run.run_id)
                if e.dagster_event
                and e.dagster_event.step_key == "holds_gpu"
                and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
            }
            spans.append((times["STEP_START"], times["STEP_SUCCESS"]))
        first, second = sorted(spans)
        assert first[1] <= second[0], spans
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1
    finally:
        instance.dispose()


def test_waiting_run_stops_on_sigint_and_on_sigterm_on_postgres(postgres_url, tmp_path, monkeypatch, groups):
    """As on SQLite (tests/test_instance.py): a run waiting for the slot gets SIGINT, another SIGTERM; each
    ends CANCELED within seconds with no claim left, and the holder keeps its slot and succeeds."""
    home, env = _home(tmp_path, postgres_url)
    instance = _instance(tmp_path, postgres_url, monkeypatch)
    try:
        _clean_pool(instance)
        holder, holder_run_id, release = hold_slot(home, env, "holder", groups, instance)
        for signum in (signal.SIGINT, signal.SIGTERM):
            name = f"waiting-{signum.name}"
            run_id, took, output = stop_waiting_run(
                home, env, name, groups, instance, dg_launch_cmd(home, name, in_process=True), signum
            )
            print(f"postgres: {signum.name} -> exit in {took:.1f} s")
            assert_stopped_cleanly(instance, run_id, output, holder_run_id)
            assert holder.poll() is None
        release.touch()
        assert holder.wait(timeout=TIMEOUT) == 0, (home / "holder.log").read_text()
        assert instance.get_run_by_id(holder_run_id).status == dg.DagsterRunStatus.SUCCESS
        assert instance.event_log_storage.get_concurrency_run_ids() == set()
    finally:
        instance.dispose()


def test_a_run_killed_by_a_database_outage_gives_its_slot_back(tmp_path, monkeypatch, groups):
    """Run A holds the slot; the database stops at once (as in an outage) and A dies of it, its run still
    STARTED and its slot still taken in the database. Once the database is back, run B completes by itself:
    A is ended FAILURE and its slot freed. With Dagster's Postgres storage no run recorded its process, so B
    waited forever and `doctor` said "left alone: worker not recorded". (Own server: this one is stopped.)"""
    folder = Path(tempfile.mkdtemp(prefix="ohlora-pg-"))
    with private_postgres(folder) as url:
        home, env = _home(tmp_path, url)
        instance = _instance(tmp_path, url, monkeypatch)
        try:
            a, a_run_id, release = hold_slot(home, env, "a", groups, instance)
            halt(folder)
            release.touch()  # A's step ends; recording that fails: A retries, then exits
            assert a.wait(timeout=TIMEOUT) != 0
            assert "DagsterPostgresException" in (home / "a.log").read_text()
            resume(folder)
            b = subprocess.run(
                dagster_cmd(home, "b", in_process=True),
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
            assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
            assert f"recovered run {a_run_id} (gpu_job): STARTED, its process" in b.stderr
            statuses = {run.run_id: run.status for run in instance.get_runs()}
            assert statuses.pop(a_run_id) == dg.DagsterRunStatus.FAILURE
            assert list(statuses.values()) == [dg.DagsterRunStatus.SUCCESS]
            assert instance.event_log_storage.get_concurrency_run_ids() == set()
        finally:
            instance.dispose()


@pytest.mark.parametrize("tolerate", [False, True], ids=["dagster", "ohlora"])
def test_second_run_setting_up_the_gpu_pool_at_once_does_not_fail(postgres_url, tmp_path, monkeypatch, tolerate):
    """Two runs' first claims on the gpu pool at once: both set up its default limit. The one that comes
    second hits the other's row; Postgres aborts its transaction, so Dagster's fallback update fails and
    so did that run's step (3 of 10 tries of the test above). Replayed in order: A sets the pool up,
    then B does what it would have done a moment earlier."""
    from sqlalchemy.exc import DBAPIError

    a, b = _instance(tmp_path, postgres_url, monkeypatch), _instance(tmp_path, postgres_url, monkeypatch)
    _ours_or_dagsters(monkeypatch, "initialize_concurrency_limit_to_default", tolerate)
    try:
        _clean_pool(a)
        a.event_log_storage.delete_concurrency_limit("gpu")  # the module's server is shared: start clean
        assert a.event_log_storage.initialize_concurrency_limit_to_default("gpu")
        if tolerate:
            assert b.event_log_storage.initialize_concurrency_limit_to_default("gpu")
        else:
            with pytest.raises(DBAPIError, match="current transaction is aborted"):
                b.event_log_storage.initialize_concurrency_limit_to_default("gpu")
        info = b.event_log_storage.get_concurrency_info("gpu")
        assert (info.slot_count, info.limit, info.using_default_limit) == (1, 1, True)
        assert b.event_log_storage.claim_concurrency_slot("gpu", "run-b", "raw_images").is_claimed
    finally:
        b.event_log_storage.free_concurrency_slots_for_run("run-b")
        a.dispose()
        b.dispose()


class _ATakesTheSlotAfterBLooked:
    """B's connection: right after B's claim has selected a free slot, run A takes that slot."""

    def __init__(self, conn, a_takes):
        self.conn, self.a_takes = conn, a_takes

    def execute(self, statement, *args, **kwargs):
        result = self.conn.execute(statement, *args, **kwargs)
        if self.a_takes and getattr(statement, "is_select", False):
            rows, take, self.a_takes = result.fetchall(), self.a_takes, None
            take()
            return _Rows(rows)
        return result

    def __getattr__(self, name):
        return getattr(self.conn, name)


class _Rows(list):
    def fetchone(self):
        return self[0] if self else None

    def fetchall(self):
        return list(self)


@pytest.mark.parametrize("conditional", [False, True], ids=["dagster", "ohlora"])
def test_a_slot_goes_to_one_step_only(postgres_url, tmp_path, monkeypatch, conditional):
    """Two assigned steps take the pool's one slot at once: B selects the free slot, A takes it, then B
    writes it. Dagster's claim (write by id) takes it from A, so both steps run; ours leaves B blocked."""
    from contextlib import contextmanager

    from dagster._utils.concurrency import ConcurrencySlotStatus

    instance = _instance(tmp_path, postgres_url, monkeypatch)
    _ours_or_dagsters(monkeypatch, "_claim_concurrency_slot", conditional)
    storage = instance.event_log_storage
    try:
        storage.set_concurrency_slots("gpu", 1)
        for run in ("run-a", "run-b"):  # both assigned: the race Dagster's claim leaves open
            storage.add_pending_step("gpu", run, "holds_gpu", should_assign=True)
        connect, a_took = storage.index_connection, []

        @contextmanager
        def b_looks_then_a_takes():  # the first connection is B's; A's claim opens the next one
            with connect() as conn:
                first = not a_took
                a_took.append(None)
                yield (
                    _ATakesTheSlotAfterBLooked(
                        conn, lambda: a_took.append(storage._claim_concurrency_slot("gpu", "run-a", "holds_gpu"))
                    )
                    if first
                    else conn
                )

        monkeypatch.setattr(storage, "index_connection", b_looks_then_a_takes)
        b_took = storage._claim_concurrency_slot("gpu", "run-b", "holds_gpu")  # B is assigned: this is its claim
        monkeypatch.setattr(storage, "index_connection", connect)

        holders = [s.run_id for s in storage.get_concurrency_info("gpu").claimed_slots]
        assert a_took[-1] == ConcurrencySlotStatus.CLAIMED
        if conditional:
            assert (b_took, holders) == (ConcurrencySlotStatus.BLOCKED, ["run-a"])
        else:
            assert (b_took, holders) == (ConcurrencySlotStatus.CLAIMED, ["run-b"])  # A runs, and B runs too
    finally:
        for run in ("run-a", "run-b"):
            storage.free_concurrency_slots_for_run(run)
        instance.dispose()
