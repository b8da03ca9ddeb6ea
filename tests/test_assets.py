"""Asset-level tests: one asset (or one stage) materialized on prepared upstream artifacts (tests/upstream.py),
through Dagster with the location's resources — no run of the graph above it."""

import json

import dagster as dg
import pandas as pd
import pytest

from ohlora_core import artifacts as a
from ohlora_core.layout import StorageLayout
from ohlora_core.scores.common import SCORE_COLUMNS
from tests import upstream
from tests.dagster_support import defs_of, materialize, meta

SMOKE = "smoke"


def _current(root, files_cls, mode=SMOKE):
    return StorageLayout(root, mode).current(files_cls)


def _recipe(root, files_cls, mode=SMOKE) -> dict:
    return json.loads((_current(root, files_cls, mode).dir / "recipe.json").read_text())


# -- filtering ---------------------------------------------------------------------------------------------------


def test_filtering_trains_scores_filters_and_reuses_a_trained_recipe(tmp_path):
    upstream.raw_images(tmp_path, SMOKE, n=14)
    upstream.hand_labels(tmp_path, SMOKE, n_labelled=12)
    quick = {"ops": {"gender_quality_models": {"config": {"max_epochs": 1}}}}
    stage = ["gender_quality_models", "gender_quality_scores", "filtered_images"]
    with dg.instance_for_test() as instance:
        result = materialize(SMOKE, stage, tmp_path, instance, run_config=quick, n_images=14, n_labelled=12)
        again = materialize(
            SMOKE, ["gender_quality_models"], tmp_path, instance, run_config=quick, n_images=14, n_labelled=12
        )
        records = instance.fetch_materializations(dg.AssetKey([SMOKE, "gender_quality_models"]), limit=2).records
        lines = [r.user_message for r in instance.all_logs(again.run_id)]
    # the same labels, images and settings: the trained models are verified and kept, the data version unchanged
    assert len({r.asset_materialization.tags["dagster/data_version"] for r in records}) == 1
    assert any("already trained" in line and "not retraining" in line for line in lines)
    models = _current(tmp_path, a.GenderQualityModels)
    assert sorted(p.name for p in (models.dir / "models").iterdir()) == sorted(
        f"{p}_model_{k}.pt" for p in ("gender", "quality") for k in range(5)
    )
    assert "not enforced" in meta(result, SMOKE, "gender_quality_models")["thresholds"]
    assert "| property | fold_no | attempt |" in meta(result, SMOKE, "gender_quality_models")["folds"]
    scores = pd.read_csv(_current(tmp_path, a.GenderQualityScores).table, index_col=0)
    labels = pd.read_csv(_current(tmp_path, a.HandLabels).csv)
    assert sorted(scores["img_no"]) == list(range(14))
    assert scores.set_index("img_no").loc[12:13, "gender_score"].between(0, 1).all()  # CNN means for the rest
    m = meta(result, SMOKE, "gender_quality_scores")
    assert (m["from_labels"], m["from_cnn"]) == (12, 2) and len(labels) == 12
    kept = pd.read_csv(_current(tmp_path, a.FilteredImages).table)
    assert ((kept["gender_score"] >= 0.7) & (kept["quality_score"] >= 0.9)).all()
    assert meta(result, SMOKE, "filtered_images")["kept"] == len(kept)


# -- scores ------------------------------------------------------------------------------------------------------

NUMBERS = [0, 2, 3, 5, 7, 8]


@pytest.fixture
def parsed(tmp_path):
    upstream.raw_images(tmp_path, SMOKE, n=9)
    upstream.filtered_images(tmp_path, SMOKE, NUMBERS)
    upstream.segmentation_maps(tmp_path, SMOKE, NUMBERS)
    return tmp_path


