"""What a person sees in the Dagster UI, in a real browser: `dg dev -w workspace.yaml` on the instance and
storage of the suite's smoke graph (conftest.smoke_graph), Debian's chromium driven headless by Playwright.
Both code locations load; every smoke asset is drawn in its group; the fine-tuning page shows its loss plot,
the report its scatter plots, segmentation its preview; clicking Materialize on `latent_codes` runs it to
success. Screenshots: test-artifacts/ui_*.png (docs/ holds copies). The server's whole process group is
stopped even on failure."""

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ohlora_dagster.smoke import defs
from tests.labelling_support import free_port
from tests.test_labelling_browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]


@pytest.fixture
def ui(smoke_graph, tmp_path):
    port = free_port()
    env = {**os.environ, **smoke_graph.env, "OHLORA_DEVICE": "cpu"}
    proc = subprocess.Popen(
        ["dg", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / "dev.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + TIMEOUT
        while True:  # the webserver answers, and both code locations have loaded their assets
            try:
                if len(_graphql(port, "{ assetNodes { id } }")["assetNodes"]) == 40:
                    break
            except (OSError, KeyError, TypeError):
                pass
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(1)
        yield port, tmp_path, smoke_graph
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _show_markdown(page, label: str, path: str) -> None:
    """Open the asset page's metadata entry `label` ([Show Markdown]) and screenshot its picture."""
    row = page.locator("tr", has_text=label).first
    row.get_by_text("[Show Markdown]").click(timeout=60_000)
    picture = page.locator('[role="dialog"] img[src^="data:image/png;base64,"]').first
    picture.wait_for(timeout=60_000)
    assert picture.evaluate("img => img.naturalWidth") > 300
    page.locator('[role="dialog"]').first.screenshot(path=path)
    page.keyboard.press("Escape")


def test_the_ui_draws_every_asset_shows_the_pictures_and_materializes_one(ui):
    from playwright.sync_api import sync_playwright

    port, tmp_path, graph = ui
    asset_graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in asset_graph.get_all_asset_keys():
        groups.setdefault(asset_graph.get(key).group_name, set()).add(key.path[-1])
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            for group, names in sorted(groups.items()):
                page.goto(f"{base}/locations/ohlora-smoke/asset-groups/{group}", timeout=60_000)
                nodes = page.locator('[class*="AssetNode_assetName"]')
                nodes.first.wait_for(timeout=60_000)
                page.wait_for_function(
                    f"document.querySelectorAll('[class*=\"AssetNode_assetName\"]').length >= {len(names)}",
                    timeout=60_000,
                )
                drawn = {t.strip().split("/")[-1] for t in nodes.all_inner_texts()}
                assert drawn == names, (group, drawn ^ names)
            for asset, label, shot in (
                ("stylegan_finetune_v1", "loss_plot", "ui_finetune.png"),
                ("controllability_report", "scatter_v3", "ui_report.png"),
                ("segmentation_maps", "preview", "ui_segmentation.png"),
            ):
                page.goto(f"{base}/assets/smoke/{asset}", timeout=60_000)
                _show_markdown(page, label, str(ARTIFACTS / shot))

            page.goto(f"{base}/assets/smoke/latent_codes", timeout=60_000)
            page.locator("button", has_text="Materialize").first.click(timeout=60_000)
            deadline = time.time() + TIMEOUT
            while True:  # queued -> launched by the daemon -> success
                runs = _graphql(port, "{ runsOrError { ... on Runs { results { status } } } }")["runsOrError"][
                    "results"
                ]
                if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                assert time.time() < deadline, runs
                time.sleep(1)
            assert runs[0]["status"] == "SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]
        finally:
            browser.close()
    assert (graph.root / "artifacts/smoke/latent_codes/current/latents.npy").is_file()
