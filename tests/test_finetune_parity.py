"""Fine-tuning v1 / v4 against the ORIGINAL code's own train steps (tests/fixtures/finetune, made by
make_fixtures.py from the original's create_restructured_stylegan, freeze_*_layers and train_step).

Same inputs (weights.py), same new-layer values, the original's recorded z's; style mixing and noise
randomisation off (the original's settings otherwise). Tolerances (README there): losses 1e-5
relative (a correct replay matches to ~5e-7); the G-update count and the name lists exactly;
parameters: Adam's steps on weights stored as randn / lr_mul (|p| up to ~400) round to fractions of
lr, so every element within 3 lr and >= 99.5 % within 1 lr (measured: float64 vs float32 max 1.47 lr);
images within 1e-4 x max|image|, D scores within 1e-4.
"""

import sys
from pathlib import Path

import pytest
import torch

from ohlora_core.finetune.gan import GanTrainer
from ohlora_core.finetune.restructure import conditional_discriminator, conditional_generator
from ohlora_core.finetune.variants import V1, V4

FIX = Path(__file__).parent / "fixtures" / "finetune"
sys.path.insert(0, str(FIX))
import weights  # noqa: E402
from conftest import load_finetune_fixture  # noqa: E402

LR = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def _start(fixture, g_sd, d_sd, variant):
    """Our restructured G/D from the fixture's inputs, with the original's new-layer values."""
    G = conditional_generator(g_sd, variant, seed=0)
    D = conditional_discriminator(d_sd, variant, seed=0)
    with torch.no_grad():
        for model, key in ((G, "G"), (D, "D")):
            params = dict(model.named_parameters())
            for name, value in fixture["new_layers"][key].items():
                params[name].copy_(value)
    return G, D


def _final_state(G, D, fixture):
    """The original's models after its last step, as bare state_dicts (what it saves)."""
    g, d = dict(G.state_dict()), dict(D.state_dict())
    last = fixture["steps"][-1]
    g.update(last["params_after"]["G"])
    d.update(last["params_after"]["D"])
    g["truncation.w_avg"] = last["w_avg_after"]
    return g, d


def _close_params(ours: dict, theirs: dict, where: str) -> None:
    for name, ref in theirs.items():
        diff = (ours[name].detach() - ref).abs()
        assert diff.max() <= 3 * LR, (where, name, float(diff.max()) / LR)
        assert (diff <= LR).float().mean() >= 0.995, (where, name)


def _replay(fixture, G, D, variant):
    trainer = GanTrainer(G, D, variant)
    assert {"G": trainer.g_trainable, "D": trainer.d_trainable} == fixture["trainable"]
    assert {"G": trainer.g_frozen, "D": trainer.d_frozen} == fixture["frozen"]
    frozen_before = {n: p.detach().clone() for n, p in G.named_parameters() if n in trainer.g_frozen}
    for k, step in enumerate(fixture["steps"]):
        where = f"{fixture['version']} step {k}"
        z = iter([step["z_d"], *step["z_g"]])
        reals = weights.real_batch(step["reals_seed"], fixture["batch"])
        result = trainer.step(reals, step["labels"], lambda: next(z))
        assert result.g_train_count == step["g_train_count"], where
        assert result.d_loss == pytest.approx(step["d_loss"], rel=1e-5), where
        assert result.d_adversarial == pytest.approx(step["d_adv"], rel=1e-5), where
        assert result.r1 == pytest.approx(step["r1"], rel=1e-4), where
        assert result.g_losses == pytest.approx(step["g_losses"], rel=1e-5), where
        assert result.real_scores_mean == pytest.approx(step["real_scores_mean"], abs=1e-5), where
        assert result.fake_scores_mean == pytest.approx(step["fake_scores_mean"], abs=1e-5), where
        assert result.real_fake_auroc == pytest.approx(step["auroc"], abs=1e-9), where
        _close_params(dict(G.named_parameters()), step["params_after"]["G"], where)
        _close_params(dict(D.named_parameters()), step["params_after"]["D"], where)
        torch.testing.assert_close(G.truncation.w_avg, step["w_avg_after"], rtol=0, atol=1e-5)
    for name, before in frozen_before.items():
        assert torch.equal(dict(G.named_parameters())[name], before), name
    return trainer


def _check_eval(fixture, G, D):
    """The original's fine-tuned weights in our classes: images and D scores (eval, batch N)."""
    ev = fixture["eval"]
    G.eval(), D.eval()
    with torch.no_grad():
        image = G(ev["z"], ev["labels"], trunc_psi=1.0, trunc_layers=0, randomize_noise=False)["image"]
        scale = float(image.abs().max())
        torch.testing.assert_close(image[:, :, ::8, ::8], ev["image_strided"], rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(image.double().sum(dim=(2, 3)), ev["image_sum"], rtol=1e-5, atol=1e-3 * scale)
        torch.testing.assert_close(D(image, ev["labels"]).flatten(), ev["d_fake"], rtol=0, atol=1e-4)
        reals = weights.real_batch(ev["reals_seed"], fixture["batch"])
        torch.testing.assert_close(D(reals, ev["labels"]).flatten(), ev["d_real"], rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def v1():
    fixture = load_finetune_fixture("v1_step.pt")
    s = fixture["seeds"]
    G, D = _start(
        fixture,
        weights.far_generator_state(s["generator"]),
        weights.pretrained_discriminator_state(s["discriminator"]),
        V1,
    )
    return fixture, G, D


def test_v1_train_steps_match_the_original(v1):
    fixture, G, D = v1
    assert fixture["batch"] == V1.batch_size == 16 and fixture["r1_gamma"] == V1.r1_gamma
    exact = V1.with_overrides(style_mixing_prob=0.0, randomize_noise=False)
    _replay(fixture, G, D, exact)
    assert [s["g_train_count"] for s in fixture["steps"]] == [2, 4]  # the repeat rule fired, and hit its cap


def test_v1_fine_tuned_weights_give_the_originals_images_and_scores(v1):
    fixture, G, D = v1
    g, d = _final_state(G, D, fixture)
    G.load_state_dict(g)
    D.load_state_dict(d)
    _check_eval(fixture, G, D)


def test_v4_restructures_v1_and_steps_like_the_original(v1):
    v1_fixture, G1, D1 = v1
    fixture = load_finetune_fixture("v4_step.pt")
    g1, d1 = _final_state(G1, D1, v1_fixture)  # the bare state_dicts the original saved after v1
    G, D = _start(fixture, g1, d1, V4)
    assert G.mapping.label_weight.shape == (3, 16) and D.layer14.weight.shape == (1, 35)
    exact = V4.with_overrides(style_mixing_prob=0.0, randomize_noise=False)
    assert fixture["batch"] == V4.batch_size == 8
    _replay(fixture, G, D, exact)
    g, d = _final_state(G, D, fixture)
    G.load_state_dict(g)
    D.load_state_dict(d)
    _check_eval(fixture, G, D)
