"""A run that cannot work fails once, at its start, before any step or any file (issue 17 finding 4,
issue 18 'a bad config fails 21 times'): the executor's preflight on the real run path."""

import time

import dagster as dg
import pytest

from tests.dagster_support import run_job

GENERATION = ["latent_codes", "raw_images"]


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A storage with 4 smoke images, and the instance that made them."""
    root = tmp_path_factory.mktemp("storage")
    with dg.instance_for_test() as instance:
        assert run_job("smoke", root, instance, GENERATION, settings={"n_images": 4, "batch_size": 2}).success
        yield root, instance


def _steps_started(instance, run_id) -> int:
    return sum(1 for r in instance.all_logs(run_id) if r.dagster_event and r.dagster_event.is_step_start)


def _failure(instance, result) -> str:
    run = instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    events = [r.dagster_event for r in instance.all_logs(result.run_id) if r.dagster_event]
    failures = [e for e in events if e.is_run_failure]
    assert len(failures) == 1 and not any(e.is_step_failure for e in events)
    assert failures[0].event_specific_data is None or failures[0].event_specific_data.error is None  # no stack
    return failures[0].message


BAD = [
    ({"device": "cuda"}, "settings.device='cuda', but CUDA is not available on this machine"),
    ({"device": "tpu:3"}, "settings.device='tpu:3' is not"),
    ({"n_labelled": 50, "n_images": 4}, "settings.n_labelled=50 is more than the 4 images"),
]


@pytest.mark.parametrize("bad,message", BAD)
def test_a_bad_setting_fails_the_run_once_before_any_step_and_file(generated, bad, message):
    root, instance = generated
    before = _snapshot(root / "artifacts")
    t0 = time.perf_counter()
    result = run_job("smoke", root, instance, GENERATION, settings={"n_images": 4, "batch_size": 2, **bad})
    assert time.perf_counter() - t0 < 15
    assert message in _failure(instance, result) and _steps_started(instance, result.run_id) == 0
    assert _snapshot(root / "artifacts") == before


def test_a_billion_images_are_refused_in_seconds_with_an_estimate(generated):
    root, instance = generated
    before = _snapshot(root / "artifacts")
    t0 = time.perf_counter()
    result = run_job("smoke", root, instance, ["latent_codes"], settings={"n_images": 10**9})
    assert time.perf_counter() - t0 < 10
    message = _failure(instance, result)
    assert "n_images=1,000,000,000 needs about 1.9 TB of disk (latent_codes 1.9 TB)" in message, message
    assert _steps_started(instance, result.run_id) == 0 and _snapshot(root / "artifacts") == before  # intact


def test_full_mode_without_its_files_fails_once_naming_every_missing_file(tmp_path):
    with dg.instance_for_test() as instance:
        result = run_job("full", tmp_path, instance, executor="multiprocess")
        message = _failure(instance, result)
        assert _steps_started(instance, result.run_id) == 0
    for missing in (
        "stylegan_celeba_partial256.pth",
        "facexformer/ckpts/model.pt",
        "labels/synthesize_results_quality_and_gender.csv",
    ):
        assert f"{tmp_path}/" in message and missing in message, missing
    assert not (tmp_path / "artifacts").exists()


def test_a_step_whose_upstream_is_missing_is_refused_before_it_waits_for_the_gpu(tmp_path):
    with dg.instance_for_test() as instance:
        result = run_job("smoke", tmp_path, instance, ["segmentation_maps"])
        message = _failure(instance, result)
    assert (
        "segmentation_maps reads filtered_images, which is neither materialized in smoke mode nor part of this"
        in message
        and "segmentation_maps reads raw_images" in message
    )


def test_a_label_file_with_the_wrong_row_count_is_refused_before_any_step(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "synthesize_results_quality_and_gender.csv").write_text(
        "img_name,quality,gender\n0,1,1\n1,0,1\n"
    )
    with dg.instance_for_test() as instance:
        result = run_job("full", tmp_path, instance, ["hand_labels"], settings={"n_images": 5, "n_labelled": 3})
        message = _failure(instance, result)
    assert "2 labelled image(s), but 3 are expected" in message
