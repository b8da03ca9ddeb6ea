"""Shared fixtures."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# The console scripts the tests start (dg, dagster, ohlora) are this interpreter's, also when pytest
# runs as `.venv/bin/python -m pytest` without the environment activated.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: how the fine-tuning fixtures were made, and the fastest for their
    narrow networks."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_finetune_fixture(name: str) -> dict:
    import torch

    return torch.load(FIXTURES / "finetune" / name, weights_only=True)


@pytest.fixture(scope="session")
def score_fixture():
    """Parsing maps with known geometry + the original functions' values (tests/fixtures/scores)."""
    data = np.load(FIXTURES / "scores" / "maps.npz")
    expected = json.loads((FIXTURES / "scores" / "expected.json").read_text())
    return list(data["names"]), data["parsing"], data["images"], expected


def assert_matches_original(result, score_fixture, version: str, flag_for) -> tuple[int, int]:
    """Every 'ok' value equals the original's bit for bit (same float64 bits, not just close) with
    flag OK; every other status is NaN with `flag_for(map_name, score_name, status)`.
    Returns (values checked, values flagged)."""
    from ohlora_core.scores import SCORE_NAMES, ScoreFlag

    names, _, _, expected = score_fixture
    assert tuple(expected["score_names"]) == SCORE_NAMES
    assert result.values.shape == (len(names), 7) and result.values.dtype == np.float64
    checked = flagged = 0
    for i, entry in enumerate(expected["maps"]):
        assert entry["name"] == names[i]
        for k, (status, value) in enumerate(entry[version]):
            ours, flag = result.values[i, k], result.flags[i, k]
            where = (names[i], SCORE_NAMES[k], status)
            if status == "ok":
                assert ours.hex() == float.fromhex(value).hex(), (*where, ours, value)
                assert flag == ScoreFlag.OK, where
                checked += 1
            else:
                assert np.isnan(ours), where
                assert flag == flag_for(names[i], SCORE_NAMES[k], status), where
                flagged += 1
    return checked, flagged


def assert_batch_composition_does_not_matter(compute, score_fixture, result, monkeypatch, chunk: int, seed: int):
    """Scores of a shuffled batch, cut into `chunk`-image internal chunks, equal the reference result."""
    import ohlora_core.scores.common as scores_common

    _, parsing, images, _ = score_fixture
    monkeypatch.setattr(scores_common, "chunks", lambda n: (slice(s, min(n, s + chunk)) for s in range(0, n, chunk)))
    perm = np.random.default_rng(seed).permutation(len(parsing))
    again = compute(parsing[perm], images[perm])
    np.testing.assert_array_equal(again.values, result.values[perm])
    np.testing.assert_array_equal(again.flags, result.flags[perm])


class SmokeGraph:
    """The whole smoke graph, materialized once per test session by README's main command."""

    def __init__(self, root: Path, home: Path, env: dict, output: str):
        self.root, self.home, self.env, self.output = root, home, env, output

    def instance(self):
        """The graph's (PostgreSQL) instance; its URL comes from the environment while it is opened."""
        import dagster as dg

        before = os.environ.get("DAGSTER_PG_URL")
        os.environ["DAGSTER_PG_URL"] = self.env["DAGSTER_PG_URL"]
        try:
            return dg.DagsterInstance.from_config(str(self.home))
        finally:
            if before is None:
                del os.environ["DAGSTER_PG_URL"]
            else:
                os.environ["DAGSTER_PG_URL"] = before

    def layout(self):
        from ohlora_core.layout import StorageLayout

        return StorageLayout(self.root, "smoke")


@pytest.fixture(scope="session")
def smoke_graph(tmp_path_factory):
    """README's main command, as a user runs it, with the instance on a private PostgreSQL server
    (deploy/dagster-postgres.yaml): the suite's one run of the whole graph. Tests that read its artifacts or
    its instance share it; the README test's backfill runs last among them (file order)."""
    import tempfile

    from tests import postgres_server, readme

    base = tmp_path_factory.mktemp("smoke_graph")
    root, home = base / "storage", base / "home"
    pg = Path(tempfile.mkdtemp(prefix="ohlora-pg-"))  # outside pytest's 0700 folders: postgres owns it
    home.mkdir()
    url = postgres_server.start(pg)
    repo = Path(__file__).resolve().parents[1]
    (home / "dagster.yaml").write_text(
        (repo / "deploy" / "dagster-postgres.yaml").read_text().replace("storage/dagster", str(home))
    )
    env = {"DAGSTER_HOME": str(home), "OHLORA_STORAGE": str(root), "DAGSTER_PG_URL": url}
    try:
        (command,) = readme.block("main").commands
        done = readme.run(command, env, timeout=1500)
        yield SmokeGraph(root, home, env, done.stdout + done.stderr)
    finally:
        postgres_server.stop(pg)