def test_one_score_algorithm_runs_alone_and_its_checks_hold(parsed):
    with dg.instance_for_test() as instance:
        result = materialize(SMOKE, ["property_scores_v2"], parsed, instance)
    assert [e.asset_key.path[-1] for e in result.get_asset_materialization_events()] == ["property_scores_v2"]
    assert not StorageLayout(parsed, SMOKE).has(a.PropertyScoresV1)  # the other algorithm did not run
    table = pd.read_csv(_current(parsed, a.PropertyScoresV2).table, index_col=0)
    assert table["img_no"].tolist() == NUMBERS and list(table.columns[2:]) == list(SCORE_COLUMNS)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"no_unexpected_nan": True, "standardised": True, "one_row_per_parsed_image": True}
    m = meta(result, SMOKE, "property_scores_v2")
    assert m["rows"] == len(NUMBERS) and m["histograms"].startswith("![raw score histograms](data:image/png")


def test_the_property_cnn_trains_predicts_and_compares(parsed):
    upstream.score_table(parsed, SMOKE, a.PropertyScoresV2, NUMBERS)
    run_config = {"ops": {"property_score_cnn": {"config": {"max_epochs": 1}}}}
    with dg.instance_for_test() as instance:
        result = materialize(
            SMOKE,
            ["property_score_cnn", "property_scores_v2_cnn", "property_scores_v2_vs_cnn"],
            parsed,
            instance,
            run_config=run_config,
        )
    preds = pd.read_csv(_current(parsed, a.PropertyScoresV2Cnn).table)
    assert preds["img_no"].tolist() == NUMBERS and preds[list(SCORE_COLUMNS)].notna().all().all()
    summary = pd.read_csv(_current(parsed, a.PropertyScoresV2VsCnn).summary)
    assert len(summary) == 7 and (summary["mae"] >= 0).all()
    assert meta(result, SMOKE, "property_score_cnn")["trained_on"] == len(NUMBERS)


# -- fine-tuning (full mode on a narrow genforce checkpoint: fast on a CPU) --------------------------------------

FULL = "full"


@pytest.fixture
def labelled(tmp_path):
    upstream.narrow_checkpoint(tmp_path)
    upstream.raw_images(tmp_path, FULL, n=6)
    upstream.score_table(tmp_path, FULL, a.PropertyScoresV1, list(range(6)))
    upstream.score_table(tmp_path, FULL, a.PropertyScoresV2Cnn, list(range(6)), seed=1)
    return tmp_path


GAN_QUICK = {"epochs": 1, "max_steps_per_epoch": 1, "batch_size": 2, "samples_per_label": 1, "mbstd_group": 2}


def test_v1_and_v4_train_from_the_checkpoint_and_v1_and_write_the_originals_files(labelled):
    ops = {"stylegan_finetune_v1": {"config": GAN_QUICK}, "stylegan_finetune_v4": {"config": GAN_QUICK}}
    with dg.instance_for_test() as instance:
        result = materialize(
            FULL, ["stylegan_finetune_v1", "stylegan_finetune_v4"], labelled, instance, run_config={"ops": ops}
        )
    from ohlora_core.stylegan import load_generator

    for version, labels in (("v1", 7), ("v4", 3)):
        files, m = _current(labelled, a.FINETUNES[version], FULL), meta(result, FULL, f"stylegan_finetune_{version}")
        assert m["steps"] == 1 and m["resumed_from"] == "no (fresh run)" and m["images"] == 6
        assert load_generator(files.generator).label_size == labels and files.discriminator.is_file()
        assert m["loss_plot"].startswith("![") and not files.snapshot.exists()
    assert _recipe(labelled, a.StyleganFinetuneV4, FULL)["start"] == "stylegan_finetune_v1"
    assert _recipe(labelled, a.StyleganFinetuneV4, FULL)["upstream"]["stylegan_finetune_v1"] is not None


