"""Pictures made from arrays: image grids (PIL), and histograms, loss curves and scatter plots (matplotlib).

Used for the preview pictures in asset metadata and for the pictures written next to artifacts.

Plots are drawn on a `matplotlib.figure.Figure` with its own Agg canvas, never through pyplot: pyplot keeps global
figure state (not thread-safe, and it picks a GUI backend from the environment), while a bare Figure needs no
display and no global backend switch. Every colour, font size and the DPI are set here, so the same inputs give the
same pixels; the picture is returned as a PIL image and written by PIL, which adds no timestamp or software tag, so
the PNG bytes are the same on every call and in every process. matplotlib is imported inside the functions so that
importing this module (the Dagster code location does) stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import PIL.Image
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SMOKE_CAPTION = "smoke mode: random weights — not faces"

DPI = 100  # 1 inch = 100 px: sizes below are given in pixels and map 1:1
FONT = "DejaVu Sans"  # bundled with matplotlib, so every machine renders the same glyphs
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f")
IDENTITY_COLOUR = "#ff7f0e"  # the y = x line in scatter panels (tests look for it)
POINT_COLOUR = "#1f77b4"
CAPTION_BACKGROUND, CAPTION_TEXT = (255, 236, 179), (102, 60, 0)  # amber strip: hard to overlook
CAPTION_PT, CAPTION_PAD = 9, 4
CAPTION_MIN_WIDTH = 200  # a narrower picture (one thumbnail) is widened with white, so the caption stays readable
SCATTER_X_LABEL, SCATTER_Y_LABEL = "requested (normalised score)", "measured by the property CNN"
UNIT_KEYWORDS = ("auroc", "accuracy", "auc")  # series names drawn on a fixed [0, 1] axis by default
SMOOTH_ABOVE = 200  # longer series get a moving mean on top of the raw curve (GAN losses are noisy)


def save_png(picture: "PIL.Image.Image", path) -> None:
    """Write a picture as PNG, atomically."""
    import io

    from ohlora_core.io import atomic_write_bytes

    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------------- captions

_DEFAULT_CAPTION: ContextVar[str | None] = ContextVar("ohlora_default_caption", default=None)


@contextmanager
def captioned(text: str | None) -> Iterator[None]:
    """Every picture made inside the block without a caption of its own gets `text` (a smoke run's stages
    call training and sample code that does not know the mode)."""
    token = _DEFAULT_CAPTION.set(text)
    try:
        yield
    finally:
        _DEFAULT_CAPTION.reset(token)


def caption(picture: "PIL.Image.Image", text: str | None) -> "PIL.Image.Image":
    """The picture with `text` in an amber strip below it, word-wrapped to the picture's width (at least
    CAPTION_MIN_WIDTH px); None or '' returns the picture unchanged (then the `captioned` default, if any)."""
    from PIL import Image

    text = text or _DEFAULT_CAPTION.get()
    if not text:
        return picture
    strip = _caption_strip(text, max(picture.width, CAPTION_MIN_WIDTH))
    out = Image.new("RGB", (strip.width, picture.height + strip.height), "white")
    out.paste(picture.convert("RGB"), (0, 0))
    out.paste(strip, (0, picture.height))
    return out


_caption = caption  # the picture functions take a `caption` argument, which hides the function inside them


def _caption_strip(text: str, width: int) -> "PIL.Image.Image":
    from matplotlib.figure import Figure

    lines = _wrap(text, width - 2 * CAPTION_PAD)
    line_px = round(CAPTION_PT * DPI / 72 * 1.3)
    height = len(lines) * line_px + 2 * CAPTION_PAD
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=np.array(CAPTION_BACKGROUND) / 255)
    for k, line in enumerate(lines):
        fig.text(
            CAPTION_PAD / width,
            1 - (CAPTION_PAD + k * line_px) / height,
            line,
            ha="left",
            va="top",
            fontsize=CAPTION_PT,
            family=FONT,
            color=np.array(CAPTION_TEXT) / 255,
            parse_math=False,
        )
    return _render(fig)


def _wrap(text: str, width_px: int) -> list[str]:
    """Greedy word wrap measured with the real font, so a narrow picture (one thumbnail) still shows all words."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer, prop = RendererAgg(1, 1, DPI), FontProperties(family=FONT, size=CAPTION_PT)
    fits = lambda s: renderer.get_text_width_height_descent(s, prop, ismath=False)[0] <= width_px  # noqa: E731
    lines: list[str] = []
    for word in text.split():
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)  # a single word wider than the picture is left to be clipped, not split
    return lines or [""]


