"""`ohlora studio`: ask for a face with sliders, see it and how well the request was met (ohlora_core/studio.py).

    ohlora studio [--storage DIR] [--mode auto|full|smoke] [--port 8766] [--host 127.0.0.1] [--device auto]
                  [--exports DIR]

Same conventions as `ohlora label`: loopback only, the shared local-server guard, prints its URL; a usage error
(non-loopback --host, port in use, a device this machine lacks, a storage without any generator) is one line and
exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from ohlora_core.cli.common import add_server_arguments, add_storage_arguments, layout


class NothingToShow(ValueError):
    """No method of the report is materialized in this storage and mode."""


def describe(studio) -> list[str]:
    """The first lines the user reads: what is served, what is missing and how to get it, where exports go."""
    methods = studio.methods().values()
    ready = [m.name for m in methods if m.available]
    missing = [f"{m.name} ({m.reason})" for m in methods if not m.available]
    lines = [f"studio over {studio.where.artifacts} ({studio.where.mode} mode, {studio.device}): {', '.join(ready)}"]
    if missing:
        lines.append(f"not available: {'; '.join(missing)}")
    if studio.where.mode == "smoke":
        lines.append("smoke mode: random weights — these images are noise, not faces")
    lines.append(f"exports go to {studio.exports}")
    return lines


def check_something_to_show(studio) -> None:
    methods = studio.methods().values()
    if not any(m.available for m in methods):
        reasons = "; ".join(f"{m.name}: {m.reason}" for m in methods)
        raise NothingToShow(
            f"no generator to show under {studio.where.artifacts} ({studio.where.mode} mode): "
            f"{reasons}. Materialize one, or pass --storage / --mode where one is"
        )


def studio_command(args: argparse.Namespace) -> int:
    from ohlora_core.device import DeviceError, check_device, resolve_device
    from ohlora_core.local_server import LocalServerError, loopback_address, serve
    from ohlora_core.studio import Studio, build_app

    try:
        loopback_address(args.host)  # a usage error is said before anything is read
        check_device(args.device, "--device")
        where = layout(args.storage, args.mode)
        studio = Studio(where, device=resolve_device(args.device), exports=args.exports)
        check_something_to_show(studio)

        def announce(url: str) -> None:
            for line in describe(studio):
                print(line)
            print(f"open {url}  (Ctrl+C to stop)", flush=True)

        serve(build_app(studio), args.host, args.port, announce=announce)
    except (DeviceError, LocalServerError, NothingToShow) as exc:
        print(f"ohlora studio: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    studio = sub.add_parser(
        "studio",
        help="a local page: ask for a face with sliders, see it and how well the request was met",
        description="Serves a page (this machine only) with one slider per property of the chosen "
        "generator (fine-tuned v1..v4, or the latent directions), the image, the "
        "property CNN's measured values against the requested ones, the method's "
        "figures from the latest controllability report, methods side by side, a "
        "variation strip, and export (images + request.json, reproducible by "
        "`ohlora generate`). Exit status 2: a usage error, said in one line.",
    )
    add_server_arguments(studio, port=8766)
    studio.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1 ...")
    studio.add_argument(
        "--exports",
        help="folder for exports (default <storage>/exports/<mode>/); each export is a new studio-<time>/ folder in it",
    )
    add_storage_arguments(studio)
    studio.set_defaults(func=studio_command)
