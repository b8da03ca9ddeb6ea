"""Benchmark: one fine-tuning training step (v1, v2 or v3), ours vs the original's, same device, same run.

REFERENCE: the original Oh-LoRA code itself (`--ref-dir` = its `stylegan_and_segmentation` folder),
imported unchanged with the shims of tests/fixtures/finetune/make_fixtures.py (`.cuda()` is the
identity on a CPU run; summaries/PDF stubs): `run_stylegan_fine_tuning.create_restructured_stylegan`,
`freeze_*_layers`, `fine_tuning.train_step` with the original's training arguments (style mixing 0.9,
random noise, R1 gamma 10), G and D in train mode, batch 16. Its side work every 10th batch is timed
too, with its own functions: `save_real_fake_imgs` (32 PNGs) and `run_inference_test_during_finetuning`
(10 z x 7 labels = 70 JPEGs through its `synthesize`, batch 4), written to a temporary folder.
OURS: `ohlora_core.finetune.loop.GanTrainer.step` on the same restructured weights, same settings.

Outputs are asserted equal first: one step of each with style mixing and noise randomisation off and
the same z's (recorded from the original), losses within 1e-4 relative and the same G-update count.

`--version v2` / `v3`: the original's v2 / v3 step re-created with its own modules (imported with the
shims of make_v2_v3_fixtures.py): `StyleGANFineTuneV2` (G + property CNN, everything trains, AdamW
1e-5, MSE of the first 6 outputs) at batch 16 / `StyleGANFineTuneV3` (encoder + G + both CNNs,
`freeze_stylegan_finetune_v3_layers`, the two-group AdamW, `vae_loss_function`) at batch 8, both in
train mode as the original; ours: `CnnLoopTask.train_on` / `CvaeTask.train_on`. Step 1 of each is fed
the same inputs (z, labels; v3: images and eps) and must give the same loss (1e-5 relative).

    python bench/finetune.py --ref-dir PATH [--version v1|v2|v3] [--device cuda] [--steps 5] [--batch N] [--narrow]

`--narrow` uses the fixtures' narrow generator (w 32, fmaps_max 32) so a CPU finishes in minutes;
without it the networks are the real 256x256 StyleGAN's (smoke weights). v2 / v3 always use the
narrow generator with the full-size CNNs and encoder (the fixtures' setup).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a cnn.py, which would shadow the original's `cnn` package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from ohlora_core.finetune.loop import GanTrainer  # noqa: E402
from ohlora_core.finetune.variants import V1  # noqa: E402
from ohlora_core.stylegan import StyleGANDiscriminator, StyleGANGenerator, smoke_discriminator, smoke_generator  # noqa: E402


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FIX = _module(ROOT / "tests" / "fixtures" / "finetune" / "make_fixtures.py", "finetune_make_fixtures")
W = FIX.W


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def start_weights(narrow: bool):
    if narrow:
        return W.pretrained_generator_state(1), W.pretrained_discriminator_state(2), W.G_CONFIG, W.D_CONFIG
    return smoke_generator(0).state_dict(), smoke_discriminator(0).state_dict(), {}, {}


def original_models(orig, g_sd, d_sd, narrow: bool, device: str):
    torch.manual_seed(0)
    with FIX.narrow_constructors(orig) if narrow else contextlib.nullcontext():
        G, D = orig.v1.create_restructured_stylegan(dict(g_sd), dict(d_sd))
    orig.v1.freeze_generator_layers(G)
    orig.v1.freeze_discriminator_layers(D)
    return G.to(device), D.to(device)


def ours_from(G_ref, D_ref, g_cfg, d_cfg, variant, device: str) -> GanTrainer:
    G = StyleGANGenerator(256, **{k: v for k, v in g_cfg.items() if k != "resolution"}, label_size=7, label_embed_dim=16)
    D = StyleGANDiscriminator(256, **{k: v for k, v in d_cfg.items() if k != "resolution"}, label_size=7,
                              label_mode="concat", minibatch_std_group_size=16)
    G.load_state_dict(G_ref.state_dict())
    D.load_state_dict(D_ref.state_dict())
    return GanTrainer(G, D, variant, device)


def time_calls(fn, n: int, device: str) -> list[float]:
    out = []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-dir", type=Path, required=True)
    ap.add_argument("--version", default="v1", choices=("v1", "v2", "v3"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=None, help="default: the original's (v1 16, v2 16, v3 8)")
    ap.add_argument("--narrow", action="store_true")
    args = ap.parse_args()
    if args.version != "v1":
        return bench_v2_v3(args)
    device, batch = args.device, args.batch or 16
    _stub_bs4()
    orig = FIX.import_original(args.ref_dir.resolve())
    # the fixtures stub the original's image-saving module; the side work timed here needs the real one
    sys.modules.pop("stylegan_modified.stylegan_generator_inference")
    orig.ft.modified_inf = importlib.import_module("stylegan_modified.stylegan_generator_inference")

    g_sd, d_sd, g_cfg, d_cfg = start_weights(args.narrow)
    reals = W.real_batch(101, batch).to(device)
    labels = W.label_batch(201, batch, 7).to(device)
    cuda_ctx = FIX.cpu_cuda if device == "cpu" else contextlib.nullcontext

    # 1) outputs equal: mixing and noise randomisation off, the original's z's fed to ours
    exact = V1.with_overrides(style_mixing_prob=0.0, randomize_noise=False, batch_size=batch)
    with cuda_ctx():
        G_ref, D_ref = original_models(orig, g_sd, d_sd, args.narrow, device)
        ours = ours_from(G_ref, D_ref, g_cfg, d_cfg, exact, device)
        rec, (d_loss, g_loss, g_count, *_) = FIX.train_step(orig, G_ref, D_ref, reals.clone(), labels.clone())
    z = iter(rec.z)
    mine = ours.step(reals, labels, lambda: next(z).to(device))
    assert mine.g_train_count == g_count, (mine.g_train_count, g_count)
    assert abs(mine.d_loss - d_loss) <= 1e-4 * abs(d_loss) and abs(mine.g_loss - g_loss) <= 1e-4 * abs(g_loss), \
        (mine.d_loss, d_loss, mine.g_loss, g_loss)
    print(f"step 1 equal: d_loss {d_loss:.6f} vs {mine.d_loss:.6f}, g_loss {g_loss:.6f} vs {mine.g_loss:.6f}, "
          f"G updates {g_count}")

    # 2) time: the original's own settings (mixing 0.9, random noise) on both sides
    orig_args = dict(w_moving_decay=0.995, style_mixing_prob=0.9, trunc_psi=1.0, trunc_layers=0, randomize_noise=True)
    with cuda_ctx():
        G_ref, D_ref = original_models(orig, g_sd, d_sd, args.narrow, device)
        ours = ours_from(G_ref, D_ref, g_cfg, d_cfg, V1.with_overrides(batch_size=batch), device)
        data = {"image": reals.clone(), "label": labels.clone()}
        ref_step = lambda: orig.ft.train_step(G_ref, None, D_ref, data, orig_args, {}, 10.0, 0.0, 100, False)  # noqa: E731
        gen = torch.Generator().manual_seed(0)
        our_step = lambda: ours.step(reals, labels, lambda: torch.randn(batch, 512, generator=gen).to(device), gen)  # noqa: E731
        ref_step(), our_step()  # warm-up
        t_ref = statistics.median(time_calls(ref_step, args.steps, device))
        t_ours = statistics.median(time_calls(our_step, args.steps, device))
        with tempfile.TemporaryDirectory() as tmp:
            orig.ft.PROJECT_DIR_PATH = tmp  # the side work writes under <project>/stylegan_and_segmentation/...
            (Path(tmp) / "stylegan_and_segmentation" / "stylegan_modified").mkdir(parents=True)
            fakes = G_ref(torch.randn(batch, 512).to(device), labels, **orig_args)["image"]
            side = time_calls(lambda: (orig.ft.save_real_fake_imgs(reals, fakes),
                                       orig.ft.run_inference_test_during_finetuning(G_ref, 0, 0)), 1, device)[0]

    n_batches = -(-4703 // batch)  # one epoch of the original's 4,703 filtered images
    ref_epoch = n_batches * t_ref + (n_batches // 10 + 10) * side  # + every 10th batch, and batches 0..9 of epoch 0
    ours_epoch = n_batches * t_ours
    dev = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"v1 fine-tuning step on {dev}, batch {batch}, {'narrow' if args.narrow else 'full-size'} networks")
    print(f"{'flow':<34}{'s/step':>10}")
    print(f"{'ours (GanTrainer.step)':<34}{t_ours:>10.3f}")
    print(f"{'original train_step':<34}{t_ref:>10.3f}")
    print(f"step ratio (original / ours): {t_ref / t_ours:.2f}x")
    print(f"original side work every 10th batch (32 PNGs + 70-image test): {side:.2f} s")
    print(f"epoch of 4,703 images ({n_batches} steps): ours {ours_epoch / 60:.1f} min, original {ref_epoch / 60:.1f} "
          f"min with its side work -> {ref_epoch / ours_epoch:.2f}x")


def bench_v2_v3(args) -> None:
    """The original's v2 / v3 step (its modules) vs ours, same inputs, same device."""
    from ohlora_core.cnn.models import GenderCNN, PropertyScoreCNN
    from ohlora_core.finetune.cnn_loop import CnnLoopTask
    from ohlora_core.finetune.cvae import CVAEEncoder, CvaeTask
    from ohlora_core.finetune.restructure import conditional_generator
    from ohlora_core.finetune.variants import V2, V3

    fix = _module(ROOT / "tests" / "fixtures" / "finetune" / "make_v2_v3_fixtures.py", "finetune_make_v2_v3")
    orig = fix.import_original(args.ref_dir)
    device, v = args.device, args.version
    batch = args.batch or (16 if v == "v2" else 8)
    v1_state = W.conditional_generator_state(21)
    cnn_states = {"p": W.cnn_state(PropertyScoreCNN, 22), "g": W.cnn_state(GenderCNN, 23)}
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(batch, 7, generator=gen).to(device)
    if v == "v2":
        model = orig.v2gm.StyleGANFineTuneV2()
        model.stylegan_generator.load_state_dict(v1_state)
        model.property_score_cnn.load_state_dict(cnn_states["p"])
        model = model.to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        z = torch.randn(batch, 512, generator=gen).to(device)

        def ref_step():
            opt.zero_grad()
            out = model(z=z, property_label=y).to(torch.float32)
            loss = torch.nn.MSELoss()(out[:, :6], y[:, :6])
            loss.backward()
            opt.step()
            return float(loss.detach())

        cnn = PropertyScoreCNN()
        cnn.load_state_dict(cnn_states["p"])
        ours = CnnLoopTask(conditional_generator(v1_state, V2.with_overrides(keep_v1_dense0=True), 0), cnn,
                           V2.with_overrides(batch_size=batch, keep_v1_dense0=True), device, seed=0)
        our_step = lambda: float(ours.train_on(z, y)[0])  # noqa: E731
        model.property_score_cnn.eval(), ours.cnn.eval()  # dropout off for the equality check
        assert abs(ref_step() - our_step()) <= 1e-5 * abs(our_step() or 1)
        model.property_score_cnn.train(), ours.cnn.train()
    else:
        x = W.real_batch(7, batch).to(device)
        eps = torch.randn(batch, 512, generator=gen).to(device)
        model = orig.v3gm.StyleGANFineTuneV3()
        state = {k: val for k, val in v1_state.items() if k not in ("mapping.label_weight", "mapping.dense0.weight")}
        model.stylegan_generator.load_state_dict(state, strict=False)
        model.CVAE_encoder.load_state_dict(W.encoder_state(24))
        model.property_score_cnn.load_state_dict(cnn_states["p"])
        model.gender_cnn.load_state_dict(cnn_states["g"])
        orig.v3gm.freeze_stylegan_finetune_v3_layers(model)
        model = model.to(device).train()
        opt = torch.optim.AdamW([{"params": model.stylegan_generator.parameters()},
                                 {"params": model.CVAE_encoder.parameters(), "lr": 1e-5}], lr=1e-4)
        torch_randn_like = torch.randn_like

        def ref_step():
            torch.randn_like = lambda t, *a, **k: eps.clone()  # the original's reparameterisation draw
            try:
                mu, logvar, ps, gs = model(x=x, property_label=y)
                opt.zero_grad()
                loss, _ = orig.v3gm.vae_loss_function(ps, gs, y, mu, logvar)
                loss.backward()
                opt.step()
            finally:
                torch.randn_like = torch_randn_like
            return float(loss.detach())

        G = conditional_generator(v1_state, V3, 0)
        G.load_state_dict(model.stylegan_generator.state_dict())
        encoder = CVAEEncoder()
        encoder.load_state_dict(model.CVAE_encoder.state_dict())
        cnns = []
        for cls, key in ((PropertyScoreCNN, "p"), (GenderCNN, "g")):
            cnns.append(cls())
            cnns[-1].load_state_dict(cnn_states[key])
        dummy = torch.zeros(1, 3, 256, 256, dtype=torch.uint8)
        ours = CvaeTask(G, encoder, *cnns, dummy, np.zeros((1, 7), np.float32), V3, device, seed=0)
        our_step = lambda: float(ours.train_on(x, y, eps)[0].total)  # noqa: E731
        for m in (model.property_score_cnn, model.gender_cnn, ours.property_cnn, ours.gender_cnn):
            m.eval()  # dropout off for the equality check
        a, b = ref_step(), our_step()
        assert abs(a - b) <= 1e-5 * abs(a), (a, b)
        for m in (model.property_score_cnn, model.gender_cnn, ours.property_cnn, ours.gender_cnn):
            m.train()
    t_ref = statistics.median(time_calls(ref_step, args.steps, device))
    t_ours = statistics.median(time_calls(our_step, args.steps, device))
    dev = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{v} fine-tuning step on {dev}, batch {batch}, narrow generator, full-size CNNs"
          + (" and encoder" if v == "v3" else "") + "; step 1 losses equal")
    print(f"ours {t_ours:.3f} s/step, original {t_ref:.3f} s/step, ratio {t_ref / t_ours:.2f}x")


def _stub_bs4() -> None:
    """The original's visualizer imports bs4 (unused by the functions timed here)."""
    if "bs4" not in sys.modules:
        mod = types.ModuleType("bs4")
        mod.BeautifulSoup = None
        sys.modules["bs4"] = mod


if __name__ == "__main__":
    main()
