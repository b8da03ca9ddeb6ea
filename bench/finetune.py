"""Benchmark: one fine-tuning training step (v1, v2 or v3), ours vs the original's, interleaved on one device.

REFERENCE: the original Oh-LoRA code itself (`--ref-dir` = its `stylegan_and_segmentation` folder,
WannaBeSuperteur/AI_Projects commit 2cb8d2f6, folder 2025_04_08_OhLoRA), imported unchanged with the
shims of tests/fixtures/finetune/make_fixtures.py (`.cuda()` is the identity on a CPU run; summaries/PDF
stubs): `run_stylegan_fine_tuning.create_restructured_stylegan`, `freeze_*_layers`,
`fine_tuning.train_step` with the original's training arguments (style mixing 0.9, random noise, R1
gamma 10), G and D in train mode, batch 16. OURS: `ohlora_core.finetune.gan.GanTrainer.step` on the
same restructured weights, same settings.

1. Outputs equal first: one step of each with style mixing and noise randomisation off and the same
   z's (recorded from the original): losses within 1e-4 relative and the same G-update count.
2. Timing, interleaved (ours, original, ours, original, ...; `--pairs` pairs after a warm-up pair):
   before each step both sides seed torch and numpy alike, and ours draws from the global RNGs as
   the original does (z, style mixing, noise), so a pair's two steps see the same random draws and
   do the same work. The number of G updates (1..4 by the "again while g_loss >= 2 d_loss" rule) of
   every timed step is printed for both sides and asserted equal; the median, min and max per side
   and the ratio per pair are reported.
3. Side work, timed once each and counted in the epoch projection: the original's every 10th batch
   (`save_real_fake_imgs`, 32 PNGs, and `run_inference_test_during_finetuning`, 70 JPEGs) and its
   G/D save per epoch; ours: the snapshot (every 100 steps and after each epoch) and the epoch's
   sample grid (7 label rows x 10 z's), as `finetune.train` writes them in full mode.

`--version v2` / `v3`: the original's v2 / v3 step re-created with its own modules (imported with the
shims of make_v2_v3_fixtures.py): `StyleGANFineTuneV2` (G + property CNN, everything trains, AdamW
1e-5, MSE of the first 6 outputs) at batch 16 / `StyleGANFineTuneV3` (encoder + G + both CNNs,
`freeze_stylegan_finetune_v3_layers`, the two-group AdamW, `vae_loss_function`) at batch 8, both in
train mode as the original; ours: `CnnLoopTask.train_on` / `CvaeTask.train_on`. Step 1 of each is fed
the same inputs (z, labels; v3: images and eps) with dropout off and must give the same loss (1e-5
relative); the timed steps (dropout on) are interleaved the same way.

    python bench/finetune.py --ref-dir PATH [--version v1|v2|v3] [--device cuda] [--pairs 5] [--batch N] [--narrow]

`--narrow` uses the fixtures' narrow generator (w 32, fmaps_max 32) so a CPU finishes in minutes;
without it the networks are the real 256x256 StyleGAN's (smoke weights). v2 / v3 always use the
narrow generator with the full-size CNNs and encoder (the fixtures' setup).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import math
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "finetune"
# bench/ holds a cnn.py, which would shadow the original's `cnn` package; the fixture generators import
# their sibling modules (weights, original_stubs) plainly, so their folder goes on the path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT), str(FIXTURES)]

from bench.interleave import Paired, interleave  # noqa: E402
from ohlora_core.finetune.gan import GanTrainer  # noqa: E402
from ohlora_core.finetune.samples import SampleGrid  # noqa: E402
from ohlora_core.finetune.variants import V1  # noqa: E402
from ohlora_core.io import atomic_torch_save  # noqa: E402
from ohlora_core.stylegan import StyleGANDiscriminator, StyleGANGenerator, smoke_discriminator, smoke_generator  # noqa: E402

IMAGES = 4703  # the original's filtered images: one epoch
SNAPSHOT_EVERY = 100  # finetune.train's default
SAMPLES_PER_LABEL = 10  # the full-mode sample grid


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def seed_all(seed: int) -> None:
    """The original draws from torch's and numpy's global RNGs; both sides of a pair start from the same state."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- v1


