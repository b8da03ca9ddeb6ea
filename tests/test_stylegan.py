"""StyleGAN generator / discriminator: parity with genforce's code (fixtures made by running it),
checkpoint loading, smoke-mode initialisation and pixel post-processing."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ohlora_core.io import CheckpointError, load_state_dict_strict
from ohlora_core.stylegan import (
    StyleGANDiscriminator,
    StyleGANGenerator,
    load_discriminator,
    load_generator,
    postprocess,
    smoke_discriminator,
    smoke_generator,
)

FIX = Path(__file__).parent / "fixtures" / "stylegan"
TOL = 1e-4
G_CASES = ["g32_uncond", "g16_fused_label3", "g32_genforce_init"]
D_CASES = ["d32_uncond", "d16_fused_label3_mbstd2"]


def fixture(name: str) -> dict:
    return torch.load(FIX / f"{name}.pt", weights_only=True)


def key_lines(model: torch.nn.Module) -> list[str]:
    buffers = {n for n, _ in model.named_buffers()}
    return [
        f"{k}\t{tuple(v.shape)}\t{str(v.dtype).replace('torch.', '')}\t{'buffer' if k in buffers else 'param'}"
        for k, v in model.state_dict().items()
    ]


def state_bytes(model: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def build_g(fx: dict, **kw) -> StyleGANGenerator:
    G = StyleGANGenerator(**fx["config"], **kw)
    load_state_dict_strict(G, fx["state_dict"], "fixture")
    return G.eval()


# ---------------------------------------------------------------- layout parity (256x256, genforce defaults)


def test_state_dict_layout_equals_genforce_256():
    assert key_lines(StyleGANGenerator(256)) == (FIX / "keys_shapes_G256.txt").read_text().splitlines()
    assert key_lines(StyleGANDiscriminator(256)) == (FIX / "keys_shapes_D256.txt").read_text().splitlines()


# ---------------------------------------------------------------- numeric parity with genforce


@pytest.mark.parametrize("fast_upsample", [True, False, "auto"])
@pytest.mark.parametrize("case", G_CASES)
@torch.no_grad()
def test_generator_eval_matches_genforce(case, fast_upsample):
    fx = fixture(case)
    G = build_g(fx, fast_upsample=fast_upsample)
    z, label, exp = fx["inputs"]["z"], fx["inputs"].get("label"), fx["outputs"]
    out = G(z, label, trunc_psi=1.0, trunc_layers=0, randomize_noise=False)
    for key in ("z", "w", "wp", "style00", "style03"):
        assert max_diff(out[key], exp[key]) < TOL, key
    assert max_diff(out["image"], exp["image"]) < TOL
    assert exp["image"].abs().max() > 1  # the fixture is not trivially small
    for psi, layers in fx["truncs"]:
        out_t = G(z, label, trunc_psi=psi, trunc_layers=layers)
        assert max_diff(out_t["wp"], exp[f"wp_psi{psi}_l{layers}"]) < TOL
        assert max_diff(out_t["image"], exp[f"image_psi{psi}_l{layers}"]) < TOL
        assert max_diff(out_t["image"], out["image"]) > 1e-2  # truncation really acted (w_avg != 0)


@pytest.mark.parametrize("case", G_CASES)
@torch.no_grad()
def test_generator_train_mode_matches_genforce_with_seeded_global_rngs(case):
    """Style mixing, random noise and the w_avg EMA reproduce genforce when torch+numpy are seeded alike."""
    fx = fixture(case)
    G = build_g(fx).train()
    z, label = fx["inputs"]["z"], fx["inputs"].get("label")
    for step in fx["train_steps"]:
        torch.manual_seed(step["seed"])
        np.random.seed(step["seed"])
        out = G(z, label, randomize_noise=True)
        assert max_diff(out["image"], step["image"]) < TOL
        assert max_diff(G.truncation.w_avg, step["w_avg"]) < TOL
        assert max_diff(out["image"], fx["outputs"]["image"]) > 1e-2


@pytest.mark.parametrize("case", D_CASES)
@torch.no_grad()
def test_discriminator_matches_genforce(case):
    fx = fixture(case)
    D = StyleGANDiscriminator(**fx["config"])
    load_state_dict_strict(D, fx["state_dict"], "fixture")
    scores = D.eval()(fx["inputs"]["image"], fx["inputs"].get("label"))
    assert scores.shape == (fx["inputs"]["image"].shape[0], 1)
    assert max_diff(scores, fx["outputs"]["score"]) < TOL


def test_postprocess_bit_exact_with_genforce_near_rounding_boundaries():
    fx = fixture("postprocess")
    out = postprocess(fx["images"])
    assert out.dtype == torch.uint8 and out.shape == fx["expected"].shape
    assert torch.equal(out, fx["expected"])
    # The boundary cases matter: a float32 formula gets some of them wrong.
    x = fx["images"].permute(0, 2, 3, 1)
    naive = ((x + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    assert not torch.equal(naive, fx["expected"])


def test_postprocess_layout_and_range():
    img = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0, 0.5]).view(1, 3, 1, 2)
    out = postprocess(img)
    assert out.shape == (1, 1, 2, 3)
    assert out[0, 0].tolist() == [[0, 128, 255], [0, 255, 191]]
    with pytest.raises(ValueError, match="N, C, H, W"):
        postprocess(img[0])


# ---------------------------------------------------------------- behaviour


@torch.no_grad()
def test_eval_is_deterministic_and_leaves_w_avg_alone():
    G = smoke_generator(3, resolution=8, z_space_dim=16, w_space_dim=16, mapping_fmaps=16)
    z = torch.randn(2, 16)
    a, b = G(z)["image"], G(z)["image"]
    assert torch.equal(a, b)
    assert not G.truncation.w_avg.any()
    G.train()
    g1 = torch.Generator().manual_seed(5)
    first = G(z, generator=g1)["image"]
    assert G.truncation.w_avg.any()
    G.truncation.w_avg.zero_()
    again = G(z, generator=torch.Generator().manual_seed(5))["image"]
    assert torch.equal(first, again)  # an explicit generator makes train mode reproducible


@torch.no_grad()
def test_label_embedding_dim_configurable_like_ohlora_v1():
    G = StyleGANGenerator(8, label_size=7, label_embed_dim=16)
    assert G.mapping.label_weight.shape == (7, 16)
    assert G.mapping.dense0.weight.shape == (512, 528)
    z, label = torch.randn(2, 512), torch.rand(2, 7)
    out = G.eval()(z, label)
    x = torch.cat([z, label @ G.mapping.label_weight], dim=1)
    x = x / torch.sqrt(x.square().mean(1, keepdim=True) + 1e-8)
    assert max_diff(out["z"], x) < 1e-5
    for i in range(8):
        d = getattr(G.mapping, f"dense{i}")
        x = F.leaky_relu(
            F.linear(x, d.weight * (math.sqrt(2) / math.sqrt(d.weight.shape[1]) * 0.01), d.bias * 0.01), 0.2
        )
    assert max_diff(out["w"], x) < 1e-5
    with pytest.raises(ValueError, match=r"label of shape \[N, 7\]"):
        G(z)


@torch.no_grad()
def test_discriminator_concat_label_mode():
    D = StyleGANDiscriminator(
        8, label_size=7, label_mode="concat", minibatch_std_group_size=2, fmaps_base=64, fmaps_max=16
    )
    assert D.layer4.weight.shape == (1, 16 + 7)
    img, label = torch.randn(4, 3, 8, 8), torch.rand(4, 7)
    h = D.input0(img)
    for i in range(4):
        h = getattr(D, f"layer{i}")(h)
    expected = F.linear(torch.cat([h, label], 1), D.layer4.weight * (1 / math.sqrt(23)), D.layer4.bias)
    assert max_diff(D(img, label), expected) < 1e-5


def test_input_errors_are_clear():
    G = StyleGANGenerator(8, z_space_dim=16, w_space_dim=16, mapping_fmaps=16)
    with pytest.raises(ValueError, match=r"\[N, 16\]"):
        G(torch.randn(2, 17))
    with pytest.raises(ValueError, match="level-of-detail 0"):
        G(torch.randn(2, 16), lod=1.0)
    D = StyleGANDiscriminator(8, fmaps_base=64, fmaps_max=16)
    with pytest.raises(ValueError, match="not divisible by the group size 4"):
        D(torch.randn(6, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, 3, 8, 8\]"):
        D(torch.randn(4, 3, 16, 16))
    with pytest.raises(ValueError, match="resolution must be one of"):
        StyleGANGenerator(48)


# ---------------------------------------------------------------- smoke mode


def test_smoke_models_are_seeded_and_independent_of_global_rng():
    torch.manual_seed(0)
    a = state_bytes(smoke_generator(7, resolution=16))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    b = state_bytes(smoke_generator(7, resolution=16))
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert a == b
    assert a != state_bytes(smoke_generator(8, resolution=16))
    assert state_bytes(smoke_discriminator(7, 16)) == state_bytes(smoke_discriminator(7, 16))
    assert not smoke_generator(1, 16).training


@torch.no_grad()
def test_smoke_generator_images_mostly_in_range():
    G = smoke_generator(0, resolution=32)
    img = G(torch.randn(4, 512, generator=torch.Generator().manual_seed(0)))["image"]
    assert img.shape == (4, 3, 32, 32)
    assert ((img >= -1) & (img <= 1)).float().mean() > 0.85
    assert img.std() > 0.2 and img.std(dim=(2, 3)).min() > 0.1  # not flat


# ---------------------------------------------------------------- checkpoint loading


@pytest.fixture()
def g_fx():
    return fixture("g16_fused_label3")


@torch.no_grad()
def test_load_generator_layouts(tmp_path, g_fx):
    sd, z, label = g_fx["state_dict"], g_fx["inputs"]["z"], g_fx["inputs"]["label"]
    d_sd = fixture("d16_fused_label3_mbstd2")["state_dict"]
    layouts = {
        "top.pt": {"generator": sd, "discriminator": d_sd, "generator_smooth": sd},
        "runner.pt": {
            "models": {"generator": {f"module.{k}": v for k, v in sd.items()}, "discriminator": d_sd},
            "running_metadata": {"iter": 3},
        },
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
        G = load_generator(tmp_path / name, fused_scale=True)
        assert not G.training and G.label_embed_dim == 48
        assert max_diff(G(z, label)["image"], g_fx["outputs"]["image"]) < TOL
        D = load_discriminator(tmp_path / name, fused_scale=True, minibatch_std_group_size=2)
        dfx = fixture("d16_fused_label3_mbstd2")
        assert max_diff(D(dfx["inputs"]["image"], dfx["inputs"]["label"]), dfx["outputs"]["score"]) < TOL
    G = load_generator(tmp_path / "top.pt", key="generator_smooth", fused_scale=True)
    assert max_diff(G(z, label)["image"], g_fx["outputs"]["image"]) < TOL


def test_load_generator_errors_name_file_key_and_keys(tmp_path, g_fx):
    bad = dict(g_fx["state_dict"])
    del bad["synthesis.layer1.weight"]
    bad["synthesis.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save({"generator": bad}, path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    msg = str(err.value)
    assert str(path) in msg and "'generator'" in msg
    assert "missing keys (1): synthesis.layer1.weight" in msg
    assert "unexpected keys (1): synthesis.extra" in msg
    with pytest.raises(
        CheckpointError, match=r"no 'generator_smooth' entry and not a bare state_dict; available keys: \['generator'\]"
    ):
        load_generator(path, key="generator_smooth")
    grown = dict(g_fx["state_dict"], **{"synthesis.lod": torch.tensor(1.5)})
    torch.save({"generator": grown}, path)
    with pytest.raises(CheckpointError, match=r"synthesis.lod=1.5"):
        load_generator(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_generator(tmp_path / "missing.pt")
