"""`ohlora` — the command line of the pipeline's outputs (installed by `pip install -e .`).

    ohlora generate ...      images from a fine-tuned generator or the latent directions (cli/generate.py)
    ohlora label ...         the hand-labelling page over raw_images (cli/label.py)

Each command lives in its own module with its `add_parser(subparsers)`; shared storage and mode
resolution is in `cli/common.py`.
"""
from __future__ import annotations

import argparse
import sys

from ohlora_core.cli import generate, label

COMMANDS = (generate, label)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohlora", description="Oh-LoRA pipeline outputs from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