def start_weights(fix, narrow: bool):
    if narrow:
        W = fix.W
        return W.pretrained_generator_state(1), W.pretrained_discriminator_state(2), W.G_CONFIG, W.D_CONFIG
    return smoke_generator(0).state_dict(), smoke_discriminator(0).state_dict(), {}, {}


def original_models(fix, orig, g_sd, d_sd, narrow: bool, device: str):
    torch.manual_seed(0)
    with fix.narrow_constructors(orig) if narrow else contextlib.nullcontext():
        G, D = orig.v1.create_restructured_stylegan(dict(g_sd), dict(d_sd))
    orig.v1.freeze_generator_layers(G)
    orig.v1.freeze_discriminator_layers(D)
    return G.to(device), D.to(device)


def ours_from(G_ref, D_ref, g_cfg, d_cfg, variant, device: str) -> GanTrainer:
    G = StyleGANGenerator(
        256, **{k: v for k, v in g_cfg.items() if k != "resolution"}, label_size=7, label_embed_dim=16
    )
    D = StyleGANDiscriminator(
        256,
        **{k: v for k, v in d_cfg.items() if k != "resolution"},
        label_size=7,
        label_mode="concat",
        minibatch_std_group_size=16,
    )
    G.load_state_dict(G_ref.state_dict())
    D.load_state_dict(D_ref.state_dict())
    return GanTrainer(G, D, variant, device)


def check_equal(fix, orig, models, configs, reals, labels, batch: int, device: str) -> None:
    """One step each with mixing and noise randomisation off, the original's z's fed to ours."""
    exact = V1.with_overrides(style_mixing_prob=0.0, randomize_noise=False, batch_size=batch)
    G_ref, D_ref = models()
    ours = ours_from(G_ref, D_ref, *configs, exact, device)
    rec, (d_loss, g_loss, g_count, *_) = fix.train_step(orig, G_ref, D_ref, reals.clone(), labels.clone())
    z = iter(rec.z)
    mine = ours.step(reals, labels, lambda: next(z).to(device))
    assert mine.g_train_count == g_count, (mine.g_train_count, g_count)
    assert abs(mine.d_loss - d_loss) <= 1e-4 * abs(d_loss) and abs(mine.g_loss - g_loss) <= 1e-4 * abs(g_loss), (
        mine.d_loss,
        d_loss,
        mine.g_loss,
        g_loss,
    )
    print(
        f"step 1 equal: d_loss {d_loss:.6f} vs {mine.d_loss:.6f}, g_loss {g_loss:.6f} vs {mine.g_loss:.6f}, "
        f"G updates {g_count}"
    )


def timed_pairs(orig, G_ref, D_ref, ours: GanTrainer, reals, labels, pairs: int, device: str):
    """Interleaved steps with the original's settings; returns the timings and each side's G-update counts."""
    counts = {"ours": [], "original": []}
    seeds = {"ours": iter(range(10_000)), "original": iter(range(10_000))}  # pair i: seed i on both sides
    orig_args = dict(w_moving_decay=0.995, style_mixing_prob=0.9, trunc_psi=1.0, trunc_layers=0, randomize_noise=True)
    data = {"image": reals.clone(), "label": labels.clone()}

    def ref_step():
        seed_all(next(seeds["original"]))
        counts["original"].append(orig.ft.train_step(G_ref, None, D_ref, data, orig_args, {}, 10.0, 0.0, 100, False)[2])

    def our_step():
        seed_all(next(seeds["ours"]))
        counts["ours"].append(ours.step(reals, labels, lambda: torch.randn(len(reals), 512).to(device)).g_train_count)

    paired = interleave(
        our_step,
        ref_step,
        pairs,
        a_name="ours (GanTrainer.step)",
        b_name="original train_step",
        sync=lambda: sync(device),
    )
    timed = {k: v[1:] for k, v in counts.items()}  # the warm-up pair is not timed
    return paired, timed


