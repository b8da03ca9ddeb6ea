"""What a person sees in the Dagster UI, in a real browser: `dg dev -w workspace.yaml` on a temporary
instance, Debian's chromium driven headless by Playwright. Every asset is drawn in its group; clicking
Materialize on `latent_codes` runs it to success; its page shows the preview picture.
Screenshots: test-artifacts/ui_*.png. The server's whole process group is stopped even on failure."""
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ohlora_dagster.definitions import defs
from tests.labelling_support import free_port
from tests.test_labelling_browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]


@pytest.fixture
def ui(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text().replace("storage/dagster", str(home)))
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "OHLORA_STORAGE": str(tmp_path / "storage"),
           "OHLORA_MODE": "smoke", "OHLORA_DEVICE": "cpu"}
    proc = subprocess.Popen(["dg", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env,
                            stdout=open(tmp_path / "dev.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + TIMEOUT
        while True:  # the webserver answers, and the code location has loaded its assets
            try:
                if _graphql(port, "{ assetNodes { id } }")["assetNodes"]:
                    break
            except (OSError, KeyError, TypeError):
                pass
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(1)
        yield port, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_the_ui_draws_every_asset_in_its_group_and_materializes_one(ui):
    from playwright.sync_api import sync_playwright

    port, tmp_path = ui
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            for group, names in sorted(groups.items()):
                page.goto(f"{base}/locations/ohlora/asset-groups/{group}", timeout=60_000)
                nodes = page.locator('[class*="AssetNode_assetName"]')
                nodes.first.wait_for(timeout=60_000)
                page.wait_for_function(f"document.querySelectorAll('[class*=\"AssetNode_assetName\"]').length >= {len(names)}",
                                       timeout=60_000)
                drawn = {t.strip() for t in nodes.all_inner_texts()}
                assert drawn == names, (group, drawn ^ names)
            page.screenshot(path=str(ARTIFACTS / "ui_group_control.png"))

            page.goto(f"{base}/assets/latent_codes", timeout=60_000)
            page.locator("button", has_text="Materialize").first.click(timeout=60_000)
            deadline = time.time() + TIMEOUT
            while True:  # queued -> launched by the daemon -> success
                runs = _graphql(port, "{ runsOrError { ... on Runs { results { status } } } }")["runsOrError"]["results"]
                if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                assert time.time() < deadline, runs
                time.sleep(1)
            assert runs[0]["status"] == "SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]
            page.goto(f"{base}/assets/latent_codes", timeout=60_000)
            page.get_by_text("[Show Markdown]").first.click(timeout=60_000)  # the `preview` entry, rendered
            picture = page.locator('img[src^="data:image/png;base64,"]').first
            picture.wait_for(timeout=60_000)
            assert picture.evaluate("img => img.naturalWidth") > 100
            page.screenshot(path=str(ARTIFACTS / "ui_latent_codes.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "storage/artifacts/smoke/latent_codes/current/latents.npy").is_file()
