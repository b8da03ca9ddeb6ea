"""Small pictures for materialization metadata (Dagster has no image metadata type).

Previews are base64 PNGs inside markdown, kept small (thumbnails) because metadata
lives in the event-log database; the full-size picture is written next to the
artifact and linked with a path entry.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import numpy as np


def markdown_image(picture, title: str = "preview") -> dg.MetadataValue:
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    b64 = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{b64})")


def save_picture(picture, path: Path) -> dg.MetadataValue:
    """Write the full-size picture atomically and return a path entry for it."""
    from ohlora_core.pictures import save_png

    save_png(picture, path)
    return dg.MetadataValue.path(str(path))


def markdown_table(df, floatfmt: str = ".4f") -> dg.MetadataValue:
    """A DataFrame as a markdown table (renders better in the UI than TableMetadataValue)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