# ----------------------------------------------------------------------------------------------------------- helpers


def _figure(width: int, height: int) -> "Figure":
    from matplotlib.figure import Figure

    # fixed pixel margins rather than constrained layout: that layout engine took 60 % of a render
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")


def _axes_at(fig: "Figure", left: float, top: float, width: float, height: float) -> "Axes":
    """Axes placed in pixels, measured from the figure's top-left corner."""
    w, h = fig.bbox.width, fig.bbox.height
    return fig.add_axes((left / w, 1 - (top + height) / h, max(width, 1) / w, max(height, 1) / h))


def _cells(
    fig: "Figure",
    n: int,
    cols: int,
    cell: tuple[int, int],
    margin: tuple[int, int, int, int],
    origin: tuple[int, int] = (0, 0),
) -> list["Axes"]:
    """One axes per grid cell of `cell` px, inset by `margin` = (left, top, right, bottom) px for ticks and titles."""
    (cw, ch), (ml, mt, mr, mb) = cell, margin
    return [
        _axes_at(fig, origin[0] + (k % cols) * cw + ml, origin[1] + (k // cols) * ch + mt, cw - ml - mr, ch - mt - mb)
        for k in range(n)
    ]


def _text_at(fig: "Figure", x: float, y: float, text: str, size: int = 8, **kw) -> None:
    """Figure text at (x, y) px from the top-left corner."""
    fig.text(x / fig.bbox.width, 1 - y / fig.bbox.height, text, fontsize=size, family=FONT, parse_math=False, **kw)


def _render(fig: "Figure") -> "PIL.Image.Image":
    """Draw on a private Agg canvas and hand the pixels to PIL (RGB: no alpha, smaller PNGs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def _style(ax: "Axes", xlabel: str = "", ylabel: str = "", fontsize: int = 8) -> None:
    ax.set_xlabel(xlabel, fontsize=fontsize, family=FONT, parse_math=False)
    ax.set_ylabel(ylabel, fontsize=fontsize, family=FONT, parse_math=False)
    ax.tick_params(labelsize=fontsize - 1)
    ax.grid(True, color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)


def _whole_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins="auto", steps=(1, 2, 5, 10), integer=True)


def _finite(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def _grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return (n + cols - 1) // cols if n else 1, cols


# -------------------------------------------------------------------------------------------------------- image grid


def image_grid(
    images: Sequence[np.ndarray], cols: int = 8, thumb: int | None = 64, fill: str = "black", caption: str | None = None
) -> "PIL.Image.Image":
    """Tile HxWx3 uint8 images (resized to `thumb` px if given) into one picture; `fill` shows
    where the last row has no image; `caption` goes in a strip below."""
    from PIL import Image

    tiles = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]
    if thumb:
        tiles = [t.resize((thumb, thumb), Image.BILINEAR) for t in tiles]
    if not tiles:
        return _caption(Image.new("RGB", (1, 1)), caption)
    w, h = tiles[0].size
    rows = (len(tiles) + cols - 1) // cols
    grid = Image.new("RGB", (w * min(cols, len(tiles)), h * rows), fill)
    for k, t in enumerate(tiles):
        grid.paste(t.convert("RGB"), ((k % cols) * w, (k // cols) * h))
    return _caption(grid, caption)


# -------------------------------------------------------------------------------------------------------- histograms


def histograms(
    columns: dict[str, np.ndarray],
    bins: int = 20,
    size: tuple[int, int] = (260, 190),
    caption: str | None = None,
    max_cols: int = 4,
) -> "PIL.Image.Image":
    """One histogram panel per column (`size` px each, up to `max_cols` in a row): counts over the finite values,
    with the column name, n and how many NaN/inf were left out in the panel's title."""
    rows, cols = _grid_shape(len(columns), max_cols)
    fig = _figure(size[0] * cols, size[1] * rows)
    for ax, (name, values) in zip(_cells(fig, len(columns), cols, size, (48, 34, 12, 22)), columns.items()):
        _histogram_panel(ax, name, _finite(values), bins)
    return _caption(_render(fig), caption)


def _histogram_panel(ax: "Axes", name: str, v: np.ndarray, bins: int) -> None:
    ok = np.isfinite(v)
    dropped = int(v.size - ok.sum())
    title = f"{name}\nn = {int(ok.sum())}" + (f", {dropped} NaN/inf ignored" if dropped else "")
    ax.set_title(title, fontsize=8, family=FONT, parse_math=False)
    _style(ax, ylabel="count")
    if not ok.any():
        ax.text(
            0.5,
            0.5,
            "no finite values",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
            family=FONT,
            color="#7f7f7f",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.yaxis.set_major_locator(_whole_ticks())  # counts: no 0.5 ticks on a sparse column
    counts, edges = np.histogram(v[ok], bins=bins)
    ax.stairs(counts, edges, fill=True, color=COLOURS[0], alpha=0.85)
    ax.set_ylim(0, max(1, counts.max()) * 1.08)


# -------------------------------------------------------------------------------------------------------- line plots


def line_plot(
    series: dict[str, Sequence[float]],
    size: tuple[int, int] = (640, 320),
    title: str = "",
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    unit_series: Sequence[str] | None = None,
    caption: str | None = None,
) -> "PIL.Image.Image":
    """Curves over steps (or over `x`), with axes, ticks, legend and title.

    Series named in `unit_series` (default: names containing 'auroc', 'accuracy' or 'auc') live in [0, 1] and would
    flatten a loss curve on a shared axis, so they get their own panel below, fixed to [0, 1], with the 0.5 chance
    line. NaN/inf points are skipped; a series with more than SMOOTH_ABOVE points is drawn faintly with its moving
    mean on top."""
    unit = set(unit_series) if unit_series is not None else {n for n in series if _is_unit_name(n)}
    main = {n: v for n, v in series.items() if n not in unit}
    lower = {n: v for n, v in series.items() if n in unit}
    fig = _figure(*size)
    panels = _line_panels(fig, split=bool(main and lower))
    colours = {n: COLOURS[k % len(COLOURS)] for k, n in enumerate(series)}
    if main or not lower:
        _curves(panels[0], main, colours, x, ylabel)
    if lower:
        _curves(panels[-1], lower, colours, x, _unit_label(lower))
        panels[-1].set_ylim(-0.02, 1.02)
        panels[-1].axhline(0.5, color="#7f7f7f", linestyle=":", linewidth=0.8, label="0.5 (chance)")
        _legend(panels[-1], len(lower) + 1)  # again, to list the chance line too
    if x is None:
        panels[-1].xaxis.set_major_locator(_whole_ticks())  # steps are whole numbers
    panels[-1].set_xlabel(xlabel, fontsize=8, family=FONT, parse_math=False)
    n = max((len(_finite(v)) for v in series.values()), default=0)
    _text_at(
        fig, size[0] / 2, 5, f"{title}  ({n} {xlabel}s)" if title else f"{n} {xlabel}s", size=9, ha="center", va="top"
    )
    return _caption(_render(fig), caption)


def _line_panels(fig: "Figure", split: bool) -> list["Axes"]:
    """One plot area, or (when split) a loss panel over a [0, 1] panel of half its height, sharing the x axis; the
    margins leave room for the title and each panel's legend above it, ticks and labels below and left."""
    left, top, right, bottom, gap = 58, 44, 14, 38, 30
    width, height = fig.bbox.width - left - right, fig.bbox.height - top - bottom
    if not split:
        return [_axes_at(fig, left, top, width, height)]
    upper_h = (height - gap) * 2 / 3
    upper = _axes_at(fig, left, top, width, upper_h)
    lower = _axes_at(fig, left, top + upper_h + gap, width, height - gap - upper_h)
    lower.sharex(upper)
    upper.tick_params(labelbottom=False)
    return [upper, lower]


def _is_unit_name(name: str) -> bool:
    return any(k in name.lower() for k in UNIT_KEYWORDS)


def _unit_label(series: dict) -> str:
    return next(iter(series)) if len(series) == 1 else "value in [0, 1]"


def _curves(ax: "Axes", series: dict, colours: dict, x, ylabel: str) -> None:
    _style(ax, ylabel=ylabel)
    for name, values in series.items():
        _curve(ax, name, _finite(values), colours[name], x)
    if series:
        _legend(ax, len(series))
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=8, family=FONT)


def _legend(ax: "Axes", entries: int) -> None:
    # above the axes, in one row: it never covers a curve, and needs no search for an empty corner
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1),
        ncols=entries,
        frameon=False,
        fontsize=7,
        borderaxespad=0.2,
        handlelength=1.5,
    )


