"""StyleGAN generation: our generator vs genforce's, and our image flow vs the original's.

    python bench/generation.py [--device cuda] [--ref-dir .ref/genforce] [--n 64] [--batches 1,4,16]

Section 1 (generator forward): images/s of `ohlora_core.stylegan.StyleGANGenerator` and of
genforce's `models/stylegan_generator.py` (imported from --ref-dir, a checkout of
genforce/genforce), both holding the same smoke weights (seeded init, 256x256), eval mode,
`torch.no_grad`, warm-up, median of --reps timed calls. It also prints the largest difference
between the two outputs on those inputs (numeric parity at full size).

Section 2 (end to end, --n images written as JPEG): ours = `ohlora_core.generation.generate_images`
(z from (seed, i), batch 16, eval mode, tensor post-processing, threaded JPEG writes) vs a
re-creation of the original `synthesize` flow: genforce generator left in training mode (as
Oh-LoRA did, so style mixing runs), batch 4, `torch.randn(4, 512)` per batch, numpy
`postprocess_image` from genforce's utils/visualizer.py, one `cv2.imwrite` per image.
"""
from __future__ import annotations

import argparse
import ast
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohlora_core.stylegan import postprocess, smoke_generator  # noqa: E402

ORIGINAL_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)


def load_reference(ref_dir: Path):
    """genforce's StyleGANGenerator and postprocess_image, without its package __init__s
    (models/__init__ imports every GAN; utils/visualizer imports bs4)."""
    gen_file = ref_dir / "models" / "stylegan_generator.py"
    vis_file = ref_dir / "utils" / "visualizer.py"
    if not gen_file.is_file() or not vis_file.is_file():
        sys.exit(f"genforce checkout not found: expected {gen_file} and {vis_file}. Get genforce/genforce "
                 f"and pass its folder with --ref-dir.")
    pkg = types.ModuleType("models")
    pkg.__path__ = [str(ref_dir / "models")]
    sys.modules["models"] = pkg
    from models.stylegan_generator import StyleGANGenerator as RefGenerator  # type: ignore

    tree = ast.parse(vis_file.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "postprocess_image")
    ns: dict = {"np": np}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(vis_file), "exec"), ns)
    return RefGenerator, ns["postprocess_image"]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_forward(model, z: torch.Tensor, device: str, warmup: int, reps: int) -> float:
    """Median seconds of `model(z)` (eval kwargs of the original)."""
    for _ in range(warmup):
        model(z, **ORIGINAL_KWARGS)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        model(z, **ORIGINAL_KWARGS)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def original_synthesize(G, postprocess_image, n: int, out_dir: Path, device: str, batch: int = 4) -> None:
    """The original `synthesize` loop (Oh-LoRA stylegan_generator_inference), device-agnostic."""
    import cv2

    idx = 0
    with torch.no_grad():
        while idx < n:
            bs = min(batch, n - idx)
            z = torch.randn(bs, 512).to(device)
            images = postprocess_image(G(z, **ORIGINAL_KWARGS)["image"].detach().cpu().numpy())
            for img in images:
                cv2.imwrite(str(out_dir / f"{idx:06d}.jpg"), img[:, :, ::-1])
                idx += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ref-dir", type=Path, default=ROOT / ".ref" / "genforce")
    ap.add_argument("--n", type=int, default=64, help="images written in the end-to-end section (0 = skip)")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--our-batch", type=int, default=16, help="our batch size in sections 2 and 3")
    ap.add_argument("--exact", action="store_true", help="ours with tf32=False (full fp32 convolutions on CUDA)")
    ap.add_argument("--full-n", type=int, default=0,
                    help="section 3: time our generate_images alone on this many images (10000 = the full run)")
    args = ap.parse_args()
    device = args.device
    RefGenerator, postprocess_image = load_reference(args.ref_dir.resolve())

    ours = smoke_generator(args.seed, args.resolution).to(device).eval()
    ref = RefGenerator(args.resolution)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ref = ref.to(device).eval()
    dev_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {dev_name}; torch {torch.__version__}; resolution {args.resolution}; smoke weights seed {args.seed}")

    print("\n[1] generator forward, eval, no_grad (images/s, median of", args.reps, "reps)")
    print(f"{'batch':>5} {'ours':>10} {'genforce':>10} {'ratio':>7} {'max|diff|':>10} {'uint8 equal':>11}")
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for b in [int(x) for x in args.batches.split(",")]:
            z = torch.randn(b, 512, generator=gen).to(device)
            t_ours = time_forward(ours, z, device, args.warmup, args.reps)
            t_ref = time_forward(ref, z, device, args.warmup, args.reps)
            a, r = ours(z, **ORIGINAL_KWARGS)["image"], ref(z, **ORIGINAL_KWARGS)["image"]
            diff = (a - r).abs().max().item()
            same = (postprocess(a) == torch.from_numpy(postprocess_image(r.cpu().numpy())).to(device)).float().mean()
            print(f"{b:>5} {b / t_ours:>10.2f} {b / t_ref:>10.2f} {t_ref / t_ours:>6.2f}x {diff:>10.2e} "
                  f"{100 * same.item():>10.3f}%")
            # same weights, same z: the two flows must agree (TF32 convolutions on CUDA round at ~1e-2)
            tf32 = device.startswith("cuda") and torch.backends.cudnn.allow_tf32
            assert diff < (5e-2 if tf32 else 1e-3) and same.item() > (0.9 if tf32 else 0.999), (b, diff, same.item())

    if args.n <= 0:
        return
    try:
        from ohlora_core.generation import generate_images, latent_codes
    except ImportError as exc:
        sys.exit(f"ohlora_core.generation is not available ({exc}); run with --n 0")
    print(f"\n[2] end to end: {args.n} JPEGs written (seconds, images/s)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        latents = latent_codes(args.seed, range(args.n))
        sync(device)
        t0 = time.perf_counter()
        mine = generate_images(ours, latents, range(args.n), tmp / "ours", batch_size=args.our_batch, device=device,
                               tf32=not args.exact)
        sync(device)
        t_ours = time.perf_counter() - t0
        (tmp / "ref").mkdir()
        ref.train()  # the original never called .eval(): style mixing + w_avg updates ran
        sync(device)
        t0 = time.perf_counter()
        original_synthesize(ref, postprocess_image, args.n, tmp / "ref", device)
        sync(device)
        t_ref = time.perf_counter() - t0
        n_ours, n_ref = len(list((tmp / "ours").glob("*.jpg"))), len(list((tmp / "ref").glob("*.jpg")))
        assert n_ours == n_ref == args.n and mine.written == list(range(args.n)), (n_ours, n_ref)
    print(f"{'flow':<40} {'seconds':>8} {'img/s':>8}")
    label = f"ours (generate_images, batch {args.our_batch}{', fp32' if args.exact else ''})"
    print(f"{label:<40} {t_ours:>8.2f} {args.n / t_ours:>8.2f}")
    print(f"{'original synthesize (batch 4, train mode)':<40} {t_ref:>8.2f} {args.n / t_ref:>8.2f}")
    print(f"ratio (original time / ours): {t_ref / t_ours:.2f}x")

    if args.full_n > 0:
        with tempfile.TemporaryDirectory() as tmp:
            latents = latent_codes(args.seed, range(args.full_n))
            sync(device)
            t0 = time.perf_counter()
            result = generate_images(ours, latents, range(args.full_n), Path(tmp), batch_size=args.our_batch, device=device,
                                     tf32=not args.exact)
            sync(device)
            total = time.perf_counter() - t0
        print(f"\n[3] ours alone{' (exact fp32)' if args.exact else ''}: {args.full_n} JPEGs in {total:.2f} s ({args.full_n / total:.1f} img/s; "
              f"generator {result.generator_seconds:.2f} s, batch {args.our_batch})")


if __name__ == "__main__":
    main()
