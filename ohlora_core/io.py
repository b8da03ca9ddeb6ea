"""Atomic file writes and strict checkpoint loading.

Every artifact is written to a temporary file in the destination folder and then
renamed over the final name (`os.replace` is atomic on POSIX and Windows), so a
reader never sees a half-written file and a crashed run leaves only `*.tmp-*`
leftovers, which `clean_partial_files` removes on the next run.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

TMP_MARKER = ".tmp-"
# mkstemp creates 0600 files; finished artifacts get the mode a plain open() would give them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` on success.

    A rewrite keeps the mode of the file it replaces (a 0600 label file stays private); a new file gets
    FILE_MODE, what a plain open() under the process's umask gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + TMP_MARKER, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not exc.filename:  # write() errors name no file
            raise OSError(exc.errno, f"{exc.strerror} while writing {path}", str(path)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return FILE_MODE


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: str | os.PathLike, df, **to_csv_kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically (index off unless asked)."""
    to_csv_kwargs.setdefault("index", False)
    atomic_write_text(path, df.to_csv(**to_csv_kwargs))


def atomic_save_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def clean_partial_files(folder: str | os.PathLike) -> int:
    """Delete temp files a crashed run left behind; return how many."""
    folder = Path(folder)
    if not folder.exists():
        return 0
    stale = [p for p in folder.iterdir() if TMP_MARKER in p.name]
    for p in stale:
        p.unlink()
    return len(stale)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of_files(paths) -> str:
    """One digest for several files: sha256 of their sha256 hex digests, in the given order."""
    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or has the wrong layout."""


def load_checkpoint(path: str | os.PathLike) -> Mapping:
    """`torch.load(path, weights_only=True)` with an error that names the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); expected a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors carry no file name
        raise CheckpointError(
            f"cannot load checkpoint {path} with weights_only=True: {type(exc).__name__}: {exc}"
        ) from exc


def state_dict_in(checkpoint, source: str, key: str | None = None, what: str = "a state_dict") -> dict:
    """`checkpoint[key]` (or, without that key, the checkpoint itself) as a {name: tensor} dict, or
    CheckpointError naming `source`, what was expected (`what`) and what was found instead."""
    import torch

    def describe(obj) -> str:
        if isinstance(obj, Mapping):
            return f"a dict with keys {sorted(map(str, obj))[:10]}"
        return f"a {type(obj).__name__}" + (f" of shape {tuple(obj.shape)}" if isinstance(obj, torch.Tensor) else "")

    sd = checkpoint.get(key, checkpoint) if key and isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        where = f"{source} [{key!r}]" if sd is not checkpoint else source
        raise CheckpointError(f"{where}: expected {what} (names -> tensors), found {describe(sd)}")
    return dict(sd)


def load_state_dict_strict(module, state_dict: Mapping, source: str) -> None:
    """`module.load_state_dict(state_dict, strict=True)` with a readable error.

    The error names `source` (file and key) and lists missing / unexpected keys
    and shape mismatches, instead of PyTorch's single long line.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shapes:
        lines = [f"{source} does not match {type(module).__name__}'s layout:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                lines.append(
                    f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else "")
                )
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)
