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
