"""Image tensors for the CNNs: decode every JPEG once into a uint8 [N, 3, H, W] tensor.

The original re-decoded each JPEG (read_image -> ToPILImage -> ToTensor) on every epoch. Here images
are decoded once; a batch is gathered by index (on the device when the bank lives there) and only then
converted to float, with the same arithmetic as ToTensor (`x.float() / 255`) and Normalize(0.5, 0.5).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file


class ImageDataError(ValueError):
    """An image file is missing, unreadable or has the wrong size."""


def decode_images(
    paths: Sequence[str | os.PathLike], expected_hw: tuple[int, int] | None = (256, 256), chunk: int = 256
) -> torch.Tensor:
    """Decode JPEG files once into a uint8 CPU tensor [N, 3, H, W] (RGB, same decoder as `read_image`).

    torchvision's decoder is kept on purpose (it is what the original used, so pixels match); it is
    deprecated since torchvision 0.29 in favour of TorchCodec, hence the silenced warning.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        return _decode_images(paths, expected_hw, chunk)


def _decode_images(paths, expected_hw, chunk) -> torch.Tensor:
    out: torch.Tensor | None = None
    for start in range(0, len(paths), chunk):
        part = paths[start : start + chunk]
        datas = []
        for p in part:
            if not os.path.isfile(p):
                raise ImageDataError(f"image not found: {p}")
            datas.append(read_file(str(p)))
        try:
            imgs = decode_jpeg(datas, mode=ImageReadMode.RGB)
        except RuntimeError:
            imgs = [_decode_one(p, d) for p, d in zip(part, datas)]  # find the file at fault
        for p, img in zip(part, imgs):
            if expected_hw is not None and tuple(img.shape[1:]) != tuple(expected_hw):
                raise ImageDataError(
                    f"{p}: expected {expected_hw[0]}x{expected_hw[1]} image, got {tuple(img.shape[1:])}"
                )
        if out is None:
            out = torch.empty((len(paths), *imgs[0].shape), dtype=torch.uint8)
        out[start : start + len(part)] = torch.stack(imgs)
    if out is None:
        raise ImageDataError("no image paths given")
    return out


def _decode_one(path, data: torch.Tensor) -> torch.Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise ImageDataError(f"cannot decode image {path}: {exc}") from exc


def to_unit_float(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], bit-identical to torchvision's ToTensor."""
    return batch_uint8.to(torch.float32).div(255)


def to_signed_float(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1], bit-identical to ToTensor + Normalize(0.5, 0.5)."""
    return to_unit_float(batch_uint8).sub_(0.5).div_(0.5)


def as_image_bank(images: torch.Tensor | np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Validate a uint8 [N, 3, H, W] tensor and place it where batches will be gathered.

    On CUDA the whole bank is moved once (10,000 images = 2 GB uint8), so batch gathering costs no
    host->device copy per step; on CPU it stays where it is.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ImageDataError(f"expected a uint8 tensor [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    return images.to(device)


def eval_batch_size(device: torch.device | str, batch_size: int | None = None) -> int:
    """`batch_size` if given, else 256 on CUDA and 16 on CPU (larger CPU batches only thrash the cache;
    the full-image CNNs hold ~16 MB of activations per image in their first layers)."""
    if batch_size is not None:
        return int(batch_size)
    return 256 if torch.device(device).type == "cuda" else 16


def iterate_batches(
    n_or_index: int | np.ndarray | torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Yield index tensors (CPU, int64) of at most `batch_size`; shuffled when a generator is given.

    Shuffling draws one `torch.randperm` from `generator` per call, like a SubsetRandomSampler epoch.
    """
    index = (
        torch.arange(n_or_index)
        if isinstance(n_or_index, int)
        else torch.as_tensor(np.asarray(n_or_index), dtype=torch.int64)
    )
    if generator is not None:
        index = index[torch.randperm(len(index), generator=generator)]
    for start in range(0, len(index), batch_size):
        yield index[start : start + batch_size]
