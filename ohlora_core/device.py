"""Devices: checking that one exists here, and running batched work on a GPU that may run out of memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def halving_batches(
    run: Callable[[int], T], batch_size: int, log: Callable[[str], None] | None = None
) -> tuple[T, int, list[int]]:
    """`run(batch_size)`; when it runs out of GPU memory, free the cache and run it again at half the
    batch (down to 1). Returns (result, the batch size that worked, the sizes that failed).

    `run` must make its result from scratch for the batch size it is given (e.g. in that batch size's
    own recipe folder), so the result equals a run started at the smaller batch."""
    import torch

    failed: list[int] = []
    while True:
        try:
            return run(batch_size), batch_size, failed
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(exc) or batch_size <= 1:
                raise
            failed.append(batch_size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size //= 2
            if log:
                log(f"out of GPU memory at batch {failed[-1]}: retrying at batch {batch_size}")


class DeviceError(ValueError):
    """A device name that is not a torch device, or a device this machine does not have."""


def check_device(device: str, setting: str = "device") -> None:
    """`device` names a torch device that exists here (or is `auto`), else DeviceError says what to use;
    `setting` names where the value came from (a settings field, a CLI flag) in the message."""
    if device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"{setting}={device!r} is not a torch device ({exc}); use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{setting}={device!r}, but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"{setting}={device!r}, but this machine has {torch.cuda.device_count()} "
                f"CUDA device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type != "cpu" and not getattr(torch.backends, dev.type, None):
        raise DeviceError(f"{setting}={device!r} is not supported here; use auto, cpu or cuda")


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu; anything else as given (check it with check_device)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
