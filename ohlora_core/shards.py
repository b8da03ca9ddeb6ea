"""Sharding a per-image stage over several devices: one worker process per device, inside one step.

`split` cuts a stage's work items (its aligned batches, in order) into contiguous shards of about equal
weight; `run` starts one spawned process per shard, each running a module-level `worker(payload, device,
emit)` that builds its own model on its device from a picklable recipe (a model is never pickled across),
does its batches and `emit`s one message per finished batch. The parent receives the messages and is the
only writer of the stage's ledger, so crash safety and "a rerun redoes exactly what is missing" are the
unsharded stage's; its progress lines count every shard's images.

Bytes do not depend on the sharding: batches are aligned to absolute indices (a batch's contents never
depend on which shard runs it), and every worker runs with the parent's CPU thread count, because CPU
kernels split their sums by thread count (the smoke generator's pixels change between 1 and 2 threads).

A worker's failure stops the others and is raised as `ShardError` naming the shard, its device and the
worker's message (its traceback as the cause; an OSError keeps its errno: `ShardOSError`). Ctrl-C or an
exception in the parent terminates the workers; a worker whose parent dies (SIGKILL included) exits by itself.
docs/sharding.md says why the stages fan out inside one step rather than over Dagster partitions.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
# CPU workers: N processes with the parent's thread count each share the cores, and OpenMP threads that spin
# while they wait take cores from the other workers (10 smoke images on 2 CPU shards here: 10.6 s spinning, 7.9 s
# passive). A spawned process reads its environment when it starts, before torch loads OpenMP.
CPU_WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
POLL_SECONDS = 0.2  # how often the parent looks for a worker that died without a word
STOP_SECONDS = 10.0  # how long a terminated worker may take to exit before it is killed


class ShardError(RuntimeError):
    """A shard's worker failed or died. A RuntimeError carrying the worker's message, so an out-of-memory or a
    transient CUDA fault in a worker reads as one (`device.is_out_of_memory`, `gpu.is_transient`)."""

    def __init__(self, message: str, shard: int) -> None:
        super().__init__(message)
        self.shard = shard


class ShardOSError(OSError, ShardError):
    """A worker's OSError, errno kept: a transient one (a shared volume that blinked) still reads as transient."""

    def __init__(self, message: str, shard: int, errno: int) -> None:
        OSError.__init__(self, errno, message)
        self.shard = shard


class ShardSettingError(ValueError):
    """`settings.shards` / `settings.shard_devices` do not describe a usable set of workers."""


class RemoteTraceback(Exception):
    """A worker's traceback, attached as the cause of its ShardError."""

    def __str__(self) -> str:
        return self.args[0]


# -- the split ----------------------------------------------------------------------------------------------------
def split(items: Sequence[T], shards: int, weight: Callable[[T], int] | None = None) -> list[list[T]]:
    """Cut `items` into min(shards, len(items)) contiguous, non-empty runs of about equal total weight (default:
    1 per item), in order; every item is in exactly one. Cut k falls where the running weight comes closest to
    k/shards of the total, so equal weights give shard sizes that differ by at most one item."""
    import bisect
    import itertools

    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    weights = [1 if weight is None else int(weight(item)) for item in items]
    if any(w < 0 for w in weights):
        raise ValueError("shard weights must be >= 0")
    n, m = len(items), min(shards, len(items))
    if not sum(weights):
        weights = [1] * n
    prefix, total = [0, *itertools.accumulate(weights)], sum(weights)
    cuts = [0]
    for k in range(1, m):
        lo, hi = cuts[-1] + 1, n - (m - k)  # every shard keeps at least one item
        at = min(max(bisect.bisect_left(prefix, k * total / m), lo), hi)
        if at > lo and abs(prefix[at - 1] * m - k * total) <= abs(prefix[at] * m - k * total):
            at -= 1  # the cut just before is as close or closer to this shard's share
        cuts.append(at)
    cuts.append(n)
    return [list(items[a:b]) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


# -- devices ------------------------------------------------------------------------------------------------------
def env_shards() -> int:
    """$OHLORA_SHARDS (default 1): the shard count a deployment is set up for, read by the settings' default and
    by the GPU request of the sharded steps' Kubernetes pods, so the two agree."""
    value = os.environ.get("OHLORA_SHARDS", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ShardSettingError(f"OHLORA_SHARDS={value!r}: set it to a whole number of shards, 1 or more")
    return int(value)


def devices_for(shards: int, shard_devices: Sequence[str] | None, run_device: str) -> list[str]:
    """One device per shard: `shard_devices` as given, else cuda:0..N-1 for a CUDA run and the run's device N
    times otherwise. Every shard device has the run's device type (the recipe records the run's device, so a
    CUDA shard in a CPU run would mix bytes of two kinds), and no CUDA device takes two workers."""
    if shards < 1:
        raise ShardSettingError(f"settings.shards={shards}: use 1 (no workers) or more")
    if shard_devices is None:
        kind = run_device.split(":")[0]
        return [f"cuda:{k}" for k in range(shards)] if kind == "cuda" else [run_device] * shards
    devices = [str(d) for d in shard_devices]
    if len(devices) != shards:
        raise ShardSettingError(
            f"settings.shard_devices lists {len(devices)} device(s) but settings.shards={shards}; "
            f"list one device per shard, or leave shard_devices unset"
        )
    kind = run_device.split(":")[0]
    other = [d for d in devices if d.split(":")[0] != kind]
    if other:
        raise ShardSettingError(
            f"settings.shard_devices has {other} but the run's device is {run_device!r}; every "
            f"shard must run on the same kind of device as settings.device"
        )
    named = [d if ":" in d else f"{d}:0" for d in devices]
    twice = sorted({d for d in named if named.count(d) > 1})
    if kind == "cuda" and twice:
        raise ShardSettingError(f"settings.shard_devices names {twice} more than once: one worker per GPU")
    return devices


def problems(shards: int, shard_devices: Sequence[str] | None, run_device: str) -> list[str]:
    """What makes these shard settings unusable on this machine, as messages (preflight): the settings
    themselves, each shard device checked as `settings.device` is, and no more CUDA shards than devices."""
    from ohlora_core.device import DeviceError, check_device

    if shards == 1 and shard_devices is None:
        return []
    try:
        devices = devices_for(shards, shard_devices, run_device)
    except ShardSettingError as exc:
        return [str(exc)]
    out = []
    for device in dict.fromkeys(devices):
        try:
            check_device(
                device,
                "settings.shard_devices"
                if shard_devices is not None
                else f"settings.shards={shards} (device {device})",
            )
        except DeviceError as exc:
            out.append(str(exc))
    if not out and run_device.startswith("cuda"):
        import torch

        if shards > torch.cuda.device_count():
            out.append(
                f"settings.shards={shards}, but this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"use at most that many shards"
            )
    return out


# -- running the workers ------------------------------------------------------------------------------------------
def run(
    worker: Callable[[Any, str, Callable[[Any], None]], Any],
    jobs: Sequence[tuple[str, Any]],
    on_message: Callable[[int, Any], None],
    *,
    name: str = "shard",
) -> list[Any]:
    """Run `worker(payload, device, emit)` for each (device, payload) of `jobs` in its own spawned process and
    return their results in job order. Each `emit(message)` reaches `on_message(shard, message)` in this
    process, in the order that worker sent them. `worker` and the payloads must be picklable (module-level
    functions, plain data, recipes); a payload describes the shard's work, never holds a model."""
    import torch

    ctx = multiprocessing.get_context("spawn")
    inbox = ctx.Queue()
    threads = torch.get_num_threads()  # the workers' too: CPU results depend on it (module doc)
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(worker, k, device, payload, inbox, threads),
            daemon=True,
            name=f"ohlora-{name}-shard-{k}",
        )
        for k, (device, payload) in enumerate(jobs)
    ]
    try:
        for p, (device, _) in zip(procs, jobs, strict=True):
            with _environment(CPU_WORKER_ENV if device.startswith("cpu") else {}):
                p.start()
        return _collect(procs, [device for device, _ in jobs], inbox, on_message, name)
    finally:
        _stop(procs)
        inbox.close()


