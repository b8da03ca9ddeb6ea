"""Full mode wiring: the user drops checkpoints (in the official layouts) and a label CSV under
storage/, and the pipeline loads them — no smoke stand-ins, thresholds from the run config,
images without a face recorded and skipped. Real checkpoints are not available here, so the files
hold seeded random weights in the real layouts."""
import dagster as dg
import pytest
import torch

from ohlora_core.segmentation.facexformer import smoke_facexformer
from ohlora_core.stylegan import smoke_discriminator, smoke_generator
from ohlora_dagster.assets.filtering import CnnTrainingConfig
from ohlora_dagster.definitions import all_assets, all_checks
from ohlora_dagster.resources import OhloraSettings

UP_TO_SEGMENTATION = dg.AssetSelection.assets("segmentation_maps").upstream()


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    (root / "models" / "facexformer" / "ckpts").mkdir(parents=True)
    torch.save({"generator": smoke_generator(1).state_dict(), "discriminator": smoke_discriminator(1).state_dict()},
               root / "models" / "stylegan_celeba_partial256.pth")
    torch.save({"state_dict_backbone": smoke_facexformer(1).state_dict()},
               root / "models" / "facexformer" / "ckpts" / "model.pt")
    (root / "labels").mkdir()
    rows = [f"{i},{int(i % 3 != 0)},{int(i % 2 == 0)}" for i in range(15)]  # img_name,quality,gender
    (root / "labels" / "synthesize_results_quality_and_gender.csv").write_text("img_name,quality,gender\n" + "\n".join(rows) + "\n")
    return root


def _materialize(settings, instance, **kw):
    quick = CnnTrainingConfig(max_epochs=1, gender_threshold=10.0, quality_threshold=10.0)  # random labels
    return dg.materialize([*all_assets, *all_checks], selection=UP_TO_SEGMENTATION, instance=instance,
                          resources={"settings": settings},
                          run_config=dg.RunConfig(ops={"gender_quality_models": quick}), **kw)


def test_full_mode_uses_the_users_files_and_records_faceless_images(storage):
    settings = OhloraSettings(storage_root=str(storage), mode="auto", device="cpu", n_images=18, n_labelled=15)
    assert settings.resolved_mode == "full"
    with dg.instance_for_test() as instance:
        result = _materialize(settings, instance)
        assert result.success
        meta = {name: {k: v.value for k, v in result.asset_materializations_for_node(name)[0].metadata.items()}
                for name in ("raw_images", "hand_labels", "filtered_images", "segmentation_maps")}
    assert meta["raw_images"]["mode"] == "full" and meta["raw_images"]["weights"] == "real checkpoints"
    assert "stylegan_celeba_partial256.pth (sha256 " in meta["raw_images"]["weights_source"]
    assert meta["hand_labels"]["stand_in_labels"] is False and meta["hand_labels"]["labelled"] == 15
    assert meta["hand_labels"]["source"].endswith("synthesize_results_quality_and_gender.csv")
    kept = meta["filtered_images"]["kept"]
    assert kept >= 5  # labelled female + good: 2, 4, 8, 10, 14
    seg = meta["segmentation_maps"]
    # random-weight images hold no face: recorded and skipped, never parsed from a made-up box
    assert seg["smoke_centre_crops"] == 0 and seg["parsed"] + seg["no_face_count"] == kept
    assert seg["no_face_count"] > 0 and seg["no_face_images"] != "none"
    assert (storage / "artifacts" / "full" / "raw_images" / "current" / "images" / "000017.jpg").exists()


def test_bad_label_csv_fails_the_run_naming_file_and_row(storage, tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("img_name,quality,gender\n0,1,1\n1,2,0\n")
    settings = OhloraSettings(storage_root=str(storage), mode="full", device="cpu", n_images=4, n_labelled=2,
                              hand_labels_csv=str(bad))
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets], selection=dg.AssetSelection.assets("hand_labels"), instance=instance,
                                resources={"settings": settings}, raise_on_error=False)
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    cause = error.cause  # Dagster wraps the asset's exception
    assert cause.cls_name == "LabelError"
    assert "labels.csv" in cause.message and "line(s) 3" in cause.message, cause.message


def test_a_label_count_other_than_n_labelled_is_refused(storage):
    settings = OhloraSettings(storage_root=str(storage), mode="full", device="cpu", n_images=18)  # 2,000 capped to 18
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets], selection=dg.AssetSelection.assets("hand_labels"), instance=instance,
                                resources={"settings": settings}, raise_on_error=False)
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.cause
    assert error.cls_name == "LabelError"
    assert "synthesize_results_quality_and_gender.csv: 15 labelled image(s), but 18 are expected" in error.message
    assert "set n_labelled: 15" in error.message
