"""Final generation (`ohlora generate`, `finetuned_samples`): the original's run_fine_tuned_generator.py
flow, property checks, and clear errors for checkpoints and properties a version cannot take."""
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

from ohlora_core.finetune.generate import (ORIGINAL_VALUES, GenerationRequestError, generate, label_vector,
                                           latents_around, load_z_csv)
from ohlora_core.stylegan import StyleGANGenerator, postprocess

FIX = Path(__file__).parent / "fixtures" / "finetune"
sys.path.insert(0, str(FIX))
import weights  # noqa: E402


def _v3_generator(seed: int) -> StyleGANGenerator:
    G = StyleGANGenerator(**weights.G_CONFIG, label_size=7, label_embed_dim=24)
    G.load_state_dict(weights.conditional_generator_state(seed, 7, 24))
    return G


def test_image_0_follows_the_originals_final_inference(tmp_path):
    """fixture: the original's run_fine_tuned_generator.py flow on the same weights and z file
    (make_final_fixture.py). Row 0 is the file's z itself (no noise), so it must match."""
    ref = np.load(FIX / "final_v3.npz")
    G = _v3_generator(int(ref["seed"]))
    z_file = tmp_path / "test_z_vector_0005.csv"
    import pandas as pd

    pd.DataFrame(ref["z"]).to_csv(z_file, index=False)
    z0 = load_z_csv(z_file)
    np.testing.assert_array_equal(z0, ref["z"][0])
    paths = generate(G, "v3", z0, ORIGINAL_VALUES, tmp_path / "out", n=4, seed=0, source="fixture G")
    assert [p.name for p in paths] == ["000000.jpg", "000001.jpg", "000002.jpg", "000003.jpg"]
    np.testing.assert_array_equal(label_vector("v3", ORIGINAL_VALUES, 7, "G"), ref["label"].astype(np.float32))
    with torch.no_grad():
        ours = postprocess(G.eval()(torch.from_numpy(z0[None].astype(np.float32)),
                                    torch.from_numpy(ref["label"][None].astype(np.float32)),
                                    trunc_psi=1.0, trunc_layers=0, randomize_noise=False)["image"])[0].numpy()
    diff = np.abs(ours.astype(int) - ref["image0"].astype(int))
    # float32 convolutions round differently across CPUs: a pixel at a rounding boundary may move by 1
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    if diff.max() == 0:  # same pixels: the same JPEG (cv2, q95, 4:2:0), byte for byte
        assert paths[0].read_bytes() == ref["jpeg0"].tobytes()


def test_noise_rows_are_seeded_around_z():
    z0 = np.linspace(-1, 1, 512)
    z = latents_around(z0, 20, 0.3, seed=7)
    assert z.shape == (20, 512) and z.dtype == np.float32
    np.testing.assert_array_equal(z[0], z0.astype(np.float32))
    assert 0.25 < float(np.std(z[1:] - z0)) < 0.35
    np.testing.assert_array_equal(z, latents_around(z0, 20, 0.3, seed=7))
    assert not np.array_equal(z, latents_around(z0, 20, 0.3, seed=8))


def test_properties_a_version_cannot_take_are_errors():
    assert label_vector("v4", {"eyes": 1.0, "pose": -2.0}, 3, "G").tolist() == [1.0, 0.0, -2.0]
    with pytest.raises(GenerationRequestError, match="v4 cannot take hair_color: its labels are eyes, mouth, pose"):
        label_vector("v4", {"hair_color": 1.0}, 3, "G")
    with pytest.raises(GenerationRequestError, match=r"v1\.pth takes 7 labels, but v4 means 3"):
        label_vector("v4", ORIGINAL_VALUES, 7, "v1.pth")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ohlora_core.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_writes_n_images_and_rejects_a_mismatched_checkpoint(tmp_path):
    assert any(ep.name == "ohlora" for ep in entry_points(group="console_scripts"))  # installed by pip install -e .
    ckpt = tmp_path / "stylegan_gen_fine_tuned_v3_ckpt_0005_gen.pth"
    torch.save(_v3_generator(3).state_dict(), ckpt)  # a bare state_dict, as the original saved it
    done = _cli("generate", "--version", "v3", "--checkpoint", ckpt, "--eyes", 1.8, "--mouth", 1.6, "--pose", -1.2,
                "-n", 3, "--seed", 0, "--out", tmp_path / "out", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    wrong = _cli("generate", "--version", "v4", "--checkpoint", ckpt, "--out", tmp_path / "x", "--device", "cpu")
    assert wrong.returncode == 2 and "stylegan_gen_fine_tuned_v3_ckpt_0005_gen.pth takes 7 labels, but v4 means 3" \
        in wrong.stderr
    hair = _cli("generate", "--version", "v3", "--checkpoint", ckpt, "--out", tmp_path / "y", "--device", "cpu",
                "--z-csv", tmp_path / "missing.csv")
    assert hair.returncode == 2 and "cannot read z file" in hair.stderr and not (tmp_path / "y").exists()
