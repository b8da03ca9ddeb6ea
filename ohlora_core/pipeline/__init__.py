"""One function per asset: read the upstream artifacts, write this asset's files, say what was done.

Each stage function takes a `Run` (the run-wide settings), the upstream assets' files (`ohlora_core.
artifacts` handles of their `current/` folders), the `RecipeDir` to write into and its own parameters,
and returns a `StageResult`: the files to record, the data version when a manifest covers them, the
key figures, small tables and pictures for the UI, and the asset-check outcomes. The Dagster layer
(`ohlora_dagster`) only resolves presets, opens the recipe folder, calls one of these and publishes
the result; everything here runs without Dagster (tests and scripts call it directly).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMOKE_NOTE = "deterministic random weights (smoke mode) — NOT real faces; every figure is meaningless"


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Run:
    """What every stage of one run shares."""

    mode: str  # "smoke" | "full"
    root: Path  # the storage root (tables store paths relative to it)
    seed: int = 0
    device: str = "cpu"
    log: Callable[[str], None] = _print

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    @property
    def caption(self) -> str | None:
        """Written on every picture of a smoke run: its images are noise."""
        from ohlora_core.pictures import SMOKE_CAPTION

        return SMOKE_CAPTION if self.smoke else None

    def relative(self, path: str | os.PathLike) -> str:
        """A path as tables store it: relative to the storage root."""
        from ohlora_core.artifacts import relative_to_root

        return relative_to_root(path, self.root)


@dataclass(frozen=True)
class Check:
    """An asset check's outcome; `warn` = a warning rather than an error when it fails."""

    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    warn: bool = False


@dataclass
class StageResult:
    outputs: list[str]  # files to record, relative to the recipe folder
    digest: str | None = None  # data version, when a manifest covers the outputs
    figures: dict[str, Any] = field(default_factory=dict)  # numbers and short texts for the UI
    tables: dict[str, Any] = field(default_factory=dict)  # small DataFrames for the UI
    pictures: dict[str, Any] = field(default_factory=dict)  # {name: (PIL image, title)} for the UI
    checks: dict[str, Check] = field(default_factory=dict)
    path: str = ""  # the output to point at, relative to the folder
