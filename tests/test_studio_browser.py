"""The studio page in a real browser: Debian's chromium, headless, driven by Playwright for Python (`executable_path`:
nothing downloads a browser), against `ohlora studio` as a user starts it. Sliders moved by keyboard update the image
and the measured bars (to what the API gives for the page's latest state, with fewer requests than changes: the
client coalesces), the method switch keeps the values, side by side shows a row, a thumbnail of the variation strip
becomes z, and an export is reproduced byte for byte by the command the page shows and by `--request`.
Screenshot: test-artifacts/studio.png (docs/studio.png is a copy: a test run does not rewrite a tracked file)."""

import base64
import json
import shlex
import subprocess
import urllib.request
from pathlib import Path

import pytest

from ohlora_core.studio import SMOKE_NOTICE
from tests.labelling_support import free_port
from tests.studio_support import make_storage, server_env, start_server, stop_server
from tests.test_labelling_browser import CHROMIUM_ARGS, chromium_path

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
IDLE = "window.studioIdle && window.studioIdle()"


@pytest.fixture
def server(tmp_path):
    root = make_storage(tmp_path)
    port = free_port()
    proc = start_server(root, port, "--exports", tmp_path / "exports")
    yield root, port
    stop_server(proc)


def api_render(port, body) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/render",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(req, timeout=60).read())


def settle(page):
    page.wait_for_function(IDLE, timeout=60_000)


def page_state(page) -> dict:
    return page.evaluate("request()")


def jpeg(src: str) -> bytes:
    return base64.b64decode(src.split(",", 1)[1])


def test_sliders_methods_side_by_side_strip_and_export_in_the_browser(server):
    from playwright.sync_api import sync_playwright

    root, port = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#image-v3")
            settle(page)
            check_the_page_explains_itself(page)
            move_sliders_by_keyboard(page, port)
            choose_z(page, port, root)
            switch_method_and_compare(page, port)
            pick_from_the_strip(page)
            folder = export_and_reproduce(page)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "studio.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    assert Path(folder).parent == (root / "exports").resolve()  # where --exports said


def check_the_page_explains_itself(page):
    assert page.locator("#notice").is_visible() and page.inner_text("#notice") == SMOKE_NOTICE
    assert (
        page.is_disabled("#method-v2")
        and page.inner_text("label[for=method-v2]").strip() == "v2 (materialize stylegan_finetune_v2)"
    )
    assert page.is_checked("#method-v3")
    assert [page.get_attribute(f"#s-{p}", "max") for p in ("eyes", "mouth", "pose")] == ["1.8", "1.6", "3.6"]
    assert page.inner_text("#bar-v3-eyes .nums").startswith("requested 1.8 · measured ")
    assert "pass share" in page.inner_text("#tile-v3 table.report") and "0.75" in page.inner_text("#tile-v3")


def move_sliders_by_keyboard(page, port):
    before = page.get_attribute("#image-v3", "src")
    stats0 = page.evaluate("({...window.studio.stats})")
    page.focus("#s-eyes")
    for _ in range(10):
        page.keyboard.press("ArrowLeft")
    page.focus("#s-pose")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    settle(page)
    assert page.inner_text("#v-eyes") == "0.8" and page.inner_text("#v-pose") == "-0.6"
    stats = page.evaluate("({...window.studio.stats})")
    changes, sent = stats["changes"] - stats0["changes"], stats["sent"] - stats0["sent"]
    assert changes == 16 and 1 <= sent < changes, stats  # one request in flight, then the latest state
    assert 1 <= stats["measures"] - stats0["measures"] <= sent  # measured once the keys rest, not per image
    state = page_state(page)
    assert state["values"]["eyes"] == 0.8 and state["values"]["pose"] == -0.6
    want = api_render(port, state)["results"][0]  # what the server gives for the page's final state
    src = page.get_attribute("#image-v3", "src")
    assert src != before and src == want["image"]
    measured = f"{want['measured']['eyes']:.2f}"
    assert page.inner_text("#bar-v3-eyes .nums").startswith(f"requested 0.8 · measured {measured}")
    assert page.inner_text("#bar-v3-pose .nums").startswith("requested -0.6 · measured ")


