"""Shared fixtures."""
import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def score_fixture():
    """Parsing maps with known geometry + the original functions' values (tests/fixtures/scores)."""
    data = np.load(FIXTURES / "scores" / "maps.npz")
    expected = json.loads((FIXTURES / "scores" / "expected.json").read_text())
    return list(data["names"]), data["parsing"], data["images"], expected
