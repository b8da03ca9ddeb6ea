"""One `ohlora studio` update on this machine: what the server does per slider step (generator forward + property
CNN + JPEG), through the studio's own code (`Studio.render`).

    python bench/studio.py [--device cpu] [--reps 7]
    python bench/studio.py --storage DIR [--mode full] [--method v3] [--device cuda]

Without --storage, a temporary smoke storage is made with a v3 generator of the real size (genforce's 256x256
StyleGAN, w 512, up to 512 feature maps, 7 labels; seeded random weights: the cost of a forward does not depend on
the values) and the property-score CNN, so the figure is the one a user gets from a real v3 on this machine. The
first render (which loads the models) is reported apart; then, --reps times each and every call with the eyes slider
one step further (as a moving slider): the image alone (what the page asks for while a slider moves), the
measurement of that image (what it asks for once the controls rest) and both in one request. Median and min..max
are printed; the device and torch's thread count with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohlora_core.layout import StorageLayout  # noqa: E402


def make_storage(root: Path) -> Path:
    """A smoke storage with a full-size v3 generator and the property-score CNN (seeded random weights)."""
    import torch

    from ohlora_core.artifacts import PropertyScoreCnn, StyleganFinetuneV3
    from ohlora_core.cnn.models import PropertyScoreCNN
    from ohlora_core.io import atomic_torch_save
    from ohlora_core.store import RecipeDir
    from ohlora_core.stylegan import smoke_generator

    def materialize(cls, write):
        recipe = RecipeDir(root / "artifacts" / "smoke" / cls.NAME, {"bench": cls.NAME})
        files = cls(recipe.open())
        recipe.promote([write(files)])

    def v3(files):
        atomic_torch_save(files.generator, smoke_generator(0, label_size=7, label_embed_dim=24).state_dict())
        return files.generator.name

    def cnn(files):
        torch.manual_seed(0)
        atomic_torch_save(files.checkpoint, PropertyScoreCNN().state_dict())
        return files.checkpoint.name

    materialize(StyleganFinetuneV3, v3)
    materialize(PropertyScoreCnn, cnn)
    return root


def spread(seconds: list[float]) -> str:
    return (
        f"median {statistics.median(seconds):.3f} s (min {min(seconds):.3f} .. max {max(seconds):.3f}, "
        f"n={len(seconds)})"
    )


def timed(fn, reps: int) -> list[float]:
    out = []
    for k in range(reps):
        start = time.perf_counter()
        fn(k)
        out.append(time.perf_counter() - start)
    return out


def bench(where: StorageLayout, method: str, device: str, reps: int) -> None:
    import torch

    from ohlora_core.studio import Studio, parse_spec

    studio = Studio(where, device=device)  # nothing is exported

    def spec(k: int):
        """The k-th step of the eyes slider (0.1 per step from -1.8), mouth and pose at the original's values."""
        values = {"eyes": round(-1.8 + 0.1 * (k % 37), 1), "mouth": 1.6, "pose": -1.2}
        return parse_spec({"methods": [method], "values": values, "z": {"kind": "seed"}, "seed": 0}, "bench")

    print(
        f"studio update, method {method} ({where.mode} storage {where.root}), device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    first = timed(lambda k: studio.render(spec(0)), 1)
    print(f"first render (loads the models, measures): {first[0]:.3f} s")
    # a new slider value per step (an image kept from an earlier call would cost no forward), measured right after
    # its image as the page does
    images, measures = [], []
    for k in range(reps):
        images += timed(lambda _: studio.render(spec(1 + k), measure=False), 1)
        measures += timed(lambda _: studio.measure(spec(1 + k)), 1)
    whole = timed(lambda k: studio.render(spec(1 + reps + k)), reps)
    print(f"image (generator forward + JPEG; each step of a moving slider): {spread(images)}")
    print(f"measurement (property CNN on the image shown; once the slider rests): {spread(measures)}")
    print(f"one complete update (image + measurement, one request): {spread(whole)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", help="a storage with the method's assets (default: a temporary one, see above)")
    parser.add_argument("--mode", default="smoke", choices=("smoke", "full"))
    parser.add_argument("--method", default="v3", choices=("v1", "v2", "v3", "v4", "directions"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    if args.storage:
        bench(StorageLayout(Path(args.storage).resolve(), args.mode), args.method, args.device, args.reps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = make_storage(Path(tmp))
        print(f"(temporary storage made in {time.perf_counter() - start:.1f} s)")
        bench(StorageLayout(root, "smoke"), args.method, args.device, args.reps)


if __name__ == "__main__":
    main()
