"""The whole graph in smoke mode on a real (temporary SQLite) Dagster instance, then the
headline workflow: bump the v2 score algorithm, see what is stale, materialize it, fresh again."""
import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

import ohlora_core.scores.v2
from ohlora_dagster.definitions import all_assets, all_checks, build_assets, defs
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.stale import stale_assets

V2_DOWNSTREAM = ["property_score_cnn", "property_scores_v2_cnn", "property_scores_v2_vs_cnn", "stylegan_finetune_v4",
                 "stylegan_finetune_v2", "stylegan_finetune_v3", "finetuned_samples", "latent_directions",
                 "controllability_report"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    settings = OhloraSettings(storage_root=str(root), mode="smoke", device="cpu", n_images=24, n_labelled=20)
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], resources={"settings": settings}, instance=instance)
        yield settings, instance, result


def _meta(result, name):
    return {k: v.value for k, v in result.asset_materializations_for_node(name)[0].metadata.items()}


def test_every_asset_materializes_with_its_files_and_metadata(run):
    settings, instance, result = run
    assert result.success
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert all(instance.get_latest_materialization_event(k) is not None for k in keys)
    from ohlora_core import artifacts as a

    cur = settings.current

    assert _meta(result, "raw_images")["count"] == 24
    labels = _meta(result, "hand_labels")
    assert labels["labelled"] == 20 and labels["stand_in_labels"] is True
    models = sorted(p.name for p in (cur(a.GenderQualityModels).dir / "models").iterdir())
    assert models == sorted(f"{p}_model_{k}.pt" for p in ("gender", "quality") for k in range(5))
    scores = pd.read_csv(cur(a.GenderQualityScores).table, index_col=0)
    assert list(scores.columns) == ["img_no", "img_path", "gender_score", "quality_score"]
    assert sorted(scores["img_no"]) == list(range(24))

    kept = pd.read_csv(cur(a.FilteredImages).table)
    assert kept["img_path"].str.startswith("artifacts/smoke/raw_images/current/images/").all()  # relative to the root
    assert len(kept) == _meta(result, "filtered_images")["kept"] > 0
    assert ((kept["gender_score"] >= 0.7) & (kept["quality_score"] >= 0.9)).all()

    seg = _meta(result, "segmentation_maps")
    # random-weight images rarely hold a face MTCNN accepts; the rest are parsed from the centre box
    assert seg["parsed"] == len(kept) and seg["no_face_count"] == 0 and 0 < seg["smoke_centre_crops"] <= len(kept)
    for version, cls in a.PROPERTY_SCORES.items():
        table = pd.read_csv(cur(cls).table, index_col=0)
        assert sorted(table["img_no"]) == sorted(kept["img_no"])
        assert _meta(result, f"property_scores_{version}")["histograms"].startswith("![raw score histograms](data:image/png")
    compare = pd.read_csv(cur(a.PropertyScoresV2VsCnn).table)
    assert {"eyes_v2", "eyes_v2_cnn", "eyes_diff"} <= set(compare.columns) and len(compare) == len(kept)

    from ohlora_core.finetune.loop import LOG_COLUMNS
    from ohlora_core.stylegan import load_discriminator, load_generator

    for version, labels_n in (("v1", 7), ("v4", 3)):
        files, meta = cur(a.GAN_FINETUNES[version]), _meta(result, f"stylegan_finetune_{version}")
        assert meta["steps"] == 2 and meta["resumed_from"] == "no (fresh run)"  # smoke: 2 small steps
        assert meta["loss_plot"].startswith("![losses](data:image/png") and meta["real_fake"].startswith("![reals")
        log = pd.read_csv(files.train_log, index_col=0)
        assert list(log.columns[:len(LOG_COLUMNS)]) == LOG_COLUMNS and len(log) == 2
        G = load_generator(files.generator)  # bare state_dicts, like the original's files
        D = load_discriminator(files.discriminator, minibatch_std_group_size=16)
        assert (G.label_size, G.label_embed_dim, D.label_size, D.label_mode) == (labels_n, 16, labels_n, "concat")
        assert not files.snapshot.exists() and (files.dir / "samples" / "epoch_0000.png").is_file()

    v2, v3 = _meta(result, "stylegan_finetune_v2"), _meta(result, "stylegan_finetune_v3")
    assert v2["steps"] == 2 and v3["steps"] == 2 and "| epoch | passed_z | of |" in v3["pass_table"]
    assert load_generator(cur(a.StyleganFinetuneV2).generator).label_embed_dim == 16
    assert load_generator(cur(a.StyleganFinetuneV3).generator).label_embed_dim == 24  # dense0 536 -> w
    assert pd.read_csv(cur(a.StyleganFinetuneV3).test_results)["passed"].isin(["O", "X"]).all()
    samples = cur(a.FinalSamples)
    assert sorted(p.name for p in samples.dir.glob("*.jpg")) == [f"{i:06d}.jpg" for i in range(4)]

    report = _meta(result, "controllability_report")
    assert report["methods"] == "v1, v2, v3, v4, directions" and report["skipped"] == "none"
    assert "meaningless" in report["note"] and report["report"].startswith("| method | z | pass_share |")
    table = pd.read_csv(cur(a.ControllabilityReport).table)
    assert table["method"].tolist() == ["v1", "v2", "v3", "v4", "directions"] and (table["seconds_per_image"] > 0).all()
    assert report["scatter_directions"].startswith("![directions: intended (x) vs measured (y)](data:image/png")

    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["every_image_scored_once"] and checks["filtered_not_empty"]
    assert checks["no_unexpected_nan"] and checks["one_row_per_parsed_image"]


