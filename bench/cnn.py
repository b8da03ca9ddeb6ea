"""Benchmark: gender/quality CNN training epoch and 5-model inference, ours vs the original's flow.

The reference flow runs the ORIGINAL code from --ref-dir (default .ref/cnn, an extract of
WannaBeSuperteur/AI_Projects holding 2025_04_08_OhLoRA/stylegan_and_segmentation/cnn/ and
global_common/torch_training.py): its CNNImageDataset (read_image -> ToPILImage -> ToTensor on every
access, DataLoader num_workers=0, SubsetRandomSampler, train batch 16 / valid batch 4), its run_train /
run_validation_detail, and predict_score_remaining_images (batch 4, 5 models in turn, per-image Python
bookkeeping). Ours: images decoded once into a uint8 tensor, batches gathered by index, our shared
loop (training.fit) and score_images. Same JPEGs, same model class, same device.

  python bench/cnn.py [--device cuda] [--n 200] [--fold-n 1600 --fold-epochs 5] [--ref-dir .ref/cnn]
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
        sys.exit(f"reference code not found under {ref_dir}: need {SUB}/cnn/cnn_common.py and "
                 "global_common/torch_training.py (extract them from github:WannaBeSuperteur/AI_Projects, "
                 "e.g. git archive HEAD <paths> | tar -x -C .ref/cnn)")
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


def ours_epoch(bank_paths, labels, train_idx, valid_idx, device, valid_batch, epochs=1):
    """Decode once + `epochs` epochs of our loop (train + validation) -> (decode_s, epoch_s)."""
    decode_s, imgs = timed(lambda: as_image_bank(decode_images(bank_paths), device), device)
    targets = torch.as_tensor(labels, dtype=torch.float32, device=device).unsqueeze(1)
    vt = torch.as_tensor(valid_idx)

    def validate(m):
        p = predict(m, imgs, vt, to_unit_float, valid_batch)[:, 0].cpu().numpy()
        return binary_metrics(p, labels[valid_idx], SETTINGS["gender"].pos_neg_threshold)

    torch.manual_seed(0)
    model = GenderCNN().to(device)
    # warm-up (cuDNN / allocator) on a couple of batches, not timed
    fit(model, imgs, targets, train_idx[:32], to_unit_float, nn.BCELoss(reduction="sum"), lambda m: {"val_loss": 0.0},
        "val_loss", shuffle_seed=0, max_epochs=1)
    torch.manual_seed(0)
    model = GenderCNN().to(device)
    epoch_s, _ = timed(lambda: fit(model, imgs, targets, train_idx, to_unit_float, nn.BCELoss(reduction="sum"), validate,
                                   "val_loss", shuffle_seed=0, max_epochs=epochs, patience=10 ** 9), device)
    return decode_s, epoch_s / epochs


def ref_epoch(cc, RefGender, folder, labels, train_idx, valid_idx, device, epochs=1):
    """The original's per-fold epoch: run_train + run_validation_detail over JPEG-decoding loaders."""
    from global_common.torch_training import run_train, run_validation_detail
    cc.IMAGE_DATA_DIR_PATH = str(folder)
    n = len(labels)
    df = pd.DataFrame({"img_path": [f"{folder}/{i:06d}.jpg" for i in range(n)], "img_no": range(n),
                       "gender": labels, "quality": labels})
    ds = cc.CNNImageDataset(df, transform=cc.base_transform, property_name="gender")
    tl = torch.utils.data.DataLoader(ds, batch_size=cc.TRAIN_BATCH_SIZE, sampler=torch.utils.data.SubsetRandomSampler(train_idx))
    vl = torch.utils.data.DataLoader(ds, batch_size=cc.VALID_BATCH_SIZE, sampler=torch.utils.data.SubsetRandomSampler(valid_idx))
    torch.manual_seed(0)
    model = cc.define_cnn_model(RefGender, device)
    warm = torch.utils.data.DataLoader(ds, batch_size=16, sampler=torch.utils.data.SubsetRandomSampler(train_idx[:32]))
    run_train(model=model, train_loader=warm, device=device, loss_func=nn.BCELoss(reduction="sum"))

    def one():
        for _ in range(epochs):
            run_train(model=model, train_loader=tl, device=device, loss_func=nn.BCELoss(reduction="sum"))
            run_validation_detail(model=model, valid_loader=vl, device=device, loss_func=nn.BCELoss(reduction="sum"),
                                  threshold=0.5)
            model.scheduler.step()
    s, _ = timed(one, device)
    return s / epochs


