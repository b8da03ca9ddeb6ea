"""Small pictures for materialization metadata (Dagster has no image metadata type).

Previews are base64 PNGs inside markdown, kept small (thumbnails) because metadata
lives in the event-log database; the full-size picture is written next to the
artifact and linked with a path entry.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import dagster as dg
import numpy as np

if TYPE_CHECKING:
    import PIL.Image


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


def histograms(columns: dict[str, np.ndarray], bins: int = 20, size: tuple[int, int] = (220, 120)) -> "PIL.Image.Image":
    """One small bar-chart histogram per column (NaN ignored), tiled in a row of panels."""
    from PIL import Image, ImageDraw

    w, h = size
    pad, text_h = 6, 14
    panels = []
    for name, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        panel = Image.new("RGB", (w, h + 2 * text_h), "white")
        draw = ImageDraw.Draw(panel)
        draw.text((pad, 1), f"{name} (n={v.size})", fill="black")
        if v.size:
            counts, edges = np.histogram(v, bins=bins)
            bar_w = (w - 2 * pad) / bins
            top = counts.max() or 1
            for k, c in enumerate(counts):
                x0 = pad + k * bar_w
                y0 = text_h + h - pad - (h - 2 * pad) * c / top
                draw.rectangle([x0, y0, x0 + bar_w - 1, text_h + h - pad], fill=(70, 110, 200))
            draw.text((pad, text_h + h), f"{edges[0]:.3g}", fill="black")
            draw.text((w - pad - 40, text_h + h), f"{edges[-1]:.3g}", fill="black")
        panels.append(np.asarray(panel))
    return image_grid(panels, cols=4, thumb=None)
