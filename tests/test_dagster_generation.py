"""Generation assets through Dagster on a real (temporary, SQLite) instance."""

import json
import re

import dagster as dg
import pytest

from ohlora_dagster.resources import ArtifactStore, RunSettings
from tests.dagster_support import key, materialize, meta


def test_settings_counts_come_from_the_mode_preset_and_sources_say_where_files_belong(tmp_path):
    from ohlora_core.pretrained import MissingInput

    settings, store = RunSettings(device="cpu"), ArtifactStore(storage_root=str(tmp_path))
    assert settings.counts("smoke") == (40, 30) and settings.counts("full") == (10_000, 2_000)
    assert RunSettings(n_images=12).counts("full") == (12, 12)  # labels capped by images
    assert RunSettings(n_images=12, n_labelled=5).counts("smoke") == (12, 5)
    assert store.layout("full").artifact_dir("raw_images") == tmp_path / "artifacts" / "full" / "raw_images"
    assert store.sources("smoke").required_files({"raw_images", "segmentation_maps"}) == {}
    full = store.sources("full")
    assert set(full.required_files({"raw_images", "segmentation_maps", "hand_labels"})) == {
        str(tmp_path / "models" / "stylegan_celeba_partial256.pth"),
        str(tmp_path / "models" / "facexformer" / "ckpts" / "model.pt"),
        str(tmp_path / "labels" / "synthesize_results_quality_and_gender.csv"),
    }
    with pytest.raises(MissingInput, match=r"FaceXFormer .* not found at .*model\.pt\. Put it there"):
        full.facexformer(0, "cpu")
    assert store.sources("smoke").stylegan(3)[1] == "smoke_generator(seed=3)"


def _materialize(root, instance, mode="smoke", **settings):
    return materialize(mode, ["latent_codes", "raw_images"], root, instance, **settings)


def _images(tmp_path):
    return tmp_path / "artifacts" / "smoke" / "raw_images" / "current" / "images"


def _data_versions(instance) -> list[str]:
    records = instance.fetch_materializations(key("smoke", "raw_images"), limit=10).records
    return [r.asset_materialization.tags["dagster/data_version"] for r in records]


def test_generation_assets_materialize_and_rerun_is_a_no_op(tmp_path):
    with dg.instance_for_test() as instance:
        first = meta(_materialize(tmp_path, instance, n_images=6, batch_size=4), "smoke", "raw_images")
        assert first["count"] == 6 and first["generated_now"] == 6
        assert first["mode"] == "smoke" and "NOT real faces" in first["weights"]
        assert first["preview"].startswith("![first images](data:image/png;base64,")
        images = _images(tmp_path)
        assert sorted(p.name for p in images.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]
        manifest = json.loads((images.parent / "manifest.json").read_text())
        assert sorted(manifest) == [f"images/{i:06d}.jpg" for i in range(6)]

        second = meta(_materialize(tmp_path, instance, n_images=6, batch_size=4), "smoke", "raw_images")
        assert second["generated_now"] == 0 and second["already_present"] == 6
        versions = _data_versions(instance)
        assert len(versions) == 2 and versions[0] == versions[1]  # same bytes -> same data version

        # more images: the first four are kept (z_i depends only on (seed, i); the last, partial batch
        # of the 6 holds other z now), the rest are added
        more = meta(_materialize(tmp_path, instance, n_images=8, batch_size=4), "smoke", "raw_images")
        assert more["generated_now"] == 4 and len(list(images.iterdir())) == 8

        # another seed: other images, the data version changes
        third = meta(_materialize(tmp_path, instance, n_images=6, batch_size=4, seed=1), "smoke", "raw_images")
        assert third["generated_now"] == 6
        assert sorted(p.name for p in images.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]
        assert _data_versions(instance)[0] != versions[0]


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


def test_a_checkpoint_of_another_resolution_is_refused_before_images_change(tmp_path):
    import torch

    from ohlora_core.stylegan import smoke_generator

    ckpt = tmp_path / "models" / "stylegan_celeba_partial256.pth"
    ckpt.parent.mkdir()
    torch.save({"generator": smoke_generator(1).state_dict()}, ckpt)
    with dg.instance_for_test() as instance:
        assert _materialize(tmp_path, instance, "full", n_images=2, batch_size=2).success
        before = _snapshot(tmp_path / "artifacts")
        torch.save({"generator": smoke_generator(1, resolution=128).state_dict()}, ckpt)
        with pytest.raises(Exception) as err:
            _materialize(tmp_path, instance, "full", n_images=2, batch_size=2)
        assert re.search(
            r"stylegan_celeba_partial256.pth \(sha256 \w+\) is a 128x128 generator; expected 256x256",
            _error_chain(err.value),
        )
    assert _snapshot(tmp_path / "artifacts") == before


def test_a_fine_tuned_generator_given_as_the_pretrained_one_is_refused_naming_the_file(tmp_path):
    """Issue 17 finding 6: it used to fail only at its first forward, without the file's name."""
    import torch

    from ohlora_core.stylegan import StyleGANGenerator

    ckpt = tmp_path / "models" / "stylegan_celeba_partial256.pth"
    ckpt.parent.mkdir()
    G = StyleGANGenerator(
        resolution=256,
        w_space_dim=32,
        mapping_fmaps=32,
        fmaps_base=2048,
        fmaps_max=32,
        label_size=7,
        label_embed_dim=16,
    )
    torch.save({"generator": G.state_dict()}, ckpt)
    with dg.instance_for_test() as instance:
        with pytest.raises(Exception) as err:
            _materialize(tmp_path, instance, "full", n_images=2, batch_size=2)
    assert re.search(
        r"stylegan_celeba_partial256.pth .* is a fine-tuned \(label-conditioned, 7 labels\) generator; "
        r"expected the pretrained, unconditional one",
        _error_chain(err.value),
    )
    assert not (tmp_path / "artifacts" / "full" / "raw_images" / "current").exists()


def test_a_damaged_image_is_regenerated_and_the_result_equals_a_fresh_run(tmp_path):
    with dg.instance_for_test() as instance:
        _materialize(tmp_path / "a", instance, n_images=3, batch_size=2)
        images = _images(tmp_path / "a")
        data = (images / "000001.jpg").read_bytes()
        (images / "000001.jpg").write_bytes(data[: len(data) // 2])  # truncated by a full disk, say
        again = meta(_materialize(tmp_path / "a", instance, n_images=3, batch_size=2), "smoke", "raw_images")
        assert again["generated_now"] == 1
        _materialize(tmp_path / "b", instance, n_images=3, batch_size=2)
    assert _snapshot(images) == _snapshot(_images(tmp_path / "b"))
