"""The labelling page in a real browser: Debian's chromium, headless, driven by Playwright for Python
(`executable_path`: nothing downloads a browser). The keys do what the help says, label 10 images with the
keyboard (the page's own requests pass the local-server guard), reload, see them kept, check the CSV; the
smoke notice and the reason for a missing CNN prediction are on the page. Screenshot:
test-artifacts/labelling.png (docs/labelling.png is a copy)."""

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from ohlora_core.cnn.labels import load_hand_labels
from ohlora_core.layout import StorageLayout
from tests.labelling_support import N, free_port, make_storage, start_server

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    return path


@pytest.fixture
def server(tmp_path):
    make_storage(tmp_path, labelled_then=(11,))  # image 11 was hand-labelled when the CNN scores were made
    port = free_port()
    proc = start_server(tmp_path, port)
    yield tmp_path, port
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_label_ten_images_with_the_keyboard_reload_and_keep_them(server):
    from playwright.sync_api import sync_playwright

    root, port = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".card.sel")
            assert page.inner_text("#progress") == "0 of 10 labelled"
            check_the_page_explains_itself(page, StorageLayout(root, "smoke").labels_csv)
            check_the_keys_do_what_the_help_says(page)
            start = time.perf_counter()
            for k in range(10):  # F/M alternating, all good: two keys per image, the page moves on by itself
                page.keyboard.press("f" if k % 2 == 0 else "m")
                page.keyboard.press("g")
                page.wait_for_function(f"document.querySelector('#progress').textContent.startsWith('{k + 1} of')")
            seconds = time.perf_counter() - start
            print(f"\nkeyboard flow: 10 labels in {seconds:.2f} s = {600 / seconds:.0f} labels per minute (scripted)")
            page.reload()
            page.wait_for_selector(".card.sel")
            assert page.inner_text("#progress") == "10 of 10 labelled"
            assert page.locator(".card.done").count() == 10
            page.select_option("#filter", "unlabelled")
            assert page.locator(".card").count() == N - 10
            page.select_option("#filter", "all")
            page.select_option("#order", "uncertain")
            first = page.locator(".card").first.get_attribute("id")
            assert first in ("card-5", "card-6")  # CNN probabilities nearest 0.5 (linspace .02..0.98 over 12)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "labelling.png"))
        finally:
            browser.close()
    table = load_hand_labels(StorageLayout(root, "smoke").labels_csv, N, expected_rows=10)
    assert table["img_no"].tolist() == list(range(10))
    assert table["gender"].tolist() == [1, 0] * 5 and table["quality"].tolist() == [1] * 10


def check_the_page_explains_itself(page, csv):
    notice = page.locator("#notice")
    assert notice.is_visible() and notice.inner_text() == (
        f"smoke mode: random-weight images, not faces; labels go to {csv}, which the smoke pipeline does not read "
        "— it uses stand-in labels"
    )
    assert page.inner_text("#file") == f"labels → {csv} (smoke mode)"
    assert page.inner_text("#card-11 .cnn") == (
        "CNN: female –, good – (no prediction: hand-labelled when "
        "gender_quality_scores was materialized; the CNNs predict only "
        "unlabelled images)"
    )
    assert "(no prediction" not in page.inner_text("#card-3 .cnn")


def check_the_keys_do_what_the_help_says(page):
    assert "← or k: previous · → or j: next" in page.inner_text("#keys")
    selected = lambda: page.locator(".card.sel").get_attribute("id")  # noqa: E731
    assert selected() == "card-0"
    for key, expected in (
        ("j", "card-1"),
        ("j", "card-2"),
        ("k", "card-1"),
        ("ArrowRight", "card-2"),
        ("ArrowLeft", "card-1"),
        ("k", "card-0"),
    ):
        page.keyboard.press(key)
        assert selected() == expected, f"after {key}: {selected()}"
