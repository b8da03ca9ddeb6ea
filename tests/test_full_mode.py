"""Full mode wiring: the user drops checkpoints (in the official layouts) and a label CSV under
storage/, and the pipeline loads them — no smoke stand-ins, thresholds from the run config,
images without a face recorded and skipped. Real checkpoints are not available here, so the files
hold seeded random weights in the real layouts."""

import dagster as dg
import pytest
import torch

from ohlora_core.segmentation.facexformer import smoke_facexformer
from ohlora_core.stylegan import smoke_discriminator, smoke_generator
from tests.dagster_support import materialize, meta

UP_TO_SEGMENTATION = [
    "latent_codes",
    "raw_images",
    "hand_labels",
    "gender_quality_models",
    "gender_quality_scores",
    "filtered_images",
    "segmentation_maps",
]


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    (root / "models" / "facexformer" / "ckpts").mkdir(parents=True)
    torch.save(
        {"generator": smoke_generator(1).state_dict(), "discriminator": smoke_discriminator(1).state_dict()},
        root / "models" / "stylegan_celeba_partial256.pth",
    )
    torch.save(
        {"state_dict_backbone": smoke_facexformer(1).state_dict()},
        root / "models" / "facexformer" / "ckpts" / "model.pt",
    )
    (root / "labels").mkdir()
    rows = [f"{i},{int(i % 3 != 0)},{int(i % 2 == 0)}" for i in range(15)]  # img_name,quality,gender
    (root / "labels" / "synthesize_results_quality_and_gender.csv").write_text(
        "img_name,quality,gender\n" + "\n".join(rows) + "\n"
    )
    return root


def _materialize(root, instance, **settings):
    quick = {"max_epochs": 1, "gender_threshold": 10.0, "quality_threshold": 10.0}  # random labels
    return materialize(
        "full",
        UP_TO_SEGMENTATION,
        root,
        instance,
        run_config={"ops": {"gender_quality_models": {"config": quick}}},
        **settings,
    )


def test_full_mode_uses_the_users_files_and_records_faceless_images(storage):
    with dg.instance_for_test() as instance:
        result = _materialize(storage, instance, n_images=18, n_labelled=15)
        assert result.success
        m = {
            name: meta(result, "full", name)
            for name in ("raw_images", "hand_labels", "filtered_images", "segmentation_maps")
        }
    assert m["raw_images"]["mode"] == "full" and m["raw_images"]["weights"] == "real checkpoints"
    assert "stylegan_celeba_partial256.pth (sha256 " in m["raw_images"]["recipe"]["item"]["weights"]
    assert m["hand_labels"]["stand_in_labels"] is False and m["hand_labels"]["labelled"] == 15
    assert m["hand_labels"]["source"].endswith("synthesize_results_quality_and_gender.csv")
    kept = m["filtered_images"]["kept"]
    assert kept >= 5  # labelled female + good: 2, 4, 8, 10, 14
    seg = m["segmentation_maps"]
    # random-weight images hold no face: recorded and skipped, never parsed from a made-up box
    assert seg["smoke_centre_crops"] == 0 and seg["parsed"] + seg["no_face_count"] == kept
    assert seg["no_face_count"] > 0 and seg["no_face_images"] != "none"
    assert (storage / "artifacts" / "full" / "raw_images" / "current" / "images" / "000017.jpg").exists()


def _step_error(result):
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    return error.cause  # Dagster wraps the asset's exception


def test_bad_label_csv_fails_the_run_naming_file_and_row(storage, tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("img_name,quality,gender\n0,1,1\n1,2,0\n")
    with dg.instance_for_test() as instance:
        result = materialize(
            "full",
            ["hand_labels"],
            storage,
            instance,
            store={"hand_labels_csv": str(bad)},
            raise_on_error=False,
            n_images=4,
            n_labelled=2,
        )
    cause = _step_error(result)
    assert cause.cls_name == "LabelError"
    assert "labels.csv" in cause.message and "line(s) 3" in cause.message, cause.message


def test_a_label_count_other_than_n_labelled_is_refused(storage):
    with dg.instance_for_test() as instance:  # n_labelled: 2,000 capped to the 18 images
        result = materialize("full", ["hand_labels"], storage, instance, raise_on_error=False, n_images=18)
    error = _step_error(result)
    assert error.cls_name == "LabelError"
    assert "synthesize_results_quality_and_gender.csv: 15 labelled image(s), but 18 are expected" in error.message
    assert "set n_labelled: 15" in error.message