def check_same_work(counts: dict[str, list[int]]) -> None:
    print(f"G updates per timed step: ours {counts['ours']}, original {counts['original']}")
    for side, values in counts.items():
        assert all(1 <= c <= 4 for c in values), (side, values)  # 1..4 by the loss rule
    assert counts["ours"] == counts["original"], "the two sides did different work; the ratio would mislead"


def our_side_work(ours: GanTrainer, n_steps: int, device: str) -> tuple[float, float]:
    """(one snapshot, one epoch's sample grid) as finetune.train writes them, in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        log = [{"epoch": 0, "idx": i, "d_loss": 0.0, "g_loss": 0.0} for i in range(n_steps)]
        state = {"task": ours.state_dict(), "epoch": 0, "step": 0, "log": log, "stopped": False}
        snapshot = seconds(lambda: atomic_torch_save(Path(tmp) / "snapshot.pt", state), device)
        grid = SampleGrid.fixed(
            V1.sample_labels, SAMPLES_PER_LABEL, torch.Generator().manual_seed(0), torch.device(device)
        )
        samples = seconds(lambda: grid.write(ours.G, Path(tmp) / "samples.png"), device)
    return snapshot, samples


def original_side_work(orig, G_ref, D_ref, reals, labels, device: str) -> tuple[float, float]:
    """(every 10th batch: real/fake PNGs + the 70-image test, the G/D save per epoch) of the original, in seconds."""
    orig_args = dict(w_moving_decay=0.995, style_mixing_prob=0.9, trunc_psi=1.0, trunc_layers=0, randomize_noise=True)
    with tempfile.TemporaryDirectory() as tmp:
        orig.ft.PROJECT_DIR_PATH = tmp  # the side work writes under <project>/stylegan_and_segmentation/...
        (Path(tmp) / "stylegan_and_segmentation" / "stylegan_modified").mkdir(parents=True)
        fakes = G_ref(torch.randn(len(reals), 512).to(device), labels, **orig_args)["image"]
        every_10th = seconds(
            lambda: (
                orig.ft.save_real_fake_imgs(reals, fakes),
                orig.ft.run_inference_test_during_finetuning(G_ref, 0, 0),
            ),
            device,
        )
        save = seconds(
            lambda: (
                torch.save(G_ref.state_dict(), Path(tmp) / "g.pth"),
                torch.save(D_ref.state_dict(), Path(tmp) / "d.pth"),
            ),
            device,
        )
    return every_10th, save


def epoch_projection(paired: Paired, batch: int, ours_side: tuple[float, float], ref_side: tuple[float, float]) -> None:
    """Minutes per epoch (an epoch after the first) with each side's own side work."""
    n = math.ceil(IMAGES / batch)
    snapshots = (n - 1) // SNAPSHOT_EVERY + 1  # every 100 steps within the epoch, and after it
    ours = n * np.median(paired.a) + snapshots * ours_side[0] + ours_side[1]
    ref = n * np.median(paired.b) + math.ceil(n / 10) * ref_side[0] + ref_side[1]
    print(
        f"side work: ours {ours_side[0]:.2f} s per snapshot (x{snapshots}) + {ours_side[1]:.2f} s sample grid; "
        f"original {ref_side[0]:.2f} s every 10th batch (x{math.ceil(n / 10)}) + {ref_side[1]:.2f} s G/D save"
    )
    print(
        f"epoch of {IMAGES:,} images ({n} steps, median step): ours {ours / 60:.1f} min, original {ref / 60:.1f} min "
        f"-> {ref / ours:.2f}x"
    )


