"""`ohlora label`: the hand-labelling page over the current raw_images (see ohlora_core/labelling.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ohlora_core.cli.common import add_server_arguments, add_storage_arguments, current, layout
from ohlora_core.layout import StorageLayout, storage_root


class LabelFileRefused(ValueError):
    """--csv names a file this run must not write (the full-mode labels while the images are smoke images)."""


def label_file(given: str | None, where: StorageLayout) -> Path:
    """The label file to write: --csv, else the mode's own; never a full-mode file for smoke images."""
    if given is None:
        return where.labels_csv
    csv = Path(given)
    full_files = {StorageLayout(root, "full").labels_csv.resolve() for root in (where.root, storage_root(None))}
    if where.mode == "smoke" and csv.resolve() in full_files:
        raise LabelFileRefused(
            f"--csv {csv} is the full-mode label file, but these are smoke-mode images (random weights, not faces): "
            f"their labels must never reach the full pipeline. Leave --csv out (smoke labels go to "
            f"{where.labels_csv}) or label full-mode images (the real StyleGAN checkpoint, --mode full)"
        )
    return csv


def describe_file(csv: Path, mode: str) -> str:
    """Which file the page writes and what reads it, for the first lines the user sees."""
    if mode == "smoke":
        return (
            f"labels go to {csv} (smoke mode: the smoke pipeline does not read it — it uses stand-in labels; "
            "these labels are practice only)"
        )
    return f"labels go to {csv} (full mode: the file the hand_labels asset reads)"


def label_command(args: argparse.Namespace) -> int:
    from ohlora_core.artifacts import GenderQualityScores, RawImages
    from ohlora_core.cnn.labels import LabelError
    from ohlora_core.labelling import LabelStore, build_app
    from ohlora_core.local_server import LocalServerError, loopback_address, serve

    where = layout(args.storage, args.mode)
    try:
        loopback_address(args.host)  # before anything is read: a usage error is said first
        images = current(RawImages, where, "a storage with raw_images (--storage)")
        scores = where.current(GenderQualityScores) if where.has(GenderQualityScores) else None
        csv = label_file(args.csv, where)
        n_images = len(json.loads(images.manifest.read_text()))
        store = LabelStore(csv, n_images)
        app = build_app(images, store, expected=min(args.expected, n_images), scores=scores, mode=where.mode)

        def announce(url: str) -> None:
            print(f"labelling {n_images} images from {images.dir} ({where.mode} mode)")
            print(describe_file(csv, where.mode))
            print(f"open {url}  (Ctrl+C to stop)", flush=True)

        serve(app, args.host, args.port, announce=announce)
    except (LabelError, LabelFileRefused, LocalServerError) as exc:
        print(f"ohlora label: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    lab = sub.add_parser(
        "label",
        help="a local page for hand-labelling the generated images (gender, quality)",
        description="Serves the raw_images asset's faces on a keyboard-driven page (this machine "
        "only) and writes every label at once to the CSV the hand_labels asset reads. "
        "Exit status 2: a usage error (non-loopback --host, port in use, a broken or "
        "refused label file), said in one line.",
    )
    add_server_arguments(lab, port=8765)
    lab.add_argument("--expected", type=int, default=2000, help="labels wanted (the progress counter; default 2,000)")
    lab.add_argument(
        "--csv",
        help="label file (default: the mode's: <storage>/labels/synthesize_results_quality_and_"
        "gender.csv in full mode, <storage>/labels/smoke/... in smoke mode; the full-mode "
        "file is refused for smoke images)",
    )
    add_storage_arguments(lab)
    lab.set_defaults(func=label_command)
