"""The instance on PostgreSQL (deploy/dagster-postgres.yaml, what README's "Scaling out" tells a
deployment to use): the pipeline's generation stage runs with runs, event logs and schedules in
Postgres, two runs started at once share the `gpu` pool (one waits for the other), and both finish.

Debian's PostgreSQL server (apt package `postgresql`; .ci/run installs it) is started here, private to
the test (tests/postgres_server.py). .ci/run runs README's main job — the whole smoke graph — on the
same kind of private server.
"""
import os
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

import ohlora_dagster  # noqa: F401  (installs the pool fixes, as every run of the code location does)
from tests.postgres_server import private_postgres

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300


@pytest.fixture(scope="module")
def postgres_url():
    with private_postgres(Path(tempfile.mkdtemp(prefix="ohlora-pg-"))) as url:  # under /tmp: pytest's folders are root-only
        yield url


def _home(tmp_path: Path, url: str) -> tuple[Path, dict]:
    home = tmp_path / "home"
    home.mkdir()
    config = (REPO / "deploy" / "dagster-postgres.yaml").read_text().replace("storage/dagster", str(home))
    (home / "dagster.yaml").write_text(config)
    return home, {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url}


def _instance(tmp_path: Path, url: str, monkeypatch) -> dg.DagsterInstance:
    """An instance on the test's server, configured by deploy/dagster-postgres.yaml (dispose it)."""
    home = tmp_path / "home"
    if not home.exists():
        _home(tmp_path, url)
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _ours_or_dagsters(monkeypatch, name: str, ours: bool):
    """SqlEventLogStorage's method `name` as ohlora_dagster installed it, or (ours=False) Dagster's own."""
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    method = getattr(SqlEventLogStorage, name)
    assert hasattr(method, "__wrapped__"), f"{name}: ohlora's version not installed"
    if not ours:
        monkeypatch.setattr(SqlEventLogStorage, name, method.__wrapped__)


def test_generation_runs_on_postgres_and_two_runs_share_the_gpu_pool(postgres_url, tmp_path, monkeypatch):
    home, env = _home(tmp_path, postgres_url)
    config = tmp_path / "run.yaml"
    config.write_text("execution: {config: {in_process: {}}}\n"
                      "resources: {settings: {config: {mode: smoke, device: cpu, n_images: 2, batch_size: 2}}}\n")
    runs = []
    for name in ("a", "b"):  # two storage roots: the same assets, one gpu slot
        runs.append(subprocess.Popen(
            ["dg", "launch", "--assets", "latent_codes,raw_images", "-m", "ohlora_dagster.definitions", "-c",
             str(config)], cwd=REPO, env={**env, "OHLORA_STORAGE": str(tmp_path / name)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=TIMEOUT)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for name in ("a", "b"):
        assert len(list((tmp_path / name / "artifacts/smoke/raw_images/current/images").glob("*.jpg"))) == 2

    instance = _instance(tmp_path, postgres_url, monkeypatch)  # its dagster.yaml -> Postgres
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        records = instance.get_run_records()
        assert len(records) == 2 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        spans = []  # when each run's raw_images step (pool gpu) ran: the two must not overlap
        for r in records:
            times = {e.dagster_event.event_type_value: e.timestamp for e in instance.all_logs(r.dagster_run.run_id)
                     if e.dagster_event and e.dagster_event.step_key == "raw_images"
                     and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")}
            spans.append((times["STEP_START"], times["STEP_SUCCESS"]))
        first, second = sorted(spans)
        assert first[1] <= second[0], spans
        assert instance.get_latest_materialization_event(dg.AssetKey("raw_images")) is not None
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1
    finally:
        instance.dispose()


@pytest.mark.parametrize("tolerate", [False, True], ids=["dagster", "ohlora"])
def test_second_run_setting_up_the_gpu_pool_at_once_does_not_fail(postgres_url, tmp_path, monkeypatch, tolerate):
    """Two runs' first claims on the gpu pool at once: both set up its default limit. The one that comes
    second hits the other's row; Postgres aborts its transaction, so Dagster's fallback update fails and
    so did that run's step (3 of 10 tries of the test above). Replayed in order: A sets the pool up,
    then B does what it would have done a moment earlier."""
    from sqlalchemy.exc import DBAPIError

    _ours_or_dagsters(monkeypatch, "initialize_concurrency_limit_to_default", tolerate)
    a, b = _instance(tmp_path, postgres_url, monkeypatch), _instance(tmp_path, postgres_url, monkeypatch)
    try:
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

    _ours_or_dagsters(monkeypatch, "_claim_concurrency_slot", conditional)
    instance = _instance(tmp_path, postgres_url, monkeypatch)
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
                yield _ATakesTheSlotAfterBLooked(conn, lambda: a_took.append(
                    storage._claim_concurrency_slot("gpu", "run-a", "holds_gpu"))) if first else conn
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