def test_bumping_the_v2_algorithm_makes_v2_and_downstream_stale_and_backfill_fixes_it(run, monkeypatch):
    settings, instance, _ = run
    key = dg.AssetKey
    status = lambda assets, name: get_stale_status_resolver(instance, assets).get_status(key(name))  # noqa: E731
    assert status(all_assets, "property_scores_v2") == StaleStatus.FRESH

    # what a developer does: change the v2 algorithm and bump its version in ohlora_core
    monkeypatch.setattr(ohlora_core.scores.v2, "ALGORITHM_VERSION", ohlora_core.scores.v2.ALGORITHM_VERSION + "-changed")
    bumped = build_assets()
    resolver = get_stale_status_resolver(instance, bumped)
    for name in ["property_scores_v2", *V2_DOWNSTREAM]:
        assert resolver.get_status(key(name)) == StaleStatus.STALE, name
        assert [c.category for c in resolver.get_stale_causes(key(name))] == [StaleCauseCategory.CODE], name
    for name in ("property_scores_v1", "stylegan_finetune_v1", "segmentation_maps", "raw_images"):
        assert resolver.get_status(key(name)) == StaleStatus.FRESH, name

    stale = [a.key for a in bumped if resolver.get_status(a.key) == StaleStatus.STALE]
    assert sorted(k.to_user_string() for k in stale) == sorted(["property_scores_v2", *V2_DOWNSTREAM])
    # the CLI listing (`python -m ohlora_dagster.stale`) says the same, with the reason
    listing = stale_assets(instance, bumped)
    assert sorted(listing) == sorted(["property_scores_v2", *V2_DOWNSTREAM])
    assert listing["property_scores_v2"] == ["CODE: has a new code version"]
    backfill = dg.materialize(bumped, selection=stale, resources={"settings": settings}, instance=instance)
    assert backfill.success
    after = get_stale_status_resolver(instance, bumped)
    assert all(after.get_status(a.key) == StaleStatus.FRESH for a in bumped)
    assert stale_assets(instance, bumped) == {}


def test_ohlora_generate_gives_the_assets_first_image(run, tmp_path):
    """The CLI with the same generator, z (from the seed: no z passed v3's smoke test), labels and n (so
    the same batches of 4: a batch's float rounding depends on its size)."""
    import subprocess
    import sys

    from ohlora_core import artifacts as a

    settings, _, result = run
    assert _meta(result, "finetuned_samples")["z"].startswith("seeded")
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "ohlora_core.cli", "generate", "--version", "v3", "--storage",
                           settings.storage_root, "--mode", "smoke", "-n", "4", "--seed", str(settings.seed),
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.jpg" for i in range(4)]
    for i in range(4):
        assert (out / f"{i:06d}.jpg").read_bytes() == settings.current(a.FinalSamples).image(i).read_bytes()


def test_the_report_skips_methods_that_are_not_there(run, tmp_path):
    """A storage where v2 was never fine-tuned: the report runs on the rest and says why v2 is missing."""
    import shutil

    settings, _, _ = run
    root = tmp_path / "storage"
    shutil.copytree(settings.storage_root, root, symlinks=True)
    shutil.rmtree(root / "artifacts" / "smoke" / "stylegan_finetune_v2")
    partial = OhloraSettings(**{**settings.model_dump(), "storage_root": str(root)})
    report = [a for a in all_assets if a.key == dg.AssetKey("controllability_report")]
    with dg.instance_for_test() as instance:
        result = dg.materialize(report, resources={"settings": partial}, instance=instance)
    meta = _meta(result, "controllability_report")
    assert meta["methods"] == "v1, v3, v4, directions"
    assert meta["skipped"] == "v2: stylegan_finetune_v2 not materialized"
