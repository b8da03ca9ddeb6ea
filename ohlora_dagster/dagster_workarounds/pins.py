"""Which Dagster code the workarounds were checked against: a digest of each function they patch,
re-implement or rely on the inner workings of. tests/test_instance.py compares them with the installed
Dagster and names what to re-check when one changed (docs/dagster_workarounds.md, "Upgrading Dagster").
"""

from __future__ import annotations

import hashlib
import importlib
import inspect

CHECKED_AGAINST = "1.13.27"


def dagster_object(dotted: str):
    """The object at a dotted path (module, then attributes), unwrapped from any of our wrappers."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return inspect.unwrap(obj)
    raise ImportError(dotted)


def source_digest(dotted: str) -> str:
    """The first 16 hex digits of the sha256 of the object's source code."""
    return hashlib.sha256(inspect.getsource(dagster_object(dotted)).encode()).hexdigest()[:16]
