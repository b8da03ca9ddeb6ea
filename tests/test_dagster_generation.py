"""Generation assets through Dagster on a real (temporary, SQLite) instance."""
import json

import dagster as dg
import pytest

from ohlora_dagster.assets.generation import latent_codes, raw_images
from ohlora_dagster.resources import OhloraSettings


def test_settings_resolve_mode_paths_and_counts(tmp_path):
    s = OhloraSettings(storage_root=str(tmp_path), mode="auto", device="cpu")
    assert s.resolved_mode == "smoke" and s.image_count == 40
    assert s.epoch_cap(None) == 2 and s.epoch_cap(7) == 7
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "stylegan_celeba_partial256.pth").write_bytes(b"x")
    assert s.resolved_mode == "full" and s.image_count == 10_000 and s.labelled_count == 2_000
    assert s.epoch_cap(None) is None and s.epoch_cap(7) == 7
    assert s.artifact_dir("raw_images") == tmp_path / "artifacts" / "full" / "raw_images"
    with pytest.raises(FileNotFoundError, match=r"FaceXFormer .* not found at .*model\.pt\. Put it there"):
        s.require_file(s.facexformer_checkpoint, "FaceXFormer checkpoint")

    def smoke_model(seed):
        return ("random", seed)

    model, weights_id = s.load_model(smoke_model, lambda p: ("loaded", p.name), s.stylegan_checkpoint, "StyleGAN")
    assert model == ("loaded", "stylegan_celeba_partial256.pth")
    assert weights_id.endswith("(sha256 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881)")
    smoke = OhloraSettings(storage_root=str(tmp_path), mode="smoke", seed=3)
    assert smoke.load_model(smoke_model, None, "", "") == (("random", 3), "smoke_model(seed=3)")


def test_generation_assets_materialize_and_rerun_is_a_no_op(tmp_path):
    settings = OhloraSettings(storage_root=str(tmp_path), mode="smoke", device="cpu", n_images=6, batch_size=4)
    with dg.instance_for_test() as instance:
        first = dg.materialize([latent_codes, raw_images], resources={"settings": settings}, instance=instance)
        assert first.success
        meta = first.asset_materializations_for_node("raw_images")[0].metadata
        assert meta["count"].value == 6 and meta["generated_now"].value == 6
        assert meta["mode"].value == "smoke" and "NOT real faces" in meta["weights"].value
        assert meta["preview"].value.startswith("![first images](data:image/png;base64,")
        images = tmp_path / "artifacts" / "smoke" / "raw_images" / "images"
        assert sorted(p.name for p in images.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]
        manifest = json.loads((images.parent / "manifest.json").read_text())
        assert sorted(manifest) == [f"{i:06d}.jpg" for i in range(6)]

        second = dg.materialize([latent_codes, raw_images], resources={"settings": settings}, instance=instance)
        meta2 = second.asset_materializations_for_node("raw_images")[0].metadata
        assert meta2["generated_now"].value == 0 and meta2["already_present"].value == 6
        key = dg.AssetKey("raw_images")
        versions = [
            e.asset_materialization.tags["dagster/data_version"]
            for e in instance.fetch_materializations(key, limit=10).records
        ]
        assert len(versions) == 2 and versions[0] == versions[1]  # same bytes -> same data version

        # more images: the first six are kept (z_i depends only on (seed, i)), two are added
        grown = OhloraSettings(**{**settings.model_dump(), "n_images": 8})
        more = dg.materialize([latent_codes, raw_images], resources={"settings": grown}, instance=instance)
        assert more.asset_materializations_for_node("raw_images")[0].metadata["generated_now"].value == 2
        assert len(list(images.iterdir())) == 8

        # another seed is another recipe: old images are replaced, the data version changes
        reseeded = OhloraSettings(**{**settings.model_dump(), "seed": 1})  # (model_copy keeps the old config)
        third = dg.materialize([latent_codes, raw_images], resources={"settings": reseeded}, instance=instance)
        assert third.asset_materializations_for_node("raw_images")[0].metadata["generated_now"].value == 6
        assert sorted(p.name for p in images.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]  # 2 extra pruned
        latest = instance.get_latest_materialization_event(key).asset_materialization
        assert latest.tags["dagster/data_version"] != versions[0]
