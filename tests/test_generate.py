"""Final generation (`ohlora generate`, `finetuned_samples`): the original's run_fine_tuned_generator.py
flow, property checks, and clear errors for checkpoints and properties a version cannot take."""

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

from ohlora_core.finetune.generate import (
    ORIGINAL_VALUES,
    GenerationRequestError,
    generate,
    label_vector,
    latents_around,
    load_z_csv,
)
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
        ours = postprocess(
            G.eval()(
                torch.from_numpy(z0[None].astype(np.float32)),
                torch.from_numpy(ref["label"][None].astype(np.float32)),
                trunc_psi=1.0,
                trunc_layers=0,
                randomize_noise=False,
            )["image"]
        )[0].numpy()
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
    done = _cli(
        "generate",
        "--version",
        "v3",
        "--checkpoint",
        ckpt,
        "--eyes",
        1.8,
        "--mouth",
        1.6,
        "--pose",
        -1.2,
        "-n",
        3,
        "--seed",
        0,
        "--out",
        tmp_path / "out",
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "000000.jpg",
        "000001.jpg",
        "000002.jpg",
        "request.json",
    ]
    wrong = _cli("generate", "--version", "v4", "--checkpoint", ckpt, "--out", tmp_path / "x", "--device", "cpu")
    assert (
        wrong.returncode == 2
        and "stylegan_gen_fine_tuned_v3_ckpt_0005_gen.pth takes 7 labels, but v4 means 3" in wrong.stderr
    )
    hair = _cli(
        "generate",
        "--version",
        "v3",
        "--checkpoint",
        ckpt,
        "--out",
        tmp_path / "y",
        "--device",
        "cpu",
        "--z-csv",
        tmp_path / "missing.csv",
    )
    assert hair.returncode == 2 and "cannot read z file" in hair.stderr and not (tmp_path / "y").exists()


# --- the request rules and record (ohlora_core.finetune.request), shared by the CLI and the pipeline ----------


def test_property_names_agree_with_the_score_tables():
    from ohlora_core.finetune.request import PROPERTIES, VERSION_LABELS
    from ohlora_core.scores.common import SCORE_NAMES

    assert PROPERTIES == SCORE_NAMES and VERSION_LABELS["v3"] == SCORE_NAMES


def test_values_must_be_finite_and_within_the_stated_range():
    from ohlora_core.finetune.request import PROPERTY_RANGE, validate_values

    assert PROPERTY_RANGE == (-5.0, 5.0)
    assert validate_values({"eyes": -5, "pose": 5.0}) == {"eyes": -5.0, "pose": 5.0}
    for bad, message in (
        (float("nan"), "eyes nan is not a finite number"),
        (float("-inf"), "eyes -inf is not a finite"),
        (1e30, r"eyes 1e\+30 is outside \[-5, 5\]; property values are normalised scores"),
        (-5.01, r"eyes -5.01 is outside"),
    ):
        with pytest.raises(GenerationRequestError, match=message):
            validate_values({"eyes": bad})
    with pytest.raises(GenerationRequestError, match="--hair-color inf"):
        validate_values({"hair_color": float("inf")}, name=lambda p: "--" + p.replace("_", "-"))
    with pytest.raises(GenerationRequestError, match="unknown properties smile"):
        validate_values({"smile": 1.0})