def bench_v1(args) -> None:
    fix = _module(FIXTURES / "make_fixtures.py", "finetune_make_fixtures")
    device, batch = args.device, args.batch or 16
    _stub_bs4()
    orig = fix.import_original(args.ref_dir.resolve())
    # the fixtures stub the original's image-saving module; the side work timed here needs the real one
    sys.modules.pop("stylegan_modified.stylegan_generator_inference")
    orig.ft.modified_inf = importlib.import_module("stylegan_modified.stylegan_generator_inference")

    g_sd, d_sd, g_cfg, d_cfg = start_weights(fix, args.narrow)
    reals = fix.W.real_batch(101, batch).to(device)
    labels = fix.W.label_batch(201, batch, 7).to(device)
    cuda_ctx = fix.cpu_cuda if device == "cpu" else contextlib.nullcontext
    models = lambda: original_models(fix, orig, g_sd, d_sd, args.narrow, device)  # noqa: E731
    with cuda_ctx():
        check_equal(fix, orig, models, (g_cfg, d_cfg), reals, labels, batch, device)
        G_ref, D_ref = models()
        ours = ours_from(G_ref, D_ref, g_cfg, d_cfg, V1.with_overrides(batch_size=batch), device)
        paired, counts = timed_pairs(orig, G_ref, D_ref, ours, reals, labels, args.pairs, device)
        check_same_work(counts)
        n_steps = math.ceil(IMAGES / batch)
        ours_side = our_side_work(ours, n_steps, device)
        ref_side = original_side_work(orig, G_ref, D_ref, reals, labels, device)
    print(
        f"v1 fine-tuning step on {device_name(device)}, batch {batch}, "
        f"{'narrow' if args.narrow else 'full-size'} networks, {args.pairs} interleaved pairs"
    )
    print(paired.report())
    epoch_projection(paired, batch, ours_side, ref_side)


# ---------------------------------------------------------------- v2 / v3


def _cnns(W, classes_seeds):
    out = []
    for cls, seed in classes_seeds:
        out.append(cls())
        out[-1].load_state_dict(W.cnn_state(cls, seed))
    return out


def v2_pair(orig, W, batch: int, device: str, gen: torch.Generator):
    """(reference step, our step), same weights and inputs; step 1 of each (dropout off) asserted equal."""
    from ohlora_core.cnn.models import PropertyScoreCNN
    from ohlora_core.finetune.cnn_loop import CnnLoopTask
    from ohlora_core.finetune.restructure import conditional_generator
    from ohlora_core.finetune.variants import V2

    v1_state, cnn_state = W.conditional_generator_state(21), W.cnn_state(PropertyScoreCNN, 22)
    y = torch.randn(batch, 7, generator=gen).to(device)
    z = torch.randn(batch, 512, generator=gen).to(device)
    model = orig.v2gm.StyleGANFineTuneV2()
    model.stylegan_generator.load_state_dict(v1_state)
    model.property_score_cnn.load_state_dict(cnn_state)
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def ref_step():
        opt.zero_grad()
        out = model(z=z, property_label=y).to(torch.float32)
        loss = torch.nn.MSELoss()(out[:, :6], y[:, :6])
        loss.backward()
        opt.step()
        return float(loss.detach())

    variant = V2.with_overrides(batch_size=batch, keep_v1_dense0=True)
    ours = CnnLoopTask(
        conditional_generator(v1_state, variant, 0), *_cnns(W, [(PropertyScoreCNN, 22)]), variant, device, seed=0
    )
    our_step = lambda: float(ours.train_on(z, y)[0].detach())  # noqa: E731
    model.property_score_cnn.eval(), ours.cnn.eval()  # dropout off for the equality check
    a, b = ref_step(), our_step()
    assert abs(a - b) <= 1e-5 * abs(a or 1), (a, b)
    model.property_score_cnn.train(), ours.cnn.train()
    return ref_step, our_step


