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

    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))  # its dagster.yaml -> Postgres
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
