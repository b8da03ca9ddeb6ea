"""How a stage's result appears in the UI: figures, Markdown tables that fit, small pictures, asset checks.

Dagster has no image metadata type, so pictures are base64 PNGs inside Markdown, kept small (metadata lives
in the event-log database); the full-size pictures are files next to the artifact. Tables are Markdown of a
few columns (wide tables are cut to the columns that fit, with a note; the CSV is linked by `path`).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import numpy as np

MAX_PICTURE_WIDTH = 1000  # px: wider pictures are scaled down for the metadata copy
MAX_TABLE_COLUMNS = 8
MAX_TABLE_ROWS = 20
WEIGHTS = {"smoke": "deterministic random weights (smoke mode) — NOT real faces", "full": "real checkpoints"}


def markdown_image(picture, title: str = "preview") -> dg.MetadataValue:
    if picture.width > MAX_PICTURE_WIDTH:
        picture = picture.resize((MAX_PICTURE_WIDTH, round(picture.height * MAX_PICTURE_WIDTH / picture.width)))
    buf = io.BytesIO()
    picture.convert("RGB").save(buf, format="PNG", optimize=True)
    b64 = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{b64})")


def markdown_table(df, floatfmt: str = ".4f") -> dg.MetadataValue:
    """A DataFrame as a Markdown table of at most MAX_TABLE_COLUMNS columns and MAX_TABLE_ROWS rows."""
    note = []
    if df.shape[1] > MAX_TABLE_COLUMNS:
        note.append(f"{df.shape[1] - MAX_TABLE_COLUMNS} more columns in the CSV")
        df = df.iloc[:, :MAX_TABLE_COLUMNS]
    if len(df) > MAX_TABLE_ROWS:
        note.append(f"{len(df) - MAX_TABLE_ROWS} more rows in the CSV")
        df = df.head(MAX_TABLE_ROWS)
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines) + (f"\n\n({'; '.join(note)})" if note else ""))


def _figure(value):
    if isinstance(value, dict):
        return dg.MetadataValue.json(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def describe(key: dg.AssetKey, result, digest: str, path: Path, recipe: dict) -> dg.MaterializeResult:
    """The materialization of a published stage result (`ohlora_core.pipeline.StageResult`); the recipe (what
    fixed these bytes) is shown too."""
    mode = recipe["mode"]
    metadata = {k: _figure(v) for k, v in result.figures.items()}
    metadata.update({k: markdown_table(v) if len(v) else dg.MetadataValue.md("-") for k, v in result.tables.items()})
    metadata.update({k: markdown_image(picture, title) for k, (picture, title) in result.pictures.items()})
    metadata.update(
        path=dg.MetadataValue.path(str(path)),
        mode=mode,
        weights=WEIGHTS[mode],
        recipe=dg.MetadataValue.json({k: v for k, v in recipe.items() if k != "upstream"}),
    )
    checks = [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=bool(c.passed),
            metadata=c.metadata,
            severity=dg.AssetCheckSeverity.WARN if c.warn else dg.AssetCheckSeverity.ERROR,
        )
        for name, c in result.checks.items()
    ]
    return dg.MaterializeResult(
        asset_key=key, data_version=dg.DataVersion(digest), metadata=metadata, check_results=checks
    )