def ours_inference(paths, device, batch):
    torch.manual_seed(0)
    models = [GenderCNN().to(device).eval() for _ in range(5)]
    score_images(models, decode_images(paths[:8]), device, batch)  # warm-up
    s, _ = timed(lambda: score_images(models, decode_images(paths), device, batch), device)
    return s


def ref_inference(cc, RefGender, folder, n, device):
    cc.IMAGE_DATA_DIR_PATH = str(folder)
    df = pd.DataFrame({"img_path": [f"{folder}/{i:06d}.jpg" for i in range(n)], "img_no": list(range(n))})
    loader = torch.utils.data.DataLoader(cc.RemainingImageDataset(df, transform=cc.base_transform, property_name="gender"),
                                         batch_size=cc.INFERENCE_BATCH_SIZE, shuffle=False)
    torch.manual_seed(0)
    models = [RefGender().to(device) for _ in range(5)]  # train mode, as the original (never .eval())
    warm = torch.utils.data.DataLoader(torch.utils.data.Subset(loader.dataset, range(min(8, n))), batch_size=4)
    warm.dataset.img_nos, warm.dataset.img_paths = loader.dataset.img_nos, loader.dataset.img_paths
    with tempfile.TemporaryDirectory() as d:
        cc.predict_score_remaining_images("gender", warm, models, f"{d}/warm.csv")  # warm-up, not timed
        s, _ = timed(lambda: cc.predict_score_remaining_images("gender", loader, models, f"{d}/gender.csv"), device)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=200, help="images for the 1-epoch and inference comparison")
    ap.add_argument("--ref-dir", default=str(ROOT / ".ref" / "cnn"))
    ap.add_argument("--fold-n", type=int, default=0, help="images for the full-fold timing (e.g. 1600); 0 = skip")
    ap.add_argument("--fold-epochs", type=int, default=5)
    ap.add_argument("--fold-ref-epochs", type=int, default=1, help="reference epochs timed on the fold data (0 = skip)")
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

        sub = labels[: args.n]
        tr, va = kfold_splits(sub, stratified=False, seed=0)[0]
        dec, ours_s = ours_epoch(paths[: args.n], sub, tr, va, device, valid_batch)
        ref_s = ref_epoch(cc, RefGender, folder, sub, tr, va, device)
        rows.append((f"gender fold epoch, {len(tr)} train + {len(va)} valid (img/s)", args.n / ours_s, args.n / ref_s))
        rows.append((f"  decode {args.n} JPEGs once (ours only, s)", dec, float("nan")))
        ours_i = ours_inference(paths[: args.n], device, valid_batch)
        ref_i = ref_inference(cc, RefGender, folder, args.n, device)
        rows.append((f"5-model inference incl. JPEG decode, {args.n} images (img/s)", args.n / ours_i, args.n / ref_i))

        if args.fold_n:
            fl = labels[: args.fold_n]
            tr, va = kfold_splits(fl, stratified=False, seed=0)[0]
            dec, per_epoch = ours_epoch(paths[: args.fold_n], fl, tr, va, device, valid_batch, epochs=args.fold_epochs)
            rows.append((f"full fold {args.fold_n} images: s/epoch (avg of {args.fold_epochs})", per_epoch,
                         ref_epoch(cc, RefGender, folder, fl, tr, va, device, args.fold_ref_epochs)
                         if args.fold_ref_epochs else float("nan")))
            rows.append(("  -> 46-epoch fold (original log: ~800 s on its GPU), s", dec + 46 * per_epoch,
                         46 * rows[-1][2]))
    print(f"\ndevice: {name}; torch {torch.__version__}")
    print(f"{'measure':<66} {'ours':>10} {'reference':>10} {'ratio':>7}")
    for label, o, r in rows:
        higher_is_better = "img/s" in label
        ratio = (o / r if higher_is_better else r / o) if np.isfinite(r) and r else float("nan")
        print(f"{label:<66} {o:>10.2f} {r:>10.2f} {ratio:>6.2f}x")
    print("ratio = speed-up of ours (img/s: ours/ref; seconds: ref/ours)")


if __name__ == "__main__":
    main()