def test_generate_itself_refuses_what_the_cli_refuses(tmp_path):
    """The pipeline's finetuned_samples calls generate() directly: the same rules hold there, before a forward."""
    G = _v3_generator(3)
    z0 = np.zeros(512)
    for kwargs, message in (
        ({"values": {"eyes": float("nan")}}, "eyes nan"),
        ({"noise": float("inf")}, "noise inf"),
        ({"n": 0}, "n 0 must be at least 1"),
        ({"batch_size": -1}, "batch_size -1 must be"),
        ({"z0": np.full(512, np.nan)}, "z: column 0 is nan"),
    ):
        args = {"z0": z0, "values": ORIGINAL_VALUES, **kwargs}
        with pytest.raises(GenerationRequestError, match=message):
            generate(G, "v3", args.pop("z0"), args.pop("values"), tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def _request(**changes):
    from ohlora_core.finetune.request import GenerationRequest, Source

    fields = dict(
        method="finetuned",
        values={"eyes": 1.8, "pose": -1.2},
        z=list(np.linspace(-1, 1, 512) / 3),
        generator=Source("/m/g.pth", "ab" * 32),
        n=3,
        noise=0.3,
        seed=7,
        batch=2,
        device="cpu",
    )
    return GenerationRequest(**{**fields, **changes})


def test_the_request_record_round_trips_and_names_its_command():
    from ohlora_core.finetune.request import GenerationRequest, Source

    request = _request(z_file="/z/test_z_vector_0005.csv", z_sha256="cd" * 32)
    again = GenerationRequest.from_json(request.to_json("/o"))
    assert again == request and again.z == request.z  # every float64 of z kept
    assert request.argv("/o") == [
        "ohlora",
        "generate",
        "--method",
        "finetuned",
        "--version",
        "v3",
        "--checkpoint",
        "/m/g.pth",
        "--z-csv",
        "/z/test_z_vector_0005.csv",
        "--eyes=1.8",
        "--pose=-1.2",
        "-n",
        "3",
        "--noise=0.3",
        "--seed",
        "7",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--out",
        "/o",
    ]
    assert json.loads(request.to_json("/o"))["command"] == " ".join(request.argv("/o"))
    from_asset = _request(
        generator=Source(
            "/s/artifacts/smoke/v3/r/g.pth", "ab" * 32, asset="stylegan_finetune_v3", mode="smoke", data_version="d"
        ),
        storage="/s",
    )
    assert from_asset.is_smoke and not request.is_smoke
    assert "--storage /s --mode smoke" in from_asset.command() and "--checkpoint" not in from_asset.command()
    directions = _request(
        method="directions",
        directions=Source("/d.npz", "ef" * 32),
        generator=Source("smoke_generator(seed=3)", None, asset="latent_w", mode="smoke", data_version="w"),
        storage="/s",
    )
    assert directions.generator.smoke_seed == 3 and directions.is_smoke
    assert GenerationRequest.from_json(directions.to_json()) == directions
    assert "--directions /d.npz" in directions.command() and "--generator" not in directions.command()


def test_a_damaged_record_is_refused_naming_the_file():
    from ohlora_core.finetune.request import GenerationRequest

    record = json.loads(_request().to_json())
    for change, message in (
        ({"noise": None}, "r.json: noise None is not a number"),
        ({"format": 2}, "not a request record"),
        ({"z": [0.0] * 3}, "expected a z of 512 values"),
        ({"method": "directions"}, "not a request record .KeyError: 'directions'"),
    ):
        with pytest.raises(GenerationRequestError, match=message):
            GenerationRequest.from_json(json.dumps({**record, **change}), "r.json")
    del record["generator"]
    with pytest.raises(GenerationRequestError, match="r.json: not a request record .KeyError: 'generator'"):
        GenerationRequest.from_json(json.dumps(record), "r.json")


def test_a_generator_of_the_wrong_kind_is_refused_naming_the_file():
    from ohlora_core.io import CheckpointError
    from ohlora_core.stylegan.checkpoint import check_generator

    G = _v3_generator(3)
    assert check_generator(G, "g.pth", conditional=True) is G
    with pytest.raises(
        CheckpointError,
        match=r"g.pth is a fine-tuned \(label-conditioned, 7 labels\) generator; "
        r"expected the pretrained, unconditional one \(pass it\)",
    ):
        check_generator(G, "g.pth", conditional=False, hint="pass it")
    small = StyleGANGenerator(**{**weights.G_CONFIG, "resolution": 128})
    with pytest.raises(CheckpointError, match="s.pth is a 128x128 generator; expected 256x256"):
        check_generator(small, "s.pth")
    with pytest.raises(CheckpointError, match="u.pth is an unconditional"):
        check_generator(StyleGANGenerator(**weights.G_CONFIG), "u.pth", conditional=True)
