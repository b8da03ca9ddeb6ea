"""Small pictures for materialization metadata (Dagster has no image metadata type).

Previews are base64 PNGs inside markdown, kept small (thumbnails) because metadata
lives in the event-log database; the full-size picture is written next to the
artifact and linked with a path entry.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import dagster as dg
import numpy as np


def image_grid(images: Sequence[np.ndarray], cols: int = 8, thumb: int | None = 64) -> "PIL.Image.Image":
    """Tile HxWx3 uint8 images (resized to `thumb` px if given) into one picture."""
    from PIL import Image

    tiles = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]
    if thumb:
        tiles = [t.resize((thumb, thumb), Image.BILINEAR) for t in tiles]
    if not tiles:
        return Image.new("RGB", (1, 1))
    w, h = tiles[0].size
    rows = (len(tiles) + cols - 1) // cols
    grid = Image.new("RGB", (w * min(cols, len(tiles)), h * rows))
    for k, t in enumerate(tiles):
        grid.paste(t.convert("RGB"), ((k % cols) * w, (k // cols) * h))
    return grid


def markdown_image(picture, title: str = "preview") -> dg.MetadataValue:
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    b64 = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{b64})")


def save_picture(picture, path: Path) -> dg.MetadataValue:
    """Write the full-size picture atomically and return a path entry for it."""
    from ohlora_core.io import atomic_write_bytes

    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return dg.MetadataValue.path(str(path))


def markdown_table(df, floatfmt: str = ".4f") -> dg.MetadataValue:
    """A DataFrame as a markdown table (renders better in the UI than TableMetadataValue)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))
