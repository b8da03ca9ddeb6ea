"""What every `ohlora` command shares: the storage root and mode, and an asset's current outputs."""
from __future__ import annotations

from ohlora_core.layout import StorageLayout, resolve_mode, storage_root


def layout(storage: str | None, mode: str) -> StorageLayout:
    """The storage layout a command reads: --storage (else $OHLORA_STORAGE, else the repository's storage/)
    and --mode (auto: full when the real StyleGAN checkpoint is present, else smoke — the pipeline's rule)."""
    root = storage_root(storage)
    return StorageLayout(root, resolve_mode(mode, root))


def current(files_cls, where: StorageLayout, instead: str):
    """The current files of an asset, or SystemExit saying what to materialize (or pass instead)."""
    if where.has(files_cls):
        return where.current(files_cls)
    raise SystemExit(f"no materialized {files_cls.NAME} under {where.artifacts} ({where.mode} mode); materialize it"
                     + (f" or pass {instead}" if instead else ""))

