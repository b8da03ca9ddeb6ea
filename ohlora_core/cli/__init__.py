"""`ohlora` — the command line of the pipeline's outputs (installed by `pip install -e .`).

    ohlora generate ...      images from a fine-tuned generator or the latent directions (cli/generate.py)
    ohlora label ...         the hand-labelling page over raw_images (cli/label.py)
    ohlora studio ...        sliders, the image and how well the request was met (cli/studio.py)

Each command lives in its own module with its `add_parser(subparsers)`; shared storage and mode
resolution is in `cli/common.py`.
"""

from __future__ import annotations

import argparse
import sys

from ohlora_core.cli import generate, label, studio

COMMANDS = (generate, label, studio)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohlora", description="Oh-LoRA pipeline outputs from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for command_parser in sub.choices.values():
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # the command's own usage, not the top-level one: the flag is wrong for that command
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
