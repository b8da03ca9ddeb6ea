"""Sharded image stages (ohlora_core/shards.py, docs/sharding.md): the split, the settings and their preflight,
a 2-shard smoke run equal byte for byte to the 1-shard run, a failing or dying worker named by its shard, a
killed sharded run that reruns to identical files, and the Kubernetes GPU request following $OHLORA_SHARDS."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ohlora_core import shards

# Dagster, torch and the helpers are imported where used: the failure test's spawned workers import this module.

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "smoke"
# 17 unlabelled images: two CNN evaluation batches on a CPU (16 + 1), so scoring splits too
SETTINGS = {"n_images": 19, "n_labelled": 2, "batch_size": 2}
KEPT = 6  # images segmented: the best quality scores (segmentation is the slowest stage on a CPU)
SHARDED = ["raw_images", "gender_quality_scores", "segmentation_maps"]
CHAIN = ["latent_codes", "raw_images", "hand_labels", "gender_quality_scores", "filtered_images", "segmentation_maps"]


# -- the split ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 5, 16, 17, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_the_split_is_balanced_contiguous_and_covers_every_item_once(n, count):
    items = list(range(n))
    parts = shards.split(items, count)
    assert [i for part in parts for i in part] == items  # contiguous, in order, each item once
    assert len(parts) == min(n, count) and all(parts)
    if parts:
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_the_split_of_aligned_batches_keeps_batches_whole_and_balances_images():
    from ohlora_core.generation import aligned_batches

    wanted = [0, 1, 2, 3, 5, 9, 10, 11, 12, 13, 14, 15, 16, 20, 21, 22, 23, 30]  # a resumed run: holes
    batches = list(aligned_batches(wanted, 4).values())
    parts = shards.split(batches, 3, weight=len)
    flat = [i for part in parts for batch in part for i in batch]
    assert flat == wanted
    numbers = [{i // 4 for batch in part for i in batch} for part in parts]
    # no batch in two shards, and the shards in order
    assert all(max(a_) < min(b_) for a_, b_ in zip(numbers, numbers[1:], strict=False))
    sizes = [sum(map(len, part)) for part in parts]
    assert max(sizes) - min(sizes) <= max(map(len, batches)) and sizes == [5, 7, 6]  # 6 each is out of reach


# -- settings and preflight ---------------------------------------------------------------------------------------


def test_shard_devices_default_to_one_per_gpu_or_the_run_device_and_bad_settings_are_named():
    assert shards.devices_for(1, None, "cpu") == ["cpu"]
    assert shards.devices_for(2, None, "cpu") == ["cpu", "cpu"]
    assert shards.devices_for(3, None, "cuda") == ["cuda:0", "cuda:1", "cuda:2"]
    assert shards.devices_for(2, ["cuda:1", "cuda:3"], "cuda") == ["cuda:1", "cuda:3"]
    for count, devices, device, message in [
        (2, ["cpu"], "cpu", r"shard_devices lists 1 device\(s\) but settings.shards=2"),
        (2, ["cuda:0", "cpu"], "cuda", r"shard_devices has \['cpu'\] but the run's device is 'cuda'"),
        (2, ["cuda", "cuda:0"], "cuda", r"names \['cuda:0'\] more than once: one worker per GPU"),
    ]:
        with pytest.raises(shards.ShardSettingError, match=message):
            shards.devices_for(count, devices, device)


def test_bad_shard_settings_fail_the_run_once_before_any_step(tmp_path):
    import dagster as dg

    from tests.dagster_support import run_failure_messages, run_job

    with dg.instance_for_test() as instance:
        result = run_job(
            SMOKE,
            tmp_path,
            instance,
            ["latent_codes", "raw_images"],
            settings={"n_images": 4, "shards": 2, "shard_devices": ["cpu", "cuda:0"]},
        )
        messages = "\n".join(run_failure_messages(instance, result.run_id))
    assert not result.success and not (tmp_path / "artifacts").exists()
    assert "settings.shard_devices has ['cuda:0'] but the run's device is 'cpu'" in messages
    assert "Traceback" not in messages


def test_a_sharded_step_asks_kubernetes_for_one_gpu_per_shard():
    """$OHLORA_SHARDS, read when the location loads, sets the GPU request of the sharded steps' pods; the others
    keep one GPU. The tags resolve to valid Kubernetes specs (dagster-k8s's helpers, as test_deploy.py does)."""
    code = textwrap.dedent("""
        import json
        from ohlora_dagster.definitions import location
        tags = {a.key.path[-1]: a.op.tags.get("dagster-k8s/config") for a in location("full").assets if a.op.pool}
        print(json.dumps(tags))
    """)
    env = {**os.environ, "OHLORA_SHARDS": "2"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    tags = json.loads(out.stdout.strip().splitlines()[-1])
    import kubernetes
    from dagster_k8s.job import get_user_defined_k8s_config
    from dagster_k8s.models import k8s_model_from_dict

    for name, config in tags.items():
        if config is None:
            continue
        container = k8s_model_from_dict(
            kubernetes.client.V1Container,
            {"name": "step", **get_user_defined_k8s_config({"dagster-k8s/config": config}).container_config},
        )
        gpus = "2" if name in SHARDED else "1"
        assert container.resources.limits == {"nvidia.com/gpu": gpus}, name
        assert container.resources.requests["cpu"] == str(4 * int(gpus)), name
    assert set(SHARDED) <= {n for n, c in tags.items() if c}


# -- one shard vs two ---------------------------------------------------------------------------------------------


def _chain(root: Path, count: int) -> dict:
    """The smoke chain latent_codes -> ... -> segmentation_maps with `count` shards (prepared fold models: their
    training is slow on a CPU and not sharded). Returns each sharded asset's metadata."""
    import dagster as dg
    import pandas as pd

    from tests import upstream
    from tests.dagster_support import materialize, meta

    settings = {**SETTINGS, "shards": count}
    with dg.instance_for_test() as instance:
        first = materialize(SMOKE, CHAIN[:3], root, instance, **settings)
        upstream.gender_quality_models(root, SMOKE)
        scores = materialize(SMOKE, CHAIN[3:4], root, instance, **settings)
        table = pd.read_csv(_folder(root, "gender_quality_scores") / "all_image_quality_and_gender.csv")
        keep = {"gender_min": 0.0, "quality_min": float(table["quality_score"].nlargest(KEPT).min())}
        rest = materialize(
            SMOKE, CHAIN[4:], root, instance, run_config={"ops": {"filtered_images": {"config": keep}}}, **settings
        )
    return {
        "raw_images": meta(first, SMOKE, "raw_images"),
        "gender_quality_scores": meta(scores, SMOKE, CHAIN[3]),
        "segmentation_maps": meta(rest, SMOKE, "segmentation_maps"),
        "kept": meta(rest, SMOKE, CHAIN[4])["kept"],
    }


def _folder(root: Path, name: str) -> Path:
    from ohlora_core.layout import StorageLayout

    return StorageLayout(root, SMOKE).artifact_dir(name) / "current"


def _outputs(root: Path, name: str) -> dict[str, bytes]:
    """Every file of the asset's current recipe, but the ledger and the stat sidecars (they hold mtimes)."""
    folder = _folder(root, name)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "ledger.jsonl" and not p.name.endswith(".stat.tsv")
    }


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_shard")
    return root, _chain(root, 1)


def test_a_two_shard_run_equals_the_one_shard_run_byte_for_byte(one_shard, tmp_path):
    root, single = one_shard
    double = _chain(tmp_path, 2)
    for name in CHAIN:
        mine, theirs = _outputs(tmp_path, name), _outputs(root, name)
        assert mine == theirs, (name, sorted(k for k in mine if mine[k] != theirs.get(k)))
    assert len([k for k in _outputs(root, "raw_images") if k.startswith("images/")]) == 19
    kept = double["kept"]
    maps = [k for k in _outputs(root, "segmentation_maps") if k.startswith("segmentation_results/")]
    assert kept >= KEPT and len(maps) == 3 * kept  # face, parsing and overlay of every kept image
    for name in SHARDED:
        assert (single[name]["shards"], double[name]["shards"]) == (1, 2), name
    assert double["raw_images"]["generated_now"] == 19 and double["segmentation_maps"]["parsed_now"] == kept


# -- failures -----------------------------------------------------------------------------------------------------


def _fails_on_bad(payload, device, emit):
    """A worker (module-level: the spawned process imports it) whose shard "bad" fails after one batch, "die"
    dies without a word and "slow" would outlive the test unless stopped."""
    emit(payload)
    if payload == "bad":
        raise ValueError("cannot read image 000007.jpg: truncated")
    if payload == "eio":
        raise OSError(5, "Input/output error", "/data/storage/images/000007.jpg")
    if payload == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if payload == "slow":
        time.sleep(600)
    return payload


def test_a_failing_or_dying_worker_is_named_and_an_error_or_interrupt_stops_the_others():
    seen = []
    start = time.perf_counter()
    with pytest.raises(shards.ShardError) as failed:
        shards.run(_fails_on_bad, [("cpu", "slow"), ("cpu", "bad")], lambda k, m: seen.append((k, m)), name="stage")
    assert (
        str(failed.value) == "stage: shard 1 of 2 (device cpu) failed: ValueError: cannot read image 000007.jpg: "
        "truncated"
    )
    assert failed.value.shard == 1 and "_fails_on_bad" in str(failed.value.__cause__)  # the worker's traceback
    with pytest.raises(shards.ShardError, match=r"stage: shard 0 of 2 \(device cpu\) died with exit code -9"):
        shards.run(_fails_on_bad, [("cpu", "die"), ("cpu", "slow")], lambda k, m: None, name="stage")
    with pytest.raises(OSError) as io_error:  # an I/O error stays one: the GPU steps retry transient ones
        shards.run(_fails_on_bad, [("cpu", "eio"), ("cpu", "slow")], lambda k, m: None, name="stage")
    from ohlora_dagster.gpu import is_transient

    assert io_error.value.errno == 5 and "shard 0 of 2" in str(io_error.value) and is_transient(io_error.value)

    def interrupt(_shard, _message):
        raise KeyboardInterrupt  # Ctrl-C in the step's process, while its workers run

    with pytest.raises(KeyboardInterrupt):
        shards.run(_fails_on_bad, [("cpu", "slow"), ("cpu", "slow")], interrupt, name="stage")
    assert time.perf_counter() - start < 60  # the slow workers were stopped, not waited for
    assert (1, "bad") in seen  # messages sent before the failure arrived
    assert shards.run(_fails_on_bad, [("cpu", "ok"), ("cpu", "fine")], lambda k, m: None) == ["ok", "fine"]


KILLED_RUN = """
import sys
from ohlora_core.artifacts import RawImages
from ohlora_core.generation import LatentFile, generate_missing
from ohlora_core.layout import StorageLayout
from ohlora_core.pipeline.generation import stylegan_recipe
from ohlora_core.pretrained import Sources

latents, folder, root = sys.argv[1:]
recipe = stylegan_recipe(Sources(StorageLayout(root, "smoke")), 0)
generate_missing(None, LatentFile(latents), 8, RawImages(folder), batch_size=2, shard_devices=["cpu", "cpu"],
                 recipe=recipe)
"""


def _children(pid: int) -> list[int]:
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_sharded_run_reruns_to_identical_files(one_shard, tmp_path):
    """SIGKILL the parent of two generation workers once the first batch is in the ledger: the workers exit by
    themselves, and a sharded rerun keeps what was recorded, makes the rest and gives the 1-shard run's bytes."""
    from ohlora_core import artifacts as a
    from ohlora_core.generation import LatentFile, generate_missing, write_latent_codes
    from ohlora_core.layout import StorageLayout
    from ohlora_core.pipeline.generation import stylegan_recipe
    from ohlora_core.pretrained import Sources
    from ohlora_core.stylegan import smoke_generator

    latents, files = tmp_path / "latents.npy", a.RawImages(tmp_path / "raw")
    write_latent_codes(latents, 0, 8)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(latents), str(files.dir), str(tmp_path)], cwd=ROOT)
    ledger = files.dir / "ledger.jsonl"
    deadline = time.monotonic() + 60
    while not (ledger.exists() and ledger.read_text().count("\n") >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "no batch recorded in 60 s"
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(workers) >= 2  # the spawned workers (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 15
    while any(map(_running, workers)):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.1)

    recipe = stylegan_recipe(Sources(StorageLayout(tmp_path, SMOKE)), 0)
    result = generate_missing(
        smoke_generator(0), LatentFile(latents), 8, files, batch_size=2, shard_devices=["cpu", "cpu"], recipe=recipe
    )
    assert 2 <= len(result.skipped) < 8 and sorted(result.skipped + result.written) == list(range(8))
    reference = StorageLayout(one_shard[0], SMOKE).current(a.RawImages)
    assert sorted(p.name for p in files.images_dir.iterdir()) == [f"{i:06d}.jpg" for i in range(8)]
    for i in range(8):
        assert files.image(i).read_bytes() == reference.image(i).read_bytes(), i
    manifest = json.loads(files.manifest.read_text())
    assert manifest == {k: v for k, v in json.loads(reference.manifest.read_text()).items() if int(k[7:13]) < 8}
