"""Benchmark: gender/quality CNN training epoch and 5-model inference, ours vs the original's flow.

The reference flow runs the ORIGINAL code from --ref-dir (default .ref/cnn, an extract of
WannaBeSuperteur/AI_Projects holding 2025_04_08_OhLoRA/stylegan_and_segmentation/cnn/ and
global_common/torch_training.py): its CNNImageDataset (read_image -> ToPILImage -> ToTensor on every
access, DataLoader num_workers=0, SubsetRandomSampler, train batch 16 / valid batch 4), its run_train /
run_validation_detail, and predict_score_remaining_images (batch 4, 5 models in turn, per-image Python
bookkeeping). Ours: images decoded once into a uint8 tensor, batches gathered by index, our shared
loop (training.fit) and score_images. Same JPEGs, same model class, same device.

  python bench/cnn.py --ref-dir PATH [--device cuda] [--n 200] [--fold-n 1600] [--pairs 3]

Each measure is timed interleaved (`bench/interleave.py`: one untimed warm-up pair, then --pairs timed
pairs A B A B ...; median, min..max and the ratio per pair). An epoch call trains a freshly seeded
model for one epoch (train + validation) on each side; an inference call scores the --n images with 5
models. Every call counts the images it pushed through its model: both sides must count the same
(train + validation images per epoch, 5 x n in inference, and the reference's CSV has n rows).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from interleave import interleave  # noqa: E402

from ohlora_core.cnn.data import as_image_bank, decode_images, to_unit_float  # noqa: E402
from ohlora_core.cnn.inference import predict, score_images  # noqa: E402
from ohlora_core.cnn.labels import smoke_labels  # noqa: E402
from ohlora_core.cnn.models import GenderCNN  # noqa: E402
from ohlora_core.cnn.training import SETTINGS, binary_metrics, fit, kfold_splits  # noqa: E402

SUB = "2025_04_08_OhLoRA/stylegan_and_segmentation"


def load_reference(ref_dir: Path):
    """Import the original cnn_common (+ global_common.torch_training) from ref_dir."""
    common = ref_dir / SUB / "cnn" / "cnn_common.py"
    if not common.is_file() or not (ref_dir / "global_common" / "torch_training.py").is_file():
        sys.exit(
            f"reference code not found under {ref_dir}: need {SUB}/cnn/cnn_common.py and "
            "global_common/torch_training.py (extract them from github:WannaBeSuperteur/AI_Projects, "
            "e.g. git archive HEAD <paths> | tar -x -C .ref/cnn)"
        )
    if "torchinfo" not in sys.modules:  # only used for a printed summary in the original
        try:
            importlib.import_module("torchinfo")
        except ImportError:
            sys.modules["torchinfo"] = types.SimpleNamespace(summary=lambda *a, **k: None)
    # the original imports `cnn.cnn_common`; this file is also called cnn.py, so register the package by path
    pkg = types.ModuleType("cnn")
    pkg.__path__ = [str(ref_dir / SUB / "cnn")]
    sys.modules["cnn"] = pkg
    return importlib.import_module("cnn.cnn_common"), importlib.import_module("cnn.cnn_gender").GenderCNN


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n 256x256 JPEGs (q95, like cv2.imwrite of the generator) with smooth random content."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        img = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        p = folder / f"{i:06d}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    return paths


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


class Counter:
    """Images pushed through a model by one side (both sides must count the same per call)."""

    def __init__(self) -> None:
        self.n = 0

    def unit_float(self, x: torch.Tensor) -> torch.Tensor:
        self.n += len(x)
        return to_unit_float(x)


def ours_epoch(imgs, labels, train_idx, valid_idx, device, valid_batch, seen: Counter):
    """A callable: one epoch of our loop (train + validation) on a freshly seeded model."""
    targets = torch.as_tensor(labels, dtype=torch.float32, device=device).unsqueeze(1)
    vt = torch.as_tensor(valid_idx)

    def validate(m):
        p = predict(m, imgs, vt, seen.unit_float, valid_batch)[:, 0].cpu().numpy()
        return binary_metrics(p, labels[valid_idx], SETTINGS["gender"].pos_neg_threshold)

    def one() -> None:
        torch.manual_seed(0)
        model = GenderCNN().to(device)
        fit(
            model,
            imgs,
            targets,
            train_idx,
            seen.unit_float,
            nn.BCELoss(reduction="sum"),
            validate,
            "val_loss",
            shuffle_seed=0,
            max_epochs=1,
            patience=10**9,
        )

    return one


class CountedDataset(torch.utils.data.Dataset):
    def __init__(self, ds, seen: Counter) -> None:
        self.ds, self.seen = ds, seen

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        self.seen.n += 1
        return self.ds[i]


def ref_epoch(cc, RefGender, folder, labels, train_idx, valid_idx, device, seen: Counter):
    """A callable: the original's per-fold epoch (run_train + run_validation_detail over JPEG-decoding
    loaders) on a freshly seeded model."""
    from global_common.torch_training import run_train, run_validation_detail

    cc.IMAGE_DATA_DIR_PATH = str(folder)
    n = len(labels)
    df = pd.DataFrame(
        {
            "img_path": [f"{folder}/{i:06d}.jpg" for i in range(n)],
            "img_no": range(n),
            "gender": labels,
            "quality": labels,
        }
    )
    ds = CountedDataset(cc.CNNImageDataset(df, transform=cc.base_transform, property_name="gender"), seen)
    tl = torch.utils.data.DataLoader(
        ds, batch_size=cc.TRAIN_BATCH_SIZE, sampler=torch.utils.data.SubsetRandomSampler(train_idx)
    )
    vl = torch.utils.data.DataLoader(
        ds, batch_size=cc.VALID_BATCH_SIZE, sampler=torch.utils.data.SubsetRandomSampler(valid_idx)
    )

    def one() -> None:
        torch.manual_seed(0)
        model = cc.define_cnn_model(RefGender, device)
        run_train(model=model, train_loader=tl, device=device, loss_func=nn.BCELoss(reduction="sum"))
        run_validation_detail(
            model=model, valid_loader=vl, device=device, loss_func=nn.BCELoss(reduction="sum"), threshold=0.5
        )
        model.scheduler.step()

    return one


def ours_inference(paths, device, batch, seen: Counter):
    torch.manual_seed(0)
    models = [GenderCNN().to(device).eval() for _ in range(5)]

    def one() -> None:
        scores = score_images(models, decode_images(paths), device, batch)
        seen.n += 5 * len(paths)  # score_images runs every image through each of the 5 models
        assert len(scores.raw) == len(paths)

    return one


def ref_inference(cc, RefGender, folder, n, device, seen: Counter, out_dir: Path):
    cc.IMAGE_DATA_DIR_PATH = str(folder)
    df = pd.DataFrame({"img_path": [f"{folder}/{i:06d}.jpg" for i in range(n)], "img_no": list(range(n))})
    ds = cc.RemainingImageDataset(df, transform=cc.base_transform, property_name="gender")
    loader = torch.utils.data.DataLoader(ds, batch_size=cc.INFERENCE_BATCH_SIZE, shuffle=False)
    torch.manual_seed(0)
    models = [RefGender().to(device) for _ in range(5)]  # train mode, as the original (never .eval())

    def one() -> None:
        csv = out_dir / "gender.csv"
        cc.predict_score_remaining_images("gender", loader, models, str(csv))
        seen.n += 5 * n  # the original runs each batch through the 5 models in turn
        assert len(pd.read_csv(csv)) == n

    return one


def paired(label: str, ours, ref, ours_seen: Counter, ref_seen: Counter, per_call: int, pairs: int, device):
    """Interleave; check both sides pushed `per_call` images through their models on every call."""
    timing = interleave(ours, ref, pairs, warmup=1, sync=lambda: sync(device))
    calls = pairs + 1
    assert ours_seen.n == ref_seen.n == calls * per_call, (label, ours_seen.n, ref_seen.n, calls * per_call)
    print(f"{label}:\n{timing.report()}")
    return timing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=200, help="images for the 1-epoch and inference comparison")
    ap.add_argument("--ref-dir", default=str(ROOT / ".ref" / "cnn"))
    ap.add_argument("--fold-n", type=int, default=0, help="images for the full-fold timing (e.g. 1600); 0 = skip")
    ap.add_argument("--pairs", type=int, default=3, help="timed pairs (ours, reference) per measure")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    cc, RefGender = load_reference(Path(args.ref_dir))
    # the original's predict_score_remaining_images picks its own device: make it ours
    cc.torch = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    cc.torch.device = lambda *_a, **_k: device
    valid_batch = 256 if device.type == "cuda" else 8  # big CPU batches only thrash the cache
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = max(args.n, args.fold_n)
        paths = make_jpegs(folder, n)
        labels = np.array(smoke_labels(n, seed=0)["gender"])
        for size, what in ((args.n, "gender fold epoch"), (args.fold_n, "full fold")):
            if not size:
                continue
            sub = labels[:size]
            tr, va = kfold_splits(sub, stratified=False, seed=0)[0]
            dec, imgs = timed(lambda: as_image_bank(decode_images(paths[:size]), device), device)
            a, b = Counter(), Counter()
            t = paired(
                f"{what}, {len(tr)} train + {len(va)} valid",
                ours_epoch(imgs, sub, tr, va, device, valid_batch, a),
                ref_epoch(cc, RefGender, folder, sub, tr, va, device, b),
                a,
                b,
                len(tr) + len(va),
                args.pairs,
                device,
            )
            rows.append((f"{what}, {len(tr)} train + {len(va)} valid: s/epoch", t))
            rows.append((f"  decode {size} JPEGs once (ours only, s)", dec))
            if what == "full fold":
                rows.append(("  -> 46-epoch fold (ours: decode + 46 epochs), s", t, 46, dec))
        a, b = Counter(), Counter()
        with tempfile.TemporaryDirectory() as out:
            t = paired(
                f"5-model inference incl. JPEG decode, {args.n} images",
                ours_inference(paths[: args.n], device, valid_batch, a),
                ref_inference(cc, RefGender, folder, args.n, device, b, Path(out)),
                a,
                b,
                5 * args.n,
                args.pairs,
                device,
            )
        rows.append((f"5-model inference incl. JPEG decode, {args.n} images: s", t))
    print(f"\ndevice: {name}; torch {torch.__version__}; 1 warm-up pair + {args.pairs} interleaved pairs per measure")
    print(f"{'measure':<62} {'ours':>22} {'reference':>22} {'ratio':>7} {'per pair':>12}")
    for row in rows:
        print(_row(*row))
    print("ratio = reference time / ours (speed-up of ours); figures: median (min..max) seconds")


def _spread(xs) -> str:
    return f"{np.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def _row(label, t, scale=1, extra=0.0) -> str:
    if isinstance(t, float):
        return f"{label:<62} {t:>22.2f}"
    a, b = [extra + scale * x for x in t.a], [scale * x for x in t.b]
    pr = [y / x for x, y in zip(a, b)]
    return (
        f"{label:<62} {_spread(a):>22} {_spread(b):>22} {np.median(b) / np.median(a):>6.2f}x "
        f"{min(pr):>5.2f}..{max(pr):<5.2f}"
    )


if __name__ == "__main__":
    main()
