"""What every `ohlora` command shares: the storage root and mode, and an asset's current outputs."""

from __future__ import annotations

from ohlora_core.layout import StorageLayout, resolve_mode, storage_root


class UsageError(ValueError):
    """A request the command cannot answer as given (a missing asset or file): exit status 2, one line."""


STORAGE_HELP = "storage root (default: $OHLORA_STORAGE or the repository's storage/)"
MODE_HELP = "which artifacts (auto: full if the real StyleGAN checkpoint is present, else smoke)"


def add_storage_arguments(parser, mode_default: str | None = "auto") -> None:
    """--storage and --mode, as every command reads them (`layout`)."""
    parser.add_argument("--storage", help=STORAGE_HELP)
    parser.add_argument("--mode", default=mode_default, choices=("auto", "full", "smoke"), help=MODE_HELP)


def add_server_arguments(parser, port: int) -> None:
    """--port and --host of a local page; the host is checked (loopback only) by ohlora_core.local_server."""
    parser.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to bind: 127.0.0.1 (default), localhost or ::1; others are refused",
    )


def layout(storage: str | None, mode: str) -> StorageLayout:
    """The storage layout a command reads: --storage (else $OHLORA_STORAGE, else the repository's storage/)
    and --mode (auto: full when the real StyleGAN checkpoint is present, else smoke — the pipeline's rule)."""
    root = storage_root(storage)
    return StorageLayout(root, resolve_mode(mode, root))


def require_current(files_cls, where: StorageLayout, instead: str):
    """The current files of an asset, or UsageError saying what to materialize (or pass instead)."""
    from ohlora_core.store import MissingArtifact

    if where.has(files_cls):
        try:
            return where.current(files_cls)
        except MissingArtifact as exc:  # a `current` link to an incomplete or removed folder
            raise UsageError(f"{exc}" + (f", or pass {instead}" if instead else "")) from None
    raise UsageError(
        f"no materialized {files_cls.NAME} under {where.artifacts} ({where.mode} mode); materialize it"
        + (f" or pass {instead}" if instead else "")
    )


def current(files_cls, where: StorageLayout, instead: str):
    """`require_current`, ending the command with the message (SystemExit) when the asset is missing."""
    try:
        return require_current(files_cls, where, instead)
    except UsageError as exc:
        raise SystemExit(str(exc)) from None
