"""Generation assets through Dagster on a real (temporary, SQLite) instance."""
import json
import re

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
    assert s.relative(tmp_path / "artifacts" / "full" / "x.jpg") == "artifacts/full/x.jpg"
    with pytest.raises(FileNotFoundError, match=r"FaceXFormer .* not found at .*model\.pt\. Put it there"):
        s.require_file(s.facexformer_checkpoint, "FaceXFormer checkpoint")

    def smoke_model(seed):
        return ("random", seed)

    model, weights_id = s.load_model(smoke_model, lambda p: ("loaded", p.name), s.stylegan_checkpoint, "StyleGAN")
    assert model == ("loaded", "stylegan_celeba_partial256.pth")
    assert weights_id.endswith("(sha256 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881)")
    smoke = OhloraSettings(storage_root=str(tmp_path), mode="smoke", seed=3)
    assert smoke.load_model(smoke_model, None, "", "") == (("random", 3), "smoke_model(seed=3)")


def _materialize(settings, instance, **kw):
    return dg.materialize([latent_codes, raw_images], resources={"settings": settings}, instance=instance, **kw)


def _images(tmp_path):
    return tmp_path / "artifacts" / "smoke" / "raw_images" / "current" / "images"


def test_generation_assets_materialize_and_rerun_is_a_no_op(tmp_path):
    settings = OhloraSettings(storage_root=str(tmp_path), mode="smoke", device="cpu", n_images=6, batch_size=4)
    with dg.instance_for_test() as instance:
        first = _materialize(settings, instance)
        assert first.success
        meta = first.asset_materializations_for_node("raw_images")[0].metadata
        assert meta["count"].value == 6 and meta["generated_now"].value == 6
        assert meta["mode"].value == "smoke" and "NOT real faces" in meta["weights"].value
        assert meta["preview"].value.startswith("![first images](data:image/png;base64,")
        images = _images(tmp_path)
        assert sorted(p.name for p in images.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]
        manifest = json.loads((images.parent / "manifest.json").read_text())
        assert sorted(manifest) == [f"images/{i:06d}.jpg" for i in range(6)]

        second = _materialize(settings, instance)
        meta2 = second.asset_materializations_for_node("raw_images")[0].metadata
        assert meta2["generated_now"].value == 0 and meta2["already_present"].value == 6
        key = dg.AssetKey("raw_images")
        versions = [
            e.asset_materialization.tags["dagster/data_version"]
            for e in instance.fetch_materializations(key, limit=10).records
        ]
        assert len(versions) == 2 and versions[0] == versions[1]  # same bytes -> same data version

        # more images: the first four are kept (z_i depends only on (seed, i); the last, partial batch
        # of the 6 holds other z now), the rest are added
        grown = OhloraSettings(**{**settings.model_dump(), "n_images": 8})
        more = _materialize(grown, instance)
        assert more.asset_materializations_for_node("raw_images")[0].metadata["generated_now"].value == 4
        assert len(list(images.iterdir())) == 8

        # another seed: other images, the data version changes
        reseeded = OhloraSettings(**{**settings.model_dump(), "seed": 1})  # (model_copy keeps the old config)
        third = _materialize(reseeded, instance)
        assert third.asset_materializations_for_node("raw_images")[0].metadata["generated_now"].value == 6
        assert sorted(p.name for p in images.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]
        latest = instance.get_latest_materialization_event(key).asset_materialization
        assert latest.tags["dagster/data_version"] != versions[0]


def _error_chain(exc: BaseException) -> str:
    """An exception's message with its causes (Dagster wraps what a resource or asset raised)."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


BAD_SETTINGS = [
    ({"device": "cuda"}, "CUDA is not available on this machine"),
    ({"device": "tpu:3"}, "is not"),
    ({"batch_size": 0}, "greater than 0"),
    ({"n_images": -5}, "greater than 0"),
    ({"n_images": 0}, "greater than 0"),
    ({"n_labelled": 50}, "n_labelled=50 is more than the 6 images"),
]


def test_a_bad_setting_fails_the_run_before_any_file_is_touched(tmp_path):
    good = {"storage_root": str(tmp_path), "mode": "smoke", "device": "cpu", "n_images": 6, "batch_size": 4}
    with dg.instance_for_test() as instance:
        assert _materialize(OhloraSettings(**good), instance).success
        before = _snapshot(tmp_path / "artifacts")
        for bad, message in BAD_SETTINGS:
            with pytest.raises(Exception) as err:
                _materialize(OhloraSettings(**{**good, **bad}), instance)
            assert re.search(message, _error_chain(err.value)), (bad, _error_chain(err.value))
            assert _snapshot(tmp_path / "artifacts") == before, bad  # every earlier artifact byte-identical


def test_a_checkpoint_of_another_resolution_is_refused_before_images_change(tmp_path):
    import torch

    from ohlora_core.stylegan import smoke_generator

    settings = OhloraSettings(storage_root=str(tmp_path), mode="full", device="cpu", n_images=2, batch_size=2)
    ckpt = tmp_path / "models" / "stylegan_celeba_partial256.pth"
    ckpt.parent.mkdir()
    torch.save({"generator": smoke_generator(1).state_dict()}, ckpt)
    with dg.instance_for_test() as instance:
        assert _materialize(settings, instance).success
        before = _snapshot(tmp_path / "artifacts")
        torch.save({"generator": smoke_generator(1, resolution=128).state_dict()}, ckpt)
        with pytest.raises(Exception) as err:
            _materialize(settings, instance)
        assert re.search(r"a 128x128 generator .* needs genforce's 256x256", _error_chain(err.value))
    assert _snapshot(tmp_path / "artifacts") == before


def test_a_damaged_image_is_regenerated_and_the_result_equals_a_fresh_run(tmp_path):
    settings = OhloraSettings(storage_root=str(tmp_path / "a"), mode="smoke", device="cpu", n_images=3, batch_size=2)
    fresh = OhloraSettings(**{**settings.model_dump(), "storage_root": str(tmp_path / "b")})
    with dg.instance_for_test() as instance:
        _materialize(settings, instance)
        images = _images(tmp_path / "a")
        data = (images / "000001.jpg").read_bytes()
        (images / "000001.jpg").write_bytes(data[: len(data) // 2])  # truncated by a full disk, say
        result = _materialize(settings, instance)
        assert result.asset_materializations_for_node("raw_images")[0].metadata["generated_now"].value == 1
        _materialize(fresh, instance)
    assert _snapshot(images) == _snapshot(_images(tmp_path / "b"))