def choose_z(page, port, root):
    """z from one of v3's test_z_vector files, then an uploaded one (JSON text), then back to the seed."""
    from ohlora_core.artifacts import StyleganFinetuneV3
    from ohlora_core.finetune.generate import load_z_csv

    page.select_option("#z-kind", "file")
    settle(page)
    assert page.inner_text("#z-label") == "z from test_z_vector_0003.csv"
    state = page_state(page)
    assert state["z"] == {"kind": "file", "name": "test_z_vector_0003.csv"}
    assert page.get_attribute("#image-v3", "src") == api_render(port, state)["results"][0]["image"]
    z = load_z_csv(
        StyleganFinetuneV3(root / "artifacts" / "smoke" / "stylegan_finetune_v3" / "current").test_z_vector(7)
    ).tolist()
    page.click("details summary")
    page.fill("#z-text", json.dumps(z))
    page.click("#z-use")
    page.wait_for_function("document.querySelector('#z-label').textContent === 'uploaded z'")
    settle(page)
    state = page_state(page)
    assert state["z"] == {"kind": "row", "z": z}
    assert page.get_attribute("#image-v3", "src") == api_render(port, state)["results"][0]["image"]
    page.select_option("#z-kind", "seed")
    settle(page)
    assert page_state(page)["z"] == {"kind": "seed"}


def switch_method_and_compare(page, port):
    page.check("#method-v4")
    settle(page)
    assert page.locator("#sliders .slider").count() == 3 and page.inner_text("#v-eyes") == "0.8"  # values kept
    assert page.locator("#tile-v4").count() == 1 and page.locator("#tile-v3").count() == 0
    assert "v4 is not in the latest controllability report" in page.inner_text("#tile-v4")
    page.check("#compare-v3")
    page.check("#compare-directions")
    settle(page)
    assert page.eval_on_selector_all("#row .tile", "ts => ts.map(t => t.id)") == [
        "tile-v4",
        "tile-v3",
        "tile-directions",
    ]
    want = api_render(port, page_state(page))["results"]
    for r in want:
        assert page.get_attribute(f"#image-{r['method']}", "src") == r["image"]
    assert page.inner_text("#bar-v3-hair_color .nums").startswith("requested – · measured ")  # v4's sliders only


def pick_from_the_strip(page):
    page.wait_for_selector("#thumb-3")
    thumb = page.get_attribute("#thumb-3", "src")
    page.click("#thumb-3")
    page.wait_for_function("document.querySelector('#z-label').textContent.startsWith('strip image 3')")
    settle(page)
    assert page.inner_text("#z-label") == "strip image 3 of seed 0"
    assert page.get_attribute("#image-v4", "src") == thumb  # the thumbnail's very bytes, now the page's z


def shell(argv: list[str]) -> None:
    """A command the page shows, run as the user would in the studio's environment (the `ohlora` console script
    of this environment, the same thread count: see studio_support.server_env)."""
    done = subprocess.run(argv, env=server_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "wrote 9 images" in done.stdout, done.stderr


def export_and_reproduce(page) -> str:
    page.check("#export-strip")
    shown = {m: jpeg(page.get_attribute(f"#image-{m}", "src")) for m in ("v4", "v3", "directions")}
    page.click("#export")
    page.wait_for_selector("code.command >> nth=2", timeout=120_000)
    commands = {c.get_attribute("data-method"): c.inner_text() for c in page.query_selector_all("code.command")}
    replays = {c.get_attribute("data-method"): c.inner_text() for c in page.query_selector_all("code.replay")}
    assert list(commands) == ["v4", "v3", "directions"]
    folder = None
    for method, command in commands.items():
        argv = shlex.split(command)
        out = Path(argv[argv.index("--out") + 1])
        exported = out.parent / method
        folder = str(out.parent)
        names = sorted(p.name for p in exported.glob("*.jpg"))
        assert names == [f"{k:06d}.jpg" for k in range(9)]
        if method != "directions":  # directions maps the 9 rows in one batch: row 0 may differ in the last bit
            assert (exported / "000000.jpg").read_bytes() == shown[method]
        shell(argv)  # the command as the page shows it
        replay = shlex.split(replays[method])
        shell(replay)
        for name in names:
            assert (out / name).read_bytes() == (exported / name).read_bytes()
            assert (Path(replay[-1]) / name).read_bytes() == (exported / name).read_bytes()
    assert f"9 images per method in {folder}" in page.inner_text("#export-result")
    return folder
