"""The GAN fine-tuning core on small deterministic networks: restructuring, freezing, the train step's
G-repeat rule, the matching-aware option, original-layout checkpoints, snapshot/resume, and the one
entry point `finetune.train` (inputs, files, result, resume) with the loop's seeding."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ohlora_core.artifacts import StyleganFinetuneV1, StyleganFinetuneV4
from ohlora_core.finetune import TrainInputs, train
from ohlora_core.finetune.cnn_loop import CnnLoopTask
from ohlora_core.finetune.cvae import CvaeTask
from ohlora_core.finetune.gan import LOG_COLUMNS, GanTask, GanTrainer
from ohlora_core.finetune.loop import run_task
from ohlora_core.finetune.restructure import conditional_discriminator, conditional_generator
from ohlora_core.finetune.training import task_class
from ohlora_core.finetune.variants import V1, V2, V3, V4
from ohlora_core.io import CheckpointError
from ohlora_core.stylegan import load_discriminator, load_generator

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "finetune"))
import weights  # noqa: E402  (the fixtures' deterministic small networks)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def pretrained():
    return weights.pretrained_generator_state(1), weights.pretrained_discriminator_state(2)


@pytest.fixture(scope="module")
def tiny():
    """32x32 networks (fast steps): D's last conv / dense / head are layer6..8 at this size."""
    from ohlora_core.stylegan import StyleGANDiscriminator, StyleGANGenerator

    gen = torch.Generator().manual_seed(9)
    G = StyleGANGenerator(32, w_space_dim=16, mapping_fmaps=16, fmaps_base=128, fmaps_max=16, init_generator=gen)
    D = StyleGANDiscriminator(32, fmaps_base=128, fmaps_max=16, init_generator=gen)
    return G.state_dict(), D.state_dict()


TINY_V1 = V1.with_overrides(
    d_trainable=("layer6", "layer7", "layer8"), drop_discriminator_keys=("layer8.weight", "layer8.bias")
)


def _pair(pretrained, variant=V1, seed=0):
    g, d = pretrained
    return conditional_generator(g, variant, seed), conditional_discriminator(d, variant, seed)


