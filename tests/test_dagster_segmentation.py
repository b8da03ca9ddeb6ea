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
from ohlora_dagster.assets.generation import latent_codes, raw_images
from ohlora_dagster.assets.segmentation import segmentation_maps
from ohlora_dagster.resources import OhloraSettings

KEPT = [0, 1, 3]


def _settings(root, seed):
    return OhloraSettings(storage_root=str(root), mode="smoke", device="cpu", n_images=4, batch_size=2, seed=seed)


def _filtered(settings):
    stage, files = settings.stage(FilteredImages, {"test": "images 0, 1, 3"})
    atomic_write_csv(files.table, pd.DataFrame({"img_no": KEPT}))
    stage.promote([files.table.name])


def _run(settings, instance):
    dg.materialize([latent_codes, raw_images], resources={"settings": settings}, instance=instance)
    _filtered(settings)
    result = dg.materialize([segmentation_maps], resources={"settings": settings}, instance=instance)
    return result.asset_materializations_for_node("segmentation_maps")[0].metadata


def _files(settings):
    seg = settings.current(SegmentationMaps)
    return {p.name: p.read_bytes() for p in sorted(seg.results_dir.iterdir())}


def test_a_new_seed_recomputes_the_maps_and_equals_a_fresh_run(tmp_path):
    with dg.instance_for_test() as instance:
        old = _settings(tmp_path / "a", seed=0)
        assert _run(old, instance)["parsed_now"].value == 3
        before = _files(old)
        recipe = json.loads((old.current(SegmentationMaps).dir / "recipe.json").read_text())
        assert recipe["item"]["device"] == "cpu" and recipe["item"]["batch_size"] == 2  # CPU/GPU maps never mix

        again = _run(old, instance)  # nothing changed: nothing redone
        assert again["parsed_now"].value == 0 and _files(old) == before

        new = _settings(tmp_path / "a", seed=1)
        assert _run(new, instance)["parsed_now"].value == 3
        after = _files(new)
        fresh = _settings(tmp_path / "b", seed=1)
        _run(fresh, instance)
    assert sorted(after) == sorted(before) and after["face_000000.png"] != before["face_000000.png"]
    assert after == _files(fresh)