def v3_pair(orig, W, batch: int, device: str, gen: torch.Generator):
    """(reference step, our step), same weights and inputs; step 1 of each (dropout off) asserted equal."""
    from ohlora_core.cnn.models import GenderCNN, PropertyScoreCNN
    from ohlora_core.finetune.cvae import CVAEEncoder, CvaeTask
    from ohlora_core.finetune.restructure import conditional_generator
    from ohlora_core.finetune.variants import V3

    v1_state = W.conditional_generator_state(21)
    y = torch.randn(batch, 7, generator=gen).to(device)
    x = W.real_batch(7, batch).to(device)
    eps = torch.randn(batch, 512, generator=gen).to(device)
    model = orig.v3gm.StyleGANFineTuneV3()
    state = {k: val for k, val in v1_state.items() if k not in ("mapping.label_weight", "mapping.dense0.weight")}
    model.stylegan_generator.load_state_dict(state, strict=False)
    model.CVAE_encoder.load_state_dict(W.encoder_state(24))
    model.property_score_cnn.load_state_dict(W.cnn_state(PropertyScoreCNN, 22))
    model.gender_cnn.load_state_dict(W.cnn_state(GenderCNN, 23))
    orig.v3gm.freeze_stylegan_finetune_v3_layers(model)
    model = model.to(device).train()
    opt = torch.optim.AdamW(
        [{"params": model.stylegan_generator.parameters()}, {"params": model.CVAE_encoder.parameters(), "lr": 1e-5}],
        lr=1e-4,
    )
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
    dummy = torch.zeros(1, 3, 256, 256, dtype=torch.uint8)
    ours = CvaeTask(
        G,
        encoder,
        *_cnns(W, [(PropertyScoreCNN, 22), (GenderCNN, 23)]),
        dummy,
        np.zeros((1, 7), np.float32),
        V3,
        device,
        seed=0,
    )
    our_step = lambda: float(ours.train_on(x, y, eps)[0].total.detach())  # noqa: E731
    cnns = (model.property_score_cnn, model.gender_cnn, ours.property_cnn, ours.gender_cnn)
    for m in cnns:
        m.eval()  # dropout off for the equality check
    a, b = ref_step(), our_step()
    assert abs(a - b) <= 1e-5 * abs(a), (a, b)
    for m in cnns:
        m.train()
    return ref_step, our_step


def bench_v2_v3(args) -> None:
    """The original's v2 / v3 step (its modules) vs ours, same inputs, same device, interleaved."""
    fix = _module(FIXTURES / "make_v2_v3_fixtures.py", "finetune_make_v2_v3")
    orig = fix.import_original(args.ref_dir)
    device, v = args.device, args.version
    batch = args.batch or (16 if v == "v2" else 8)
    pair = v2_pair if v == "v2" else v3_pair
    ref_step, our_step = pair(orig, fix.W, batch, device, torch.Generator().manual_seed(0))
    paired = interleave(
        our_step,
        ref_step,
        args.pairs,
        a_name=f"ours ({'CnnLoopTask' if v == 'v2' else 'CvaeTask'}.train_on)",
        b_name="original",
        sync=lambda: sync(device),
    )
    print(
        f"{v} fine-tuning step on {device_name(device)}, batch {batch}, narrow generator, full-size CNNs"
        + (" and encoder" if v == "v3" else "")
        + f"; step 1 losses equal; {args.pairs} interleaved pairs"
    )
    print(paired.report())


def _stub_bs4() -> None:
    """The original's visualizer imports bs4 (unused by the functions timed here)."""
    if "bs4" not in sys.modules:
        mod = types.ModuleType("bs4")
        mod.BeautifulSoup = None
        sys.modules["bs4"] = mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--ref-dir", type=Path, required=True, help="the original's 2025_04_08_OhLoRA/stylegan_and_segmentation folder"
    )
    ap.add_argument("--version", default="v1", choices=("v1", "v2", "v3"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pairs", type=int, default=5, help="timed (ours, original) pairs after one warm-up pair")
    ap.add_argument("--batch", type=int, default=None, help="default: the original's (v1 16, v2 16, v3 8)")
    ap.add_argument("--narrow", action="store_true", help="v1: the fixtures' narrow networks (CPU minutes)")
    args = ap.parse_args()
    if args.version == "v1":
        bench_v1(args)
    else:
        bench_v2_v3(args)


if __name__ == "__main__":
    main()
