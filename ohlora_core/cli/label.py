"""`ohlora label`: the hand-labelling page over the current raw_images (see ohlora_core/labelling.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ohlora_core.cli.common import current, layout


def label_command(args: argparse.Namespace) -> int:
    import uvicorn

    from ohlora_core.artifacts import GenderQualityScores, RawImages
    from ohlora_core.labelling import LabelStore, build_app

    where = layout(args.storage, args.mode)
    images = current(RawImages, where, "a storage with raw_images (--storage)")
    scores = where.current(GenderQualityScores) if where.has(GenderQualityScores) else None
    csv = Path(args.csv) if args.csv else where.labels_csv
    n_images = len(json.loads(images.manifest.read_text()))
    store = LabelStore(csv, n_images)
    app = build_app(images, store, expected=min(args.expected, n_images), scores=scores)
    print(f"labelling {n_images} images from {images.dir}; labels in {csv}")
    print(f"open http://{args.host}:{args.port}/  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_parser(sub) -> None:
    lab = sub.add_parser("label", help="a local page for hand-labelling the generated images (gender, quality)",
                         description="Serves the raw_images asset's faces on a keyboard-driven page and writes "
                                     "every label at once to the CSV the hand_labels asset reads.")
    lab.add_argument("--port", type=int, default=8765)
    lab.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    lab.add_argument("--expected", type=int, default=2000, help="labels wanted (the progress counter; default 2,000)")
    lab.add_argument("--csv", help="label file (default: the mode's: <storage>/labels/synthesize_results_quality_and_gender.csv in full mode, <storage>/labels/smoke/... in smoke mode)")
    lab.add_argument("--storage", help="storage root (default: $OHLORA_STORAGE or the repository's storage/)")
    lab.add_argument("--mode", default="auto", choices=("auto", "full", "smoke"))
    lab.set_defaults(func=label_command)
