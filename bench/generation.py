"""StyleGAN generation: our generator vs genforce's, and our image flow vs the original's.

    python bench/generation.py --ref-dir PATH [--device cuda] [--n 64] [--batches 1,4,16] [--pairs 3]

--ref-dir: a checkout of genforce/genforce (e.g. `git archive` of it into a folder outside this
repository; default .ref/genforce). Both sides are timed interleaved (`bench/interleave.py`: one
untimed warm-up pair, then --pairs timed pairs A B A B ...): the median of each side, its spread
(min..max) and the ratio per pair are printed.

Section 1 (generator forward): images/s of `ohlora_core.stylegan.StyleGANGenerator` and of
genforce's `models/stylegan_generator.py` (imported from --ref-dir), both holding the same smoke
weights (seeded init, 256x256), eval mode, `torch.no_grad`. It also prints the largest difference
between the two outputs on those inputs (numeric parity at full size).

Section 2 (end to end, --n images written as JPEG): ours = `ohlora_core.generation.generate_images`
(z from (seed, i), batch 16, eval mode, tensor post-processing, threaded JPEG writes) vs a
re-creation of the original `synthesize` flow: genforce generator left in training mode (as
Oh-LoRA did, so style mixing runs), batch 4, `torch.randn(4, 512)` per batch, numpy
`postprocess_image` from genforce's utils/visualizer.py, one `cv2.imwrite` per image. Each timed
call writes its --n images into a fresh folder; the bench asserts that every call of both sides
wrote exactly --n images.
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
sys.path.insert(0, str(ROOT / "bench"))

from interleave import interleave  # noqa: E402

from ohlora_core.stylegan import postprocess, smoke_generator  # noqa: E402

ORIGINAL_KWARGS = dict(trunc_psi=1.0, trunc_layers=0, randomize_noise=False)


def load_reference(ref_dir: Path):
    """genforce's StyleGANGenerator and postprocess_image, without its package __init__s
    (models/__init__ imports every GAN; utils/visualizer imports bs4)."""
    gen_file = ref_dir / "models" / "stylegan_generator.py"
    vis_file = ref_dir / "utils" / "visualizer.py"
    if not gen_file.is_file() or not vis_file.is_file():
        sys.exit(
            f"genforce checkout not found: expected {gen_file} and {vis_file}. Get genforce/genforce "
            f"and pass its folder with --ref-dir."
        )
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


def forward_section(ours, ref, postprocess_image_ref, args, device: str) -> None:
    print(f"\n[1] generator forward, eval, no_grad (images/s; median of {args.pairs} interleaved pairs, min..max)")
    print(f"{'batch':>5} {'ours':>22} {'genforce':>22} {'ratio':>7} {'per pair':>12} {'max|diff|':>10} {'uint8 eq':>9}")
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for b in [int(x) for x in args.batches.split(",")]:
            z = torch.randn(b, 512, generator=gen).to(device)
            timing = interleave(
                lambda: ours(z, **ORIGINAL_KWARGS),
                lambda: ref(z, **ORIGINAL_KWARGS),
                args.pairs,
                warmup=args.warmup,
                a_name="ours",
                b_name="genforce",
                sync=lambda: sync(device),
            )
            a, r = ours(z, **ORIGINAL_KWARGS)["image"], ref(z, **ORIGINAL_KWARGS)["image"]
            diff = (a - r).abs().max().item()
            theirs = torch.from_numpy(postprocess_image_ref(r.cpu().numpy())).to(device)
            same = (postprocess(a) == theirs).float().mean()
            pr = timing.pair_ratios
            print(
                f"{b:>5} {_rate(b, timing.a):>22} {_rate(b, timing.b):>22} {timing.ratio:>6.2f}x "
                f"{min(pr):>5.2f}..{max(pr):<5.2f} {diff:>10.2e} {100 * same.item():>8.3f}%"
            )
            # same weights, same z: the two flows must agree (TF32 convolutions on CUDA round at ~1e-2)
            tf32 = device.startswith("cuda") and torch.backends.cudnn.allow_tf32
            assert diff < (5e-2 if tf32 else 1e-3) and same.item() > (0.9 if tf32 else 0.999), (b, diff, same.item())


def _rate(images: int, seconds: list[float]) -> str:
    """images/s: median (min..max) over the timed calls."""
    rates = sorted(images / t for t in seconds)
    return f"{statistics.median(rates):.2f} ({rates[0]:.2f}..{rates[-1]:.2f})"


def end_to_end_section(ours, ref, postprocess_image_ref, args, device: str, tmp: Path) -> None:
    from ohlora_core.generation import generate_images, latent_codes

    print(f"\n[2] end to end: {args.n} JPEGs written per call (seconds; median of {args.pairs} interleaved pairs)")
    latents = latent_codes(args.seed, range(args.n))
    calls = {"ours": 0, "ref": 0}

    def run_ours() -> None:
        out = tmp / f"ours{calls['ours']}"
        calls["ours"] += 1
        mine = generate_images(
            ours, latents, range(args.n), out, batch_size=args.our_batch, device=device, tf32=not args.exact
        )
        assert mine.written == list(range(args.n)) and len(list(out.glob("*.jpg"))) == args.n

    def run_ref() -> None:
        out = tmp / f"ref{calls['ref']}"
        calls["ref"] += 1
        out.mkdir()
        ref.train()  # the original never called .eval(): style mixing + w_avg updates ran
        original_synthesize(ref, postprocess_image_ref, args.n, out, device)
        assert len(list(out.glob("*.jpg"))) == args.n  # the same work as ours: --n images written

    timing = interleave(
        run_ours,
        run_ref,
        args.pairs,
        warmup=args.warmup,
        a_name=f"ours (generate_images, batch {args.our_batch}{', fp32' if args.exact else ''})",
        b_name="original synthesize (batch 4, train mode)",
        sync=lambda: sync(device),
    )
    print(timing.report())
    print(
        f"images/s: ours {args.n / statistics.median(timing.a):.2f}, "
        f"original {args.n / statistics.median(timing.b):.2f}; ratio (original time / ours): {timing.ratio:.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ref-dir", type=Path, default=ROOT / ".ref" / "genforce")
    ap.add_argument("--n", type=int, default=64, help="images written per call in the end-to-end section (0 = skip)")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--pairs", type=int, default=3, help="timed pairs (ours, reference) per measure")
    ap.add_argument("--warmup", type=int, default=1, help="untimed pairs first")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--our-batch", type=int, default=16, help="our batch size in sections 2 and 3")
    ap.add_argument("--exact", action="store_true", help="ours with tf32=False (full fp32 convolutions on CUDA)")
    ap.add_argument(
        "--full-n",
        type=int,
        default=0,
        help="section 3: time our generate_images alone on this many images (10000 = the full run)",
    )
    args = ap.parse_args()
    device = args.device
    RefGenerator, postprocess_image_ref = load_reference(args.ref_dir.resolve())

    ours = smoke_generator(args.seed, args.resolution).to(device).eval()
    ref = RefGenerator(args.resolution)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ref = ref.to(device).eval()
    dev_name = (
        torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {dev_name}; torch {torch.__version__}; resolution {args.resolution}; smoke weights seed {args.seed}"
    )
    forward_section(ours, ref, postprocess_image_ref, args, device)
    if args.n > 0:
        with tempfile.TemporaryDirectory() as tmp:
            end_to_end_section(ours, ref, postprocess_image_ref, args, device, Path(tmp))
    if args.full_n > 0:
        from ohlora_core.generation import generate_images, latent_codes

        with tempfile.TemporaryDirectory() as tmp:
            latents = latent_codes(args.seed, range(args.full_n))
            sync(device)
            t0 = time.perf_counter()
            result = generate_images(
                ours,
                latents,
                range(args.full_n),
                Path(tmp),
                batch_size=args.our_batch,
                device=device,
                tf32=not args.exact,
            )
            sync(device)
            total = time.perf_counter() - t0
            assert result.written == list(range(args.full_n)) and len(list(Path(tmp).glob("*.jpg"))) == args.full_n
        print(
            f"\n[3] ours alone (not a comparison){' (exact fp32)' if args.exact else ''}: {args.full_n} JPEGs in "
            f"{total:.2f} s ({args.full_n / total:.1f} img/s; generator {result.generator_seconds:.2f} s, "
            f"batch {args.our_batch})"
        )


if __name__ == "__main__":
    main()