def _collect(procs, devices: list[str], inbox, on_message, name: str) -> list[Any]:
    results: list[Any] = [None] * len(procs)
    pending, silent = set(range(len(procs))), set()
    while pending:
        try:
            kind, k, body = inbox.get(timeout=POLL_SECONDS)
        except queue_module.Empty:
            # a worker that exited without its last word: its messages were flushed before it exited, so one more
            # empty poll after seeing it gone means it died (killed, out of host memory, a crash in native code)
            dead = [k for k in pending if procs[k].exitcode is not None]
            gone = [k for k in dead if k in silent]
            if gone:
                k = gone[0]
                raise ShardError(
                    f"{name}: shard {k} of {len(procs)} (device {devices[k]}) died with exit code "
                    f"{procs[k].exitcode} before finishing its images",
                    k,
                ) from None
            silent.update(dead)
            continue
        if kind == "message":
            on_message(k, body)
        elif kind == "done":
            results[k] = body
            pending.discard(k)
        else:
            message, remote, errno = body
            message = f"{name}: shard {k} of {len(procs)} (device {devices[k]}) failed: {message}"
            error = ShardError(message, k) if errno is None else ShardOSError(message, k, errno)
            raise error from RemoteTraceback(remote)
    return results


def _stop(procs) -> None:
    """Terminate the workers still running (after an error or an interrupt in the parent) and reap them all."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        if p.pid is None:
            continue  # never started
        p.join(STOP_SECONDS)
        if p.is_alive():
            p.kill()
            p.join()


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """`values` (those not set already) in os.environ while a worker starts: it copies the environment."""
    values = {key: value for key, value in values.items() if key not in os.environ}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker_main(worker, k: int, device: str, payload, inbox, threads: int) -> None:
    """A worker process: the parent decides about Ctrl-C (it terminates the workers), a dead parent ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    if "torch" in sys.modules:  # the worker's module loaded it
        sys.modules["torch"].set_num_threads(threads)
    else:  # torch loads later, if at all, and takes its thread count from the environment then
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        result = worker(payload, device, lambda message: inbox.put(("message", k, message)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent, which raises it
        errno = exc.errno if isinstance(exc, OSError) else None
        inbox.put(("error", k, (f"{type(exc).__name__}: {exc}", traceback.format_exc(), errno)))
    else:
        inbox.put(("done", k, result))
    inbox.close()
    inbox.join_thread()  # everything sent is in the pipe before the process exits


def _exit_with_parent() -> None:
    """Exit as soon as the parent process is gone, however it ended: its sentinel closes when it dies, even by
    SIGKILL, and a worker left running would keep writing files and holding its GPU for no one."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
