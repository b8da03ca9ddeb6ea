"""Seeds derived from one run seed: every random choice is a pure function of (seed, what, where)."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed that is a pure function of `seed` and `keys` (strings hashed with crc32)."""
    words = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence([int(seed), *words]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str) -> Iterator[None]:
    """Seed torch's global RNG (CPU and, if used, the CUDA device) inside a fork_rng scope.

    Model init and dropout draw from the global RNG; forking keeps the caller's RNG state untouched and
    makes the result independent of anything seeded elsewhere.
    """
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