def _curve(ax: "Axes", name: str, y: np.ndarray, colour: str, x) -> None:
    xs = np.arange(y.size, dtype=np.float64) if x is None else _finite(x)[: y.size]
    ok = np.isfinite(y[: xs.size]) & np.isfinite(xs)
    xs, ys = xs[ok], y[: xs.size][ok]
    if xs.size <= SMOOTH_ABOVE:
        ax.plot(xs, ys, color=colour, linewidth=1.4, marker="o" if xs.size <= 30 else None, markersize=3, label=name)
        return
    window = max(5, xs.size // 50)
    mean = np.convolve(ys, np.ones(window) / window, mode="valid")
    ax.plot(xs, ys, color=colour, linewidth=0.6, alpha=0.3)
    ax.plot(
        xs[window // 2 : window // 2 + mean.size], mean, color=colour, linewidth=1.6, label=f"{name} (mean of {window})"
    )


# ----------------------------------------------------------------------------------------------------- scatter plots


def scatter_panels(
    panels: dict[str, tuple[Sequence[float], Sequence[float]]],
    size: int = 220,
    caption: str | None = None,
    max_cols: int = 3,
) -> "PIL.Image.Image":
    """One square panel per entry {title: (x = requested, y = measured)}: the points, the identity line y = x
    (perfect control), equal axes and Pearson's r in the title; axis labels once for the whole figure."""
    rows, cols = _grid_shape(len(panels), max_cols)
    left, bottom = 18, 22  # room for the figure-wide axis labels
    fig = _figure(left + size * cols, size * rows + bottom)
    axes = _cells(fig, len(panels), cols, (size, size), (38, 34, 10, 22), origin=(left, 0))
    for ax, (title, (xs, ys)) in zip(axes, panels.items()):
        _scatter_panel(ax, title, _finite(xs), _finite(ys))
    _text_at(fig, left + size * cols / 2, size * rows + bottom - 4, SCATTER_X_LABEL, ha="center", va="bottom")
    _text_at(fig, 4, size * rows / 2, SCATTER_Y_LABEL, ha="left", va="center", rotation=90)
    return _caption(_render(fig), caption)


def _scatter_panel(ax: "Axes", title: str, x: np.ndarray, y: np.ndarray) -> None:
    n = min(x.size, y.size)
    ok = np.isfinite(x[:n]) & np.isfinite(y[:n])
    x, y = x[:n][ok], y[:n][ok]
    lo, hi = _square_limits(x, y)
    _style(ax)
    ax.plot([lo, hi], [lo, hi], color=IDENTITY_COLOUR, linewidth=1.2, zorder=1)
    ax.scatter(x, y, s=6, color=POINT_COLOUR, alpha=0.5, linewidths=0, zorder=2)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(f"{title}\n{_correlation(x, y)}, n = {x.size}", fontsize=8, family=FONT, parse_math=False)


def _square_limits(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """One range for both axes, so y = x is the diagonal and over- or under-shooting reads off directly."""
    if not x.size:
        return -1.0, 1.0
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def _correlation(x: np.ndarray, y: np.ndarray) -> str:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return "r = n/a"
    return f"r = {float(np.corrcoef(x, y)[0, 1]):.2f}"


__all__ = ["SMOKE_CAPTION", "caption", "histograms", "image_grid", "line_plot", "save_png", "scatter_panels"]
