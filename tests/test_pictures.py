"""ohlora_core.pictures: pixel sizes, byte-identical renders, NaN/inf handling, the identity line, captions."""

import hashlib
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ohlora_core import pictures as P

NAN, INF = float("nan"), float("inf")


def png(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB")).astype(int)


def where(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the True pixels."""
    return np.nonzero(mask)


def orange(a: np.ndarray) -> np.ndarray:  # IDENTITY_COLOUR #ff7f0e, also when anti-aliased against white
    return (a[..., 0] > 200) & (a[..., 1] > 90) & (a[..., 1] < 200) & (a[..., 2] < 150)


def blue(a: np.ndarray) -> np.ndarray:  # COLOURS[0] #1f77b4
    return (a[..., 2] > 140) & (a[..., 0] < 100) & (a[..., 2] - a[..., 0] > 80)


def red(a: np.ndarray) -> np.ndarray:  # COLOURS[1] #d62728
    return (a[..., 0] > 170) & (a[..., 1] < 100) & (a[..., 2] < 100)


RNG = np.random.default_rng(0)
LOSSES = {
    "d_loss": 1.4 + 0.3 * RNG.standard_normal(300),
    "g_loss": 0.8 + 0.5 * RNG.standard_normal(300),
    "AUROC": np.clip(0.7 + 0.1 * RNG.standard_normal(300), 0, 1),
}
COLUMNS = {f"score_{k}": RNG.standard_normal(500) * (k + 1) for k in range(7)}
PANELS = {f"v1 {p}": (np.repeat([-1.2, 0.0, 1.2], 20), RNG.standard_normal(60)) for p in ("eyes", "mouth", "pose")}
RENDERS = {
    "line_plot": lambda: P.line_plot(LOSSES, title="fine-tune v1"),
    "histograms": lambda: P.histograms(COLUMNS),
    "scatter_panels": lambda: P.scatter_panels(PANELS),
    "image_grid": lambda: P.image_grid([np.full((32, 32, 3), k * 20, np.uint8) for k in range(10)], cols=4, thumb=16),
}


def test_pixel_sizes_follow_the_size_arguments():
    assert P.line_plot(LOSSES, size=(500, 260)).size == (500, 260)
    assert P.histograms(COLUMNS, size=(200, 150)).size == (4 * 200, 2 * 150)  # 7 panels: 4 in a row, 2 rows
    assert P.scatter_panels(PANELS, size=200).size == (18 + 3 * 200, 200 + 22)  # + the figure-wide axis labels
    assert RENDERS["image_grid"]().size == (4 * 16, 3 * 16)


def test_the_callers_positional_signatures_still_work():
    assert P.image_grid([np.zeros((8, 8, 3), np.uint8)] * 3, 2, 8, "white").size == (16, 16)
    assert P.histograms({"a": [1.0, 2.0]}, 10, (220, 120)).size == (220, 120)
    assert P.line_plot({"loss": [3.0, 2.0, 1.0]}, (520, 220), "title").size == (520, 220)
    assert P.scatter_panels({"p": ([0.0, 1.0], [0.0, 1.0])}, 200).size == (218, 222)


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_renders_are_byte_identical(name):
    first = png(RENDERS[name]())
    [render() for render in RENDERS.values()]  # other figures in between must leave no state behind
    assert png(RENDERS[name]()) == first


def test_save_png_writes_the_same_bytes_in_another_process(tmp_path):
    P.save_png(P.line_plot(LOSSES, title="fine-tune v1", caption=P.SMOKE_CAPTION), tmp_path / "here.png")
    code = (
        "import numpy as np, sys\nsys.path.insert(0, 'tests')\nfrom ohlora_core import pictures as P\n"
        "import test_pictures as T\n"
        f"P.save_png(P.line_plot(T.LOSSES, title='fine-tune v1', caption=P.SMOKE_CAPTION), r'{tmp_path}/there.png')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    here, there = ((tmp_path / f).read_bytes() for f in ("here.png", "there.png"))
    assert hashlib.sha256(here).digest() == hashlib.sha256(there).digest()


def test_previews_stay_small():
    for name, render in RENDERS.items():
        assert len(png(P.caption(render(), P.SMOKE_CAPTION))) < 100_000, name


def test_nan_only_inputs_render_instead_of_crashing():
    empty_hist = P.histograms({"all NaN": np.full(5, NAN), "ok": [1.0, 2.0, 3.0]})
    assert empty_hist.size == (2 * 260, 190)
    assert P.line_plot({"loss": [NAN, NAN], "AUROC": [NAN]}).size == (640, 320)
    assert P.scatter_panels({"p": ([NAN, 1.0], [2.0, NAN])}).size == (18 + 220, 242)
    assert P.histograms({}).size == (260, 190) and P.line_plot({}).size == (640, 320)


def test_histograms_ignore_nan_and_inf():
    clean = P.histograms({"a": [1.0, 2.0, 2.0, 3.0]})
    dirty = P.histograms({"a": [1.0, NAN, 2.0, INF, 2.0, -INF, 3.0]})
    title_px = 34  # the panel's top margin: name, n and the ignored count
    assert png(clean) != png(dirty)  # the title says "3 NaN/inf ignored"
    assert np.array_equal(pixels(clean)[title_px:], pixels(dirty)[title_px:])  # bars and axes are the same


def test_identity_line_is_drawn_as_the_diagonal_of_an_empty_panel():
    a = pixels(P.scatter_panels({"no points": ([], [])}))
    rows, cols = where(orange(a))
    assert rows.size > 100
    slope, _ = np.polyfit(cols, rows, 1)
    assert slope == pytest.approx(-1.0, abs=0.03)  # y = x with equal axes; image rows grow downwards
    assert np.ptp(cols) > 0.6 * 220  # corner to corner of the plot area, not a stub


def test_identity_line_spans_the_points_range():
    rows, cols = where(orange(pixels(P.scatter_panels({"p": ([-3.0, 3.0], [-3.0, 3.0])}))))
    assert np.polyfit(cols, rows, 1)[0] == pytest.approx(-1.0, abs=0.03)


def test_caption_is_rendered_below_the_unchanged_picture():
    plain = P.histograms({"a": [1.0, 2.0]})
    captioned = P.histograms({"a": [1.0, 2.0]}, caption=P.SMOKE_CAPTION)
    assert captioned.width == plain.width and captioned.height > plain.height
    a = pixels(captioned)
    assert np.array_equal(a[: plain.height], pixels(plain))
    strip = a[plain.height :]
    text = np.abs(strip - np.array(P.CAPTION_TEXT)).sum(axis=-1) < 60
    assert text.sum() > 100  # glyphs in the caption's colour, not only its background
    other = P.caption(plain, "a different caption")
    assert png(other) != png(captioned)


def test_every_picture_function_takes_a_caption():
    for render, kwargs in (
        (P.line_plot, {"series": LOSSES}),
        (P.histograms, {"columns": COLUMNS}),
        (P.scatter_panels, {"panels": PANELS}),
        (P.image_grid, {"images": [np.zeros((8, 8, 3), np.uint8)]}),
    ):
        plain, captioned = render(**kwargs), render(**kwargs, caption=P.SMOKE_CAPTION)
        assert captioned.height > plain.height, render.__name__
    assert P.caption(RENDERS["line_plot"](), None).size == (640, 320)


def test_caption_wraps_on_a_narrow_picture():
    thumb = P.image_grid([np.zeros((64, 64, 3), np.uint8)], thumb=64, caption=P.SMOKE_CAPTION)
    one_line = P.line_plot({"loss": [1.0]}, caption=P.SMOKE_CAPTION).height - 320
    assert thumb.width == P.CAPTION_MIN_WIDTH and thumb.height - 64 > one_line


def test_unit_interval_series_get_their_own_lower_panel():
    split = pixels(P.line_plot({"loss": [3.0, 2.0, 1.5, 1.0], "AUROC": [0.5, 0.6, 0.7, 0.8]}))
    loss_rows, auroc_rows = where(blue(split))[0], where(red(split))[0]
    assert loss_rows.size and auroc_rows.size and loss_rows.max() < auroc_rows.min()
    shared = pixels(P.line_plot({"loss": [3.0, 2.0, 1.5, 1.0], "AUROC": [0.5, 0.6, 0.7, 0.8]}, unit_series=[]))
    assert where(red(shared))[0].min() < where(blue(shared))[0].max()  # one panel: the curves overlap in height


def test_module_import_leaves_matplotlib_unloaded():
    code = "import sys, ohlora_core.pictures\nprint('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout == "False\n"


def test_a_default_caption_reaches_pictures_made_by_code_that_does_not_know_the_mode():
    """Issue 19: the fine-tunings draw their loss plots and sample grids without knowing the mode."""
    import numpy as np

    from ohlora_core.pictures import SMOKE_CAPTION, captioned, image_grid, line_plot

    tile = [np.zeros((16, 16, 3), np.uint8)]
    plain = line_plot({"loss": [1.0, 0.5]})
    with captioned(SMOKE_CAPTION):
        assert line_plot({"loss": [1.0, 0.5]}).height > plain.height
        assert image_grid(tile, thumb=None).height > 16
    assert line_plot({"loss": [1.0, 0.5]}).tobytes() == plain.tobytes()  # outside the block: no caption
