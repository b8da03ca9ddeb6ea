"""Shared by the labelling tests: a storage with a small raw_images asset, and the server as a user runs it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd

from ohlora_core.artifacts import GenderQualityScores, RawImages
from ohlora_core.generation import encode_jpeg
from ohlora_core.io import atomic_write_bytes, atomic_write_csv, atomic_write_text, sha256_file
from ohlora_core.store import RecipeDir

N = 12


def make_storage(root, n=N, with_cnn=True, labelled_then=()):
    """A storage root with a `raw_images` asset of n small faces and, `with_cnn`, a `gender_quality_scores`
    whose ensemble scored every image but `labelled_then` (hand-labelled when it was materialized)."""
    stage = RecipeDir(root / "artifacts" / "smoke" / "raw_images", {"test": n})
    images = RawImages(stage.open())
    rng = np.random.default_rng(0)
    manifest = {}
    for i in range(n):
        atomic_write_bytes(images.image(i), encode_jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
        manifest[images.image_key(i)] = sha256_file(images.image(i))
    atomic_write_text(images.manifest, json.dumps(manifest))
    stage.promote([images.manifest.name])
    if with_cnn:
        stage = RecipeDir(root / "artifacts" / "smoke" / "gender_quality_scores", {"test": n})
        scores = GenderQualityScores(stage.open())
        scored = [i for i in range(n) if i not in labelled_then]
        for prop in ("gender", "quality"):
            atomic_write_csv(
                scores.inference(prop),
                pd.DataFrame({"img_no": scored, f"property_{prop}_final_score": np.linspace(0.02, 0.98, n)[scored]}),
            )
        atomic_write_csv(scores.table, pd.DataFrame({"img_no": range(n), "gender_score": 0.5, "quality_score": 0.5}))
        stage.promote([])
    return RawImages(root / "artifacts" / "smoke" / "raw_images" / "current")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/label",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def label_command(root, *args) -> list[str]:
    """The `ohlora label` command line for a storage root (smoke mode: no real checkpoint there)."""
    return [sys.executable, "-m", "ohlora_core.cli", "label", "--storage", str(root), *map(str, args)]


def start_server(root, port, *args):
    """`ohlora label` as a user starts it, in its own process group; returns once it answers."""
    proc = subprocess.Popen(
        label_command(root, "--port", port, "--expected", 10, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/items", timeout=1)
            return proc
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the label server did not start")
