"""segmentation_maps through Dagster: results follow the images' content, never a file's existence.

The reported failure: after a new seed (or a replaced image or checkpoint) the maps stayed those of
the old images because their files existed. Here a seed change recomputes them, and the result is
byte-identical to a from-scratch run with the new seed. The filtered set is written directly (the
CNN stages in between are not what is tested).
"""

import json

import dagster as dg
import pandas as pd

from ohlora_core.artifacts import FilteredImages, SegmentationMaps
from ohlora_core.io import atomic_write_csv
from ohlora_core.layout import StorageLayout
from ohlora_core.store import RecipeDir
from tests.dagster_support import materialize, meta

KEPT = [0, 1, 3]


def _filtered(root):
    stage = RecipeDir(StorageLayout(root, "smoke").artifact_dir("filtered_images"), {"test": "images 0, 1, 3"})
    files = FilteredImages(stage.open())
    atomic_write_csv(files.table, pd.DataFrame({"img_no": KEPT}))
    stage.promote([files.table.name])


def _run(root, instance, seed):
    settings = {"n_images": 4, "batch_size": 2, "seed": seed}
    materialize("smoke", ["latent_codes", "raw_images"], root, instance, **settings)
    _filtered(root)
    return meta(materialize("smoke", ["segmentation_maps"], root, instance, **settings), "smoke", "segmentation_maps")


def _files(root):
    seg = StorageLayout(root, "smoke").current(SegmentationMaps)
    return {p.name: p.read_bytes() for p in sorted(seg.results_dir.iterdir())}


def test_a_new_seed_recomputes_the_maps_and_equals_a_fresh_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with dg.instance_for_test() as instance:
        assert _run(a, instance, seed=0)["parsed_now"] == 3
        before = _files(a)
        recipe = json.loads((StorageLayout(a, "smoke").current(SegmentationMaps).dir / "recipe.json").read_text())
        assert recipe["item"]["device"] == "cpu" and recipe["item"]["batch_size"] == 2  # CPU/GPU maps never mix

        assert _run(a, instance, seed=0)["parsed_now"] == 0 and _files(a) == before  # nothing changed: nothing redone
        assert _run(a, instance, seed=1)["parsed_now"] == 3
        after = _files(a)
        _run(b, instance, seed=1)
    assert sorted(after) == sorted(before) and after["face_000000.png"] != before["face_000000.png"]
    assert after == _files(b)