def test_v2_trains_through_the_property_cnn_from_v1(labelled):
    upstream.finetuned(labelled, FULL, "v1")
    upstream.property_score_cnn(labelled, FULL)
    config = {"step_groups": 1, "max_steps_per_group": 1, "batch_size": 2, "cnn_eval": True}
    with dg.instance_for_test() as instance:
        result = materialize(
            FULL,
            ["stylegan_finetune_v2"],
            labelled,
            instance,
            run_config={"ops": {"stylegan_finetune_v2": {"config": config}}},
        )
    m = meta(result, FULL, "stylegan_finetune_v2")
    assert m["steps"] == 1 and m["epochs_run"] == 1 and m["best_epoch"] == 0
    assert _current(labelled, a.StyleganFinetuneV2, FULL).generator.is_file()


# -- control -----------------------------------------------------------------------------------------------------


@pytest.fixture
def controllable(tmp_path):
    from ohlora_core.generation import write_latent_codes

    root = tmp_path
    upstream.promote(root, SMOKE, a.LatentCodes, lambda f: (write_latent_codes(f.latents, 0, 12), ["latents.npy"])[1])
    upstream.score_table(root, SMOKE, a.PropertyScoresV2, list(range(12)))
    upstream.score_table(root, SMOKE, a.PropertyScoresV2Cnn, list(range(12)), seed=1)
    upstream.property_score_cnn(root, SMOKE)
    for version in ("v1", "v3", "v4"):  # v2 was never fine-tuned here
        upstream.finetuned(root, SMOKE, version)
    return root


REPORT = {"ops": {"controllability_report": {"config": {"z": 1, "stride": 25}}}}


def test_the_report_compares_every_present_method_and_says_why_one_is_missing(controllable):
    with dg.instance_for_test() as instance:
        result = materialize(
            SMOKE,
            ["latent_w", "latent_directions", "controllability_report"],
            controllable,
            instance,
            run_config=REPORT,
        )
    m = meta(result, SMOKE, "controllability_report")
    assert m["methods"] == "v1, v3, v4, directions" and m["skipped"] == "v2: stylegan_finetune_v2 not materialized"
    assert m["z_per_method"] == 1 and m["combinations_per_z"] == 2 and "meaningless" in m["note"]
    table = pd.read_csv(_current(controllable, a.ControllabilityReport).table)
    assert table["method"].tolist() == ["v1", "v3", "v4", "directions"] and (table["seconds_per_image"] > 0).all()
    assert m["scatter_directions"].startswith("![directions: requested vs measured](data:image/png")
    directions = meta(result, SMOKE, "latent_directions")
    assert directions["images"] == 12 and directions["method"] == "svm"


def test_a_bumped_control_version_changes_the_reports_recipe_key(controllable, monkeypatch):
    """The factories' bug: `for version in (...)` shadowed the code version, so the report always recorded v4."""
    from ohlora_dagster import versions
    from ohlora_dagster.definitions import location

    with dg.instance_for_test() as instance:
        materialize(
            SMOKE,
            ["latent_w", "latent_directions", "controllability_report"],
            controllable,
            instance,
            run_config=REPORT,
        )
        before = _current(controllable, a.ControllabilityReport).dir.resolve().name
        assert _recipe(controllable, a.ControllabilityReport)["version"].split("+")[1] == "control-1"
        monkeypatch.setattr(versions, "CONTROL", "2")
        bumped = location(SMOKE)
        materialize(SMOKE, ["controllability_report"], controllable, instance, defs=bumped, run_config=REPORT)
    after = _current(controllable, a.ControllabilityReport).dir.resolve().name
    assert after != before and "control-2" in _recipe(controllable, a.ControllabilityReport)["version"]
    graph = bumped.resolve_asset_graph()
    assert "control-2" in graph.get(dg.AssetKey([SMOKE, "controllability_report"])).code_version
    assert (
        "control-1"
        in defs_of(SMOKE).resolve_asset_graph().get(dg.AssetKey([SMOKE, "controllability_report"])).code_version
    )
