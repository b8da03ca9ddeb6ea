"""`ohlora generate`: images from a fine-tuned generator (or the latent directions) for requested values.

    ohlora generate --version v3 --z-csv FILE --eyes 1.8 --mouth 1.6 --pose -1.2 -n 20 --seed 0 --out DIR
    ohlora generate --method directions --eyes 1.8 --mouth 1.6 --pose -1.2 --out DIR

Without `--checkpoint` the generator of the materialized `stylegan_finetune_<version>` asset is used
(`<storage>/artifacts/<mode>/stylegan_finetune_<version>/current/`; storage from `--storage`,
`OHLORA_STORAGE` or the repository's `storage/`). `--method directions` moves the pretrained
generator's w along the `latent_directions` asset's directions instead (no fine-tuned generator).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ohlora_core.cli.common import current, layout

PROPERTIES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean", "background_std")


def _pretrained_generator(args, where, device: str):
    """The generator the directions were fitted with: --generator, else the one latent_w recorded."""
    import json

    from ohlora_core.artifacts import LatentW
    from ohlora_core.stylegan import load_generator, smoke_generator

    if args.generator:
        return load_generator(args.generator, device=device), args.generator
    weights = json.loads((current(LatentW, where, "--generator FILE").dir / "recipe.json").read_text())["weights"]
    if weights.startswith("smoke_generator(seed="):
        return smoke_generator(int(weights.split("=")[1].rstrip(")"))).to(device), weights
    path = weights.split(" (sha256 ")[0]
    return load_generator(path, device=device), path


def generate_command(args: argparse.Namespace) -> int:
    import torch

    from ohlora_core.finetune.generate import GenerationRequestError, default_z, generate, load_z_csv, property_values
    from ohlora_core.io import CheckpointError
    from ohlora_core.stylegan import load_generator

    from ohlora_core.artifacts import FINETUNES, LatentDirections
    from ohlora_core.directions import load_directions
    from ohlora_core.finetune.generate import generate_with_directions

    where = layout(args.storage, args.mode)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        z0 = load_z_csv(args.z_csv) if args.z_csv else default_z(args.seed)
        values = property_values([(p, getattr(args, p)) for p in PROPERTIES])
        common = dict(n=args.n, noise=args.noise, seed=args.seed, batch_size=args.batch, device=device)
        if args.method == "directions":
            path = Path(args.directions) if args.directions else \
                current(LatentDirections, where, "--directions FILE").directions
            G, source = _pretrained_generator(args, where, device)
            paths = generate_with_directions(G, load_directions(path), z0, values, args.out, **common)
            what = f"directions {path} on {source}"
        else:
            checkpoint = Path(args.checkpoint) if args.checkpoint else \
                current(FINETUNES[args.version], where, "--checkpoint FILE").generator
            G = load_generator(checkpoint, device=device)
            if not G.label_size:
                raise GenerationRequestError(f"{checkpoint} is an unconditional generator; pass a fine-tuned one")
            paths = generate(G, args.version, z0, values, args.out, source=str(checkpoint), **common)
            what = f"{args.version}, {checkpoint}"
    except (GenerationRequestError, CheckpointError, ValueError) as exc:
        print(f"ohlora generate: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} images to {args.out} ({what}; " + ", ".join(f"{k} {v:g}" for k, v in values.items()) + ")")
    return 0


def add_parser(sub) -> None:
    gen = sub.add_parser("generate", help="images from a fine-tuned generator for requested property values",
                         description="n images around one z (row 0 = z, rows 1.. = z + noise * N(0, 1)), all with "
                                     "the requested property values (normalised scores; others 0). With no "
                                     "value given: eyes 1.8, mouth 1.6, pose -1.2, as the original's final inference.")
    gen.add_argument("--method", default="finetuned", choices=("finetuned", "directions"),
                     help="finetuned: a label-conditioned generator (--version); directions: the pretrained "
                          "generator with w moved along the latent_directions asset's directions")
    gen.add_argument("--version", default="v3", choices=("v1", "v2", "v3", "v4"),
                     help="which fine-tuned generator (default v3, the version the original adopted)")
    gen.add_argument("--directions", help="directions file (default: the latent_directions asset's)")
    gen.add_argument("--generator", help="pretrained generator for --method directions (default: the one latent_w used)")
    gen.add_argument("--checkpoint", help="a generator file (the original's bare state_dict or a genforce layout)")
    gen.add_argument("--z-csv", help="z file, first row used (the original's test_z_vector_*.csv); default: from --seed")
    gen.add_argument("-n", type=int, default=20, help="images (default 20)")
    gen.add_argument("--noise", type=float, default=0.3, help="std of the noise added to z for images 1.. (default 0.3)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the noise (and of z without --z-csv)")
    for p in PROPERTIES:
        gen.add_argument(f"--{p.replace('_', '-')}", dest=p, type=float, default=None, help=f"{p} value")
    gen.add_argument("--out", required=True, help="output folder (000000.jpg, ...)")
    gen.add_argument("--batch", type=int, default=4, help="batch size (default 4, as the original)")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    gen.add_argument("--storage", help="storage root (default: $OHLORA_STORAGE or the repository's storage/)")
    gen.add_argument("--mode", default="auto", choices=("auto", "full", "smoke"),
                     help="which artifacts to take the generator from (auto: full if present, else smoke)")
    gen.set_defaults(func=generate_command)