def _batch(n, labels=7, size=256):
    images = ((weights.real_batch(3, n) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    if size != 256:
        images = torch.nn.functional.interpolate(images.float(), size=size, mode="area").round().to(torch.uint8)
    return images, weights.label_batch(4, n, labels).numpy()


def test_restructuring_keeps_pretrained_weights_and_seeds_the_new_layers(pretrained):
    g_sd, d_sd = pretrained
    G, D = _pair(pretrained)
    assert G.mapping.label_weight.shape == (7, 16) and G.mapping.dense0.weight.shape == (32, 528)
    assert D.layer14.weight.shape == (1, 32 + 7) and torch.equal(D.layer14.bias, torch.zeros(1))
    assert D.minibatch_std_group_size == 16 and D.label_mode == "concat"
    new = {"mapping.label_weight", "mapping.dense0.weight"}
    for k, v in G.state_dict().items():
        if k not in new:
            assert torch.equal(v, g_sd[k]), k  # incl. mapping.dense0.bias, kept as the original did
    for k, v in D.state_dict().items():
        if not k.startswith("layer14"):
            assert torch.equal(v, d_sd[k]), k
    # fresh layers drawn the original's way (randn; dense0 scaled by 1 / lr_mul), from the seed
    assert abs(G.mapping.dense0.weight.std().item() - 100) < 5 and abs(G.mapping.label_weight.std().item() - 1) < 0.3
    again, other = _pair(pretrained)[0], _pair(pretrained, seed=1)[0]
    assert torch.equal(again.mapping.label_weight, G.mapping.label_weight)
    assert not torch.equal(other.mapping.label_weight, G.mapping.label_weight)


def test_v4_restructures_a_v1_checkpoint_dropping_the_label_layers(pretrained):
    G1, D1 = _pair(pretrained)
    G4 = conditional_generator(G1.state_dict(), V4, 0)
    D4 = conditional_discriminator(D1.state_dict(), V4, 0)
    assert G4.mapping.label_weight.shape == (3, 16) and G4.mapping.dense0.weight.shape == (32, 528)
    assert D4.layer14.weight.shape == (1, 35)
    assert torch.equal(G4.mapping.dense1.weight, G1.mapping.dense1.weight)
    assert not torch.equal(G4.mapping.dense0.weight, G1.mapping.dense0.weight)  # re-initialised, as the original
    broken = {k: v for k, v in G1.state_dict().items() if k != "mapping.dense3.weight"}
    with pytest.raises(CheckpointError, match=r"v1-ish cannot be restructured .* missing \['mapping.dense3.weight'\]"):
        conditional_generator(broken, V4, 0, source="v1-ish")


def test_trainable_groups_are_the_originals(pretrained):
    trainer = GanTrainer(*_pair(pretrained), V1)
    assert trainer.g_trainable == ["mapping.label_weight"] + [
        f"mapping.dense{i}.{p}" for i in range(8) for p in ("weight", "bias")
    ]
    assert len(trainer.g_frozen) == 84
    assert trainer.d_trainable == [f"layer{i}.{p}" for i in (12, 13, 14) for p in ("weight", "bias")]
    assert len(trainer.d_frozen) == 38
    with pytest.raises(ValueError, match=r"has no parameter group\(s\) \['layer99'\]"):
        GanTrainer(*_pair(pretrained), V1.with_overrides(d_trainable=("layer99",)))


def test_a_step_changes_only_trainable_parameters(tiny):
    trainer = GanTrainer(*_pair(tiny, TINY_V1), TINY_V1)
    before_g = {k: v.clone() for k, v in trainer.G.named_parameters()}
    before_d = {k: v.clone() for k, v in trainer.D.named_parameters()}
    images, labels = _batch(4, size=32)
    gen = torch.Generator().manual_seed(0)
    trainer.step(
        (images.float() / 127.5 - 1), torch.from_numpy(labels), lambda: torch.randn(4, 512, generator=gen), gen
    )
    for name, p in trainer.G.named_parameters():
        assert torch.equal(p, before_g[name]) == (name in trainer.g_frozen), name
    for name, p in trainer.D.named_parameters():
        assert torch.equal(p, before_d[name]) == (name in trainer.d_frozen), name


@pytest.mark.parametrize(
    "g_values, d_loss, expected",
    [
        ([5.0, 5.0, 5.0, 5.0, 5.0], 1.0, 4),  # never below 2 x d_loss: stops at the cap
        ([5.0, 1.875, 5.0], 1.0, 2),  # 1.875 < 2.0: stops after the step that reached it
        ([0.5], 1.0, 1),  # the usual case: one G step
        ([2.0, 1.99], 1.0, 2),  # "while g_loss >= 2 x d_loss": 2.0 repeats
    ],
)
def test_g_steps_repeat_while_g_loss_is_at_least_twice_d_loss(tiny, monkeypatch, g_values, d_loss, expected):
    trainer = GanTrainer(*_pair(tiny, TINY_V1), TINY_V1)
    values = iter(g_values)
    calls = []

    def fake_d(reals, labels, z, generator=None):
        from ohlora_core.finetune.loss import DPhase

        w = trainer._d[0]  # a trainable D parameter, so backward has a graph
        loss = (w * 0).sum() + d_loss
        zero = torch.zeros(())
        return DPhase(loss, zero, zero, zero, torch.ones(2, 1), -torch.ones(2, 1))

    def fake_g(labels, z, generator=None):
        calls.append(1)
        return (trainer._g[0] * 0).sum() + next(values)

    monkeypatch.setattr(trainer.loss, "discriminator_phase", fake_d)
    monkeypatch.setattr(trainer.loss, "generator_phase", fake_g)
    result = trainer.step(torch.zeros(2, 3, 32, 32), torch.zeros(2, 7), lambda: torch.zeros(2, 512))
    assert result.g_train_count == len(calls) == expected
    assert result.g_losses == pytest.approx(g_values[:expected], rel=1e-6)  # float32 losses
    assert result.g_loss == pytest.approx(g_values[expected - 1], rel=1e-6) and result.real_fake_auroc == 1.0


def test_the_matching_aware_term_is_the_only_change_to_d_loss(tiny):
    images, labels = _batch(4, size=32)
    reals, y = images.float() / 127.5 - 1, torch.from_numpy(labels)
    z = torch.randn(4, 512, generator=torch.Generator().manual_seed(5))
    out = {}
    for aware in (False, True):
        variant = TINY_V1.with_overrides(matching_aware=aware, style_mixing_prob=0.0, randomize_noise=False)
        trainer = GanTrainer(*_pair(tiny, variant), variant)
        out[aware] = trainer.loss.discriminator_phase(reals, y, z, torch.Generator().manual_seed(7))
    plain, aware = out[False], out[True]
    assert float(plain.mismatch) == 0.0 and float(aware.mismatch) > 0
    assert torch.equal(plain.adversarial, aware.adversarial) and torch.equal(plain.r1, aware.r1)
    assert aware.loss.item() == pytest.approx(plain.loss.item() + aware.mismatch.item(), rel=1e-6)


def test_original_layout_checkpoints_load_as_they_are(pretrained, tmp_path):
    G, D = _pair(pretrained)
    torch.save(G.state_dict(), tmp_path / "stylegan_gen_fine_tuned_v1.pth")  # bare, as the original saved
    torch.save(D.state_dict(), tmp_path / "stylegan_dis_fine_tuned_v1.pth")
    G2 = load_generator(tmp_path / "stylegan_gen_fine_tuned_v1.pth")
    D2 = load_discriminator(tmp_path / "stylegan_dis_fine_tuned_v1.pth", minibatch_std_group_size=16)
    assert (G2.label_size, G2.label_embed_dim, D2.label_size, D2.label_mode) == (7, 16, 7, "concat")
    z, y = torch.randn(16, 512, generator=torch.Generator().manual_seed(0)), torch.randn(16, 7)
    with torch.no_grad():
        G.eval(), D.eval()
        image = G(z, y)["image"]
        assert torch.equal(G2(z, y)["image"], image)
        assert torch.equal(D2(image, y), D(image, y))
    G4 = conditional_generator(G.state_dict(), V4, 0)
    torch.save(G4.state_dict(), tmp_path / "stylegan_gen_fine_tuned_v4.pth")
    assert load_generator(tmp_path / "stylegan_gen_fine_tuned_v4.pth").label_size == 3
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: expected a dict checkpoint"):
        load_generator(tmp_path / "list.pth")


def _fit(tiny, tmp_path, fail_at=None):
    variant = TINY_V1.with_overrides(batch_size=2)
    trainer = GanTrainer(*_pair(tiny, variant), variant)
    task = GanTask(trainer, *_batch(4, size=32), seed=3)
    step = task.step

    def dying_step(batch, generator, epoch, idx):
        if (epoch, idx) == fail_at:
            raise KeyboardInterrupt("killed")  # the process dies mid-epoch, after a snapshot
        return step(batch, generator, epoch, idx)

    task.step = dying_step
    return trainer, run_task(task, epochs=2, seed=3, snapshot=tmp_path / "snap.pt", snapshot_every=1)


def test_a_resumed_training_equals_an_uninterrupted_one(tiny, tmp_path):
    straight, full = _fit(tiny, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny, tmp_path / "b", fail_at=(1, 1))  # dies in epoch 1 after its first step
    resumed_trainer, resumed = _fit(tiny, tmp_path / "b")
    assert resumed.resumed_from == (1, 1) and full.resumed_from is None
    drop = lambda rows: [{k: v for k, v in r.items() if k != "step_seconds"} for r in rows]  # noqa: E731
    assert drop(resumed.log) == drop(full.log) and len(full.log) == 4
    for a, b in ((straight.G, resumed_trainer.G), (straight.D, resumed_trainer.D)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    assert np.isfinite([r["d_loss"] for r in full.log]).all()


def test_a_snapshot_this_code_cannot_resume_names_the_file(tiny, tmp_path):
    """A snapshot left by a crash under another version of the code: an error that says what to do,
    and the snapshot is kept (nothing is deleted before a person decides)."""
    (tmp_path / "b").mkdir()
    snapshot = tmp_path / "b" / "snap.pt"
    torch.save({"task": {"G": {}}, "epoch": 1, "step": 0, "log": []}, snapshot)
    with pytest.raises(CheckpointError, match=r"snap\.pt: not a v1 snapshot this code can resume.*Delete it"):
        _fit(tiny, tmp_path / "b")
    assert snapshot.is_file()


# ---------------------------------------------------------------- finetune.train (v1 / v4 on tiny networks)


def _train_v1(tiny, out, log=None, epochs=2):
    images, labels = _batch(4, size=32)
    inputs = TrainInputs(generator=tiny[0], discriminator=tiny[1], images=images, labels=labels)
    return train(
        TINY_V1.with_overrides(batch_size=2),
        inputs,
        StyleganFinetuneV1(out),
        epochs=epochs,
        seed=3,
        snapshot_every=1,
        samples_per_label=1,
        log=log,
    )


def test_train_v1_writes_the_originals_files_and_lists_every_output(tiny, tmp_path):
    result = _train_v1(tiny, tmp_path)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert (
        result.outputs
        == written
        == [
            "loss.png",
            "real_fake.png",
            "samples/epoch_0000.png",
            "samples/epoch_0001.png",
            "stylegan_dis_fine_tuned_v1.pth",
            "stylegan_gen_fine_tuned_v1.pth",
            "train_log.csv",
        ]
    )  # snapshot removed
    on_disk = pd.read_csv(tmp_path / "train_log.csv", index_col=0)
    pd.testing.assert_frame_equal(result.log, on_disk)  # the log as written
    assert list(on_disk.columns[: len(LOG_COLUMNS)]) == LOG_COLUMNS and len(on_disk) == 4
    assert (result.epochs_done, result.resumed_from, result.best, result.tests) == (2, None, None, None)
    assert result.summary["steps"] == 4 and result.summary["final_d_loss"] == on_disk["d_loss"].iloc[-1]
    assert 1 <= result.summary["mean_g_updates_per_step"] <= 4


def test_train_v1_is_the_same_bytes_whatever_the_global_rng(tiny, tmp_path):
    torch.manual_seed(1)
    _train_v1(tiny, tmp_path / "a", epochs=1)
    torch.manual_seed(2)
    _train_v1(tiny, tmp_path / "b", epochs=1)
    for name in ("stylegan_gen_fine_tuned_v1.pth", "stylegan_dis_fine_tuned_v1.pth", "samples/epoch_0000.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_resumed_train_lists_the_earlier_attempts_files_and_ends_alike(tiny, tmp_path):
    def dies_in_epoch_1(line: str) -> None:
        if "epoch 1 step 0" in line:  # after epoch 0's snapshot and samples
            raise KeyboardInterrupt("killed")

    straight = _train_v1(tiny, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train_v1(tiny, tmp_path / "b", log=dies_in_epoch_1)
    assert (tmp_path / "b" / "snapshot.pt").is_file()
    resumed = _train_v1(tiny, tmp_path / "b")
    assert resumed.resumed_from == (1, 0) and straight.resumed_from is None
    assert resumed.outputs == straight.outputs and "samples/epoch_0000.png" in resumed.outputs
    for name in ("stylegan_gen_fine_tuned_v1.pth", "stylegan_dis_fine_tuned_v1.pth"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    drop = ["step_seconds"]
    pd.testing.assert_frame_equal(resumed.log.drop(columns=drop), straight.log.drop(columns=drop))


def test_train_names_the_variant_and_the_input_it_lacks_before_writing(tiny, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"fine-tune v1 needs TrainInputs.images, TrainInputs.labels \(it trains "
        r"from generator, discriminator, images, labels\)",
    ):
        train(V1, TrainInputs(generator=tiny[0], discriminator=tiny[1]), StyleganFinetuneV1(tmp_path), epochs=1, seed=0)
    with pytest.raises(ValueError, match=r"fine-tune v2 does not use TrainInputs.discriminator"):
        train(
            V2,
            TrainInputs(generator=tiny[0], discriminator=tiny[1], property_cnn={}),
            StyleganFinetuneV1(tmp_path),
            epochs=1,
            seed=0,
        )
    images, labels = _batch(2, size=32)
    with pytest.raises(ValueError, match=r"v1 writes stylegan_finetune_v1, got files of stylegan_finetune_v4"):
        train(
            V1,
            TrainInputs(generator=tiny[0], discriminator=tiny[1], images=images, labels=labels),
            StyleganFinetuneV4(tmp_path),
            epochs=1,
            seed=0,
        )
    assert list(tmp_path.iterdir()) == []


def test_each_variant_names_its_task_class():
    assert [task_class(v) for v in (V1, V2, V3, V4)] == [GanTask, CnnLoopTask, CvaeTask, GanTask]
    assert [v.inputs for v in (V2, V3)] == [
        ("generator", "property_cnn"),
        ("generator", "property_cnn", "gender_cnn", "images", "labels"),
    ]


class _DropoutTask:
    """A task whose steps draw from torch's global RNG (dropout), as v2 / v3 do through the CNNs."""

    name, device = "toy", torch.device("cpu")

    def batches(self, epoch):
        return [0, 1]

    def step(self, batch, generator, epoch, idx):
        return {"kept": int(torch.nn.functional.dropout(torch.ones(64), 0.5).count_nonzero())}

    def end_epoch(self, epoch, rows):
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_run_task_seeds_the_global_rng_by_position_and_leaves_the_callers_alone():
    """Before, dropout masks came from whatever state the process's global RNG was in: two v2 / v3 runs
    with one seed wrote different bytes."""
    runs = []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        runs.append([r["kept"] for r in run_task(_DropoutTask(), epochs=2, seed=5).log])
        after = torch.rand(3)
        torch.manual_seed(caller_seed)
        assert torch.equal(after, torch.rand(3))  # the caller's RNG did not move
    assert runs[0] == runs[1] and len(set(runs[0])) > 1  # same per position, different between steps
    assert [r["kept"] for r in run_task(_DropoutTask(), epochs=2, seed=6).log] != runs[0]
