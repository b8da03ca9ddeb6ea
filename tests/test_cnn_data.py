"""Decode-once image bank: same pixels/float values as the original's read_image -> ToPILImage -> ToTensor."""

import cv2
import numpy as np
import pytest
import torch
from torchvision import transforms
from torchvision.io import read_image

from ohlora_core.cnn.data import ImageDataError, decode_images, iterate_batches, to_signed_float, to_unit_float

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # the reference read_image


def _jpegs(tmp_path, n, size=256):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"{i:06d}.jpg"
        cv2.imwrite(str(p), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def test_decode_matches_original_transform(tmp_path):
    paths = _jpegs(tmp_path, 3)
    bank = decode_images(paths, chunk=2)
    assert bank.dtype == torch.uint8 and bank.shape == (3, 3, 256, 256)
    orig = transforms.Compose([transforms.ToPILImage(), transforms.ToTensor()])
    norm = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    for i, p in enumerate(paths):
        ref = orig(read_image(str(p)))
        assert torch.equal(to_unit_float(bank[i : i + 1])[0], ref)
        assert torch.equal(to_signed_float(bank[i : i + 1])[0], norm(ref))


def test_decode_errors_name_the_file(tmp_path):
    paths = _jpegs(tmp_path, 1, size=64)
    with pytest.raises(ImageDataError, match=r"000000.jpg: expected 256x256"):
        decode_images(paths)
    with pytest.raises(ImageDataError, match="image not found: .*nope.jpg"):
        decode_images([tmp_path / "nope.jpg"])


def test_iterate_batches_covers_index_once_and_is_seeded():
    idx = np.array([5, 7, 9, 11, 13])
    plain = [b.tolist() for b in iterate_batches(idx, 2)]
    assert plain == [[5, 7], [9, 11], [13]]
    a = torch.cat(list(iterate_batches(idx, 2, torch.Generator().manual_seed(1)))).tolist()
    b = torch.cat(list(iterate_batches(idx, 2, torch.Generator().manual_seed(1)))).tolist()
    assert a == b and sorted(a) == idx.tolist()
