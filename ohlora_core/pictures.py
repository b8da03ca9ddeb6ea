"""Pictures made from arrays (image grids, histograms, loss curves), with PIL only.

Used for the preview pictures in asset metadata and for the sample grids written next to artifacts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import PIL.Image


def save_png(picture: "PIL.Image.Image", path) -> None:
    """Write a picture as PNG, atomically."""
    import io

    from ohlora_core.io import atomic_write_bytes

    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def image_grid(images: Sequence[np.ndarray], cols: int = 8, thumb: int | None = 64,
               fill: str = "black") -> "PIL.Image.Image":
    """Tile HxWx3 uint8 images (resized to `thumb` px if given) into one picture; `fill` shows
    where the last row has no image."""
    from PIL import Image

    tiles = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]
    if thumb:
        tiles = [t.resize((thumb, thumb), Image.BILINEAR) for t in tiles]
    if not tiles:
        return Image.new("RGB", (1, 1))
    w, h = tiles[0].size
    rows = (len(tiles) + cols - 1) // cols
    grid = Image.new("RGB", (w * min(cols, len(tiles)), h * rows), fill)
    for k, t in enumerate(tiles):
        grid.paste(t.convert("RGB"), ((k % cols) * w, (k // cols) * h))
    return grid


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
    return image_grid(panels, cols=4, thumb=None, fill="white")


def line_plot(series: dict[str, Sequence[float]], size: tuple[int, int] = (520, 220), title: str = "") -> "PIL.Image.Image":
    """Curves over a shared x axis (step), one colour each, with a legend and the y range."""
    from PIL import Image, ImageDraw

    w, h = size
    pad, text_h = 8, 14
    colours = [(70, 110, 200), (210, 90, 60), (60, 160, 90), (150, 80, 170), (120, 120, 120)]
    img = Image.new("RGB", (w, h + 2 * text_h), "white")
    draw = ImageDraw.Draw(img)
    values = [np.asarray(v, dtype=np.float64) for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    n = max((len(v) for v in values), default=1)
    for k, (name, v) in enumerate(zip(series, values)):
        colour = colours[k % len(colours)]
        pts = [(pad + (w - 2 * pad) * i / max(n - 1, 1), text_h + h - pad - (h - 2 * pad) * (y - lo) / (hi - lo))
               for i, y in enumerate(v) if np.isfinite(y)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        draw.text((pad + 110 * k, h + text_h), name, fill=colour)
    draw.text((pad, 1), f"{title}  [{lo:.3g} .. {hi:.3g}], {n} steps", fill="black")
    return img


def scatter_panels(panels: dict[str, tuple[Sequence[float], Sequence[float]]], size: int = 200) -> "PIL.Image.Image":
    """One square scatter plot per panel: {title: (x = intended, y = measured)}, with the y = x line."""
    from PIL import Image, ImageDraw

    pad, text_h = 10, 14
    tiles = []
    for title, (xs, ys) in panels.items():
        x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        lo = float(min(x.min(initial=0), y.min(initial=0))) if ok.any() else -1.0
        hi = float(max(x.max(initial=0), y.max(initial=0))) if ok.any() else 1.0
        hi = hi if hi > lo else lo + 1.0
        tile = Image.new("RGB", (size, size + text_h), "white")
        draw = ImageDraw.Draw(tile)
        to_px = lambda v: pad + (size - 2 * pad) * (v - lo) / (hi - lo)  # noqa: E731
        draw.line([(to_px(lo), text_h + size - to_px(lo)), (to_px(hi), text_h + size - to_px(hi))], fill=(200, 200, 200))
        for a, b in zip(x, y):
            px, py = to_px(a), text_h + size - to_px(b)
            draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=(70, 110, 200))
        draw.text((pad, 1), f"{title} [{lo:.2g}, {hi:.2g}]", fill="black")
        tiles.append(np.asarray(tile))
    return image_grid(tiles, cols=3, thumb=None, fill="white")
