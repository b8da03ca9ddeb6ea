"""Smoke and full never mix (issue 18): separate asset keys, files and label files; a failed full-mode attempt
changes nothing the UI shows for the smoke assets."""

import dagster as dg

from ohlora_core.layout import StorageLayout
from tests.dagster_support import key, run_job


def _status(instance, mode: str, name: str) -> tuple[int | None, bool]:
    """(the storage id of the asset's latest materialization, whether it shows Unsynced)."""
    from ohlora_dagster.dagster_workarounds.stale import stale_assets
    from tests.dagster_support import defs_of

    record = instance.fetch_materializations(key(mode, name), limit=1).records
    return (record[0].storage_id if record else None, f"{mode}/{name}" in stale_assets(instance, defs_of(mode)))


def test_a_failed_full_attempt_leaves_the_smoke_assets_as_they_were(tmp_path):
    with dg.instance_for_test() as instance:
        assert run_job(
            "smoke", tmp_path, instance, ["latent_codes", "raw_images"], settings={"n_images": 3, "batch_size": 3}
        ).success
        before = [_status(instance, "smoke", n) for n in ("latent_codes", "raw_images")]
        failed = run_job("full", tmp_path, instance, ["latent_codes", "raw_images"])  # no checkpoint here
        assert not failed.success
        planned = {
            r.dagster_event.asset_key
            for r in instance.all_logs(failed.run_id)
            if r.dagster_event and r.dagster_event.asset_key
        }
        assert all(k.path[0] == "full" for k in planned)
        assert [_status(instance, "smoke", n) for n in ("latent_codes", "raw_images")] == before
        assert before[0][0] is not None and before[0][1] is False and before[1][1] is False
    assert not StorageLayout(tmp_path, "full").artifacts.exists()


def test_each_mode_has_its_own_label_file(tmp_path):
    smoke, full = StorageLayout(tmp_path, "smoke").labels_csv, StorageLayout(tmp_path, "full").labels_csv
    assert smoke != full and full == tmp_path / "labels" / "synthesize_results_quality_and_gender.csv"
    assert smoke.parent.name == "smoke"
