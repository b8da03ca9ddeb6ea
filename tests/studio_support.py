"""Shared by the studio tests: a small smoke-mode storage with every asset the studio reads, and the server as a
user starts it.

The generators are the real architecture (ohlora_core.stylegan, 256x256, z 512, genforce layout) with seeded
random weights (`smoke_generator`) at narrow widths (w 32, at most 32 feature maps) so a forward takes tens of ms:
v1 and v3 take the 7 labels, v4 eyes, mouth and pose; v2 is left out (the page must grey it out). The directions
are fitted (`fit_directions`, ridge) on w of a narrow pretrained generator that latent_w names by path, the
property CNN is the real PropertyScoreCNN with seeded weights, and the report holds v1, v3 and directions
(not v4: "not in the latest report")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ohlora_core.artifacts import FINETUNES, ControllabilityReport, LatentDirections, LatentW, PropertyScoreCnn
from ohlora_core.directions import fit_directions, save_directions
from ohlora_core.io import atomic_save_npy, atomic_torch_save, atomic_write_csv, sha256_file
from ohlora_core.scores.common import SCORE_NAMES
from ohlora_core.store import RecipeDir
from ohlora_core.stylegan import smoke_generator

NARROW = dict(w_space_dim=32, mapping_fmaps=32, fmaps_base=2048, fmaps_max=32)
LABELS = {"v1": 7, "v3": 7, "v4": 3}
REPORT = pd.DataFrame(
    [
        {
            "method": "v1",
            "z": 4,
            "pass_share": 0.25,
            "eyes_corr": 0.81,
            "eyes_mae": 0.9,
            "mouth_corr": 0.7,
            "mouth_mae": 0.65,
            "pose_corr": 0.88,
            "pose_mae": 1.1,
            "seconds_per_image": 0.5,
        },
        {
            "method": "v3",
            "z": 4,
            "pass_share": 0.75,
            "eyes_corr": 0.91,
            "eyes_mae": 0.4,
            "mouth_corr": 0.87,
            "mouth_mae": 0.5,
            "pose_corr": 0.93,
            "pose_mae": 0.8,
            "seconds_per_image": 0.5,
        },
        {
            "method": "directions",
            "z": 4,
            "pass_share": 0.0,
            "eyes_corr": float("nan"),
            "eyes_mae": 1.7,
            "mouth_corr": 0.2,
            "mouth_mae": 1.3,
            "pose_corr": 0.4,
            "pose_mae": 2.0,
            "seconds_per_image": 0.4,
        },
    ]
)


def _asset(root: Path, cls, write, recipe: dict | None = None) -> Path:
    """Materialize `cls` in smoke mode: `write(files)` fills the folder of `recipe`, which becomes `current`
    (another recipe: another folder, as a rematerialization with other inputs)."""
    recipe = RecipeDir(root / "artifacts" / "smoke" / cls.NAME, recipe or {"test": cls.NAME})
    files = cls(recipe.open())
    names = write(files)
    recipe.promote(names)
    return root / "artifacts" / "smoke" / cls.NAME / "current"


def finetune_asset(root: Path, version: str, seed: int) -> None:
    def write(files):
        G = smoke_generator(seed, label_size=LABELS[version], label_embed_dim=24, **NARROW)
        torch.save(G.state_dict(), files.generator)  # a bare state_dict, as the original saved its generators
        names = [files.generator.name]
        if version == "v3":
            for epoch, zseed in ((3, 11), (7, 12)):  # two z's that "passed v3's test", the original's format
                z = np.random.default_rng(zseed).standard_normal((1, 512))
                atomic_write_csv(files.test_z_vector(epoch), pd.DataFrame(z))
                names.append(files.test_z_vector(epoch).name)
        return names

    _asset(root, FINETUNES[version], write, {"test": version, "seed": seed})


def _directions(root: Path) -> None:
    pretrained = root / "models" / "pretrained_small.pth"  # not the full-mode checkpoint's name: mode stays smoke
    pretrained.parent.mkdir(parents=True, exist_ok=True)
    G = smoke_generator(5, **NARROW)
    torch.save({"generator": G.state_dict()}, pretrained)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(np.random.default_rng(1).standard_normal((60, 512)).astype(np.float32)))["w"]
    w = w.numpy()
    scores = np.random.default_rng(2).standard_normal((60, 7))

    def write_w(files):
        atomic_save_npy(files.w, w)
        return [files.w.name]

    recipe = RecipeDir(
        root / "artifacts" / "smoke" / LatentW.NAME, {"weights": f"{pretrained} (sha256 {sha256_file(pretrained)})"}
    )  # as the asset records it
    files = LatentW(recipe.open())
    recipe.promote(write_w(files))

    def write_directions(files):
        save_directions(files.directions, fit_directions(w, scores, SCORE_NAMES, method="ridge", seed=0))
        return [files.directions.name]

    _asset(root, LatentDirections, write_directions)


def _cnn(root: Path) -> None:
    from ohlora_core.cnn.models import PropertyScoreCNN

    def write(files):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            atomic_torch_save(files.checkpoint, PropertyScoreCNN().state_dict())
        return [files.checkpoint.name]

    _asset(root, PropertyScoreCnn, write)


def _report(root: Path) -> None:
    def write(files):
        atomic_write_csv(files.table, REPORT.round(4))
        return [files.table.name]

    _asset(root, ControllabilityReport, write)


def make_storage(root: Path, versions=("v1", "v3", "v4"), directions=True, cnn=True, report=True) -> Path:
    """A storage root (smoke mode) with the studio's assets; returns the root."""
    root = Path(root)
    for k, version in enumerate(versions):
        finetune_asset(root, version, 20 + k)
    if directions:
        _directions(root)
    if cnn:
        _cnn(root)
    if report:
        _report(root)
    return root


def studio_command(root, *args) -> list[str]:
    """`ohlora studio` for a storage root, as a user types it (the module, so the test's interpreter runs it)."""
    return [
        sys.executable,
        "-m",
        "ohlora_core.cli",
        "studio",
        "--storage",
        str(root),
        "--device",
        "cpu",
        *map(str, args),
    ]


def server_env() -> dict:
    """The studio's environment in the tests: one thread (the test process and the browser share the cores with
    it). A command that must give the studio's bytes runs with the same: a batched matmul may round differently
    with another thread count."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def start_server(root, port, *args):
    """`ohlora studio` in its own process group (`server_env`); returns once it answers."""
    proc = subprocess.Popen(
        studio_command(root, "--port", port, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        env=server_env(),
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the studio server did not start")


def stop_server(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
