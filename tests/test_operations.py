"""Running it for months: progress lines, GPU out-of-memory handling, transient-failure retries, re-execution."""

import errno

import dagster as dg
import pytest
import torch

from ohlora_core.device import halving_batches, is_out_of_memory
from ohlora_core.progress import Progress
from ohlora_dagster.gpu import is_transient, retry_transient


def test_progress_lines_are_present_and_bounded():
    lines = []
    p = Progress(1000, lines.append, "stage", unit="images")
    for _ in range(1000):
        p.tick()
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("stage: 1000/1000 images (100 %)")
    assert "images/s, ETA" in lines[0]
    silent = Progress(5, None, "quiet")
    silent.tick(5)  # no logger: nothing to do, no error


def _oom_above(limit: int, calls: list):
    def run(batch: int) -> str:
        calls.append(batch)
        if batch > limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (batch {batch})")
        return f"done at {batch}"

    return run


def test_out_of_memory_halves_the_batch_until_it_fits():
    calls, log = [], []
    result, batch, failed = halving_batches(_oom_above(3, calls), 16, log.append)
    assert (result, batch, failed, calls) == ("done at 2", 2, [16, 8, 4], [16, 8, 4, 2])
    assert log == [
        "out of GPU memory at batch 16: retrying at batch 8",
        "out of GPU memory at batch 8: retrying at batch 4",
        "out of GPU memory at batch 4: retrying at batch 2",
    ]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        halving_batches(_oom_above(0, []), 4)  # even batch 1 does not fit: the error stands
    with pytest.raises(ValueError, match="not memory"):
        halving_batches(lambda b: (_ for _ in ()).throw(ValueError("not memory")), 8)
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory")) and not is_out_of_memory(RuntimeError("shape"))


def test_an_out_of_memory_generation_equals_a_run_at_the_smaller_batch(tmp_path, monkeypatch):
    import ohlora_core.generation as generation
    from tests.dagster_support import materialize, meta

    real = generation.generate_images

    def tight_gpu(generator, latents, indices, out_dir, batch_size=16, **kw):
        if batch_size > 2:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (batch {batch_size})")
        return real(generator, latents, indices, out_dir, batch_size=batch_size, **kw)

    with dg.instance_for_test() as instance:
        monkeypatch.setattr(generation, "generate_images", tight_gpu)
        result = materialize(
            "smoke", ["latent_codes", "raw_images"], tmp_path / "a", instance, n_images=3, batch_size=8
        )
        m = meta(result, "smoke", "raw_images")
        assert m["batch_size"] == 2 and m["out_of_memory_at"] == "8, 4"
        monkeypatch.undo()
        materialize("smoke", ["latent_codes", "raw_images"], tmp_path / "b", instance, n_images=3, batch_size=2)
    images = lambda root: {
        p.name: p.read_bytes()
        for p in (root / "artifacts" / "smoke" / "raw_images" / "current" / "images").iterdir()  # noqa: E731
    }
    assert images(tmp_path / "a") == images(tmp_path / "b") and len(images(tmp_path / "a")) == 3


def test_only_transient_failures_are_retried():
    assert is_transient(OSError(errno.EIO, "Input/output error"))
    assert is_transient(RuntimeError("CUDA error: unspecified launch failure"))
    assert not is_transient(ValueError("bad setting")) and not is_transient(OSError(errno.ENOENT, "missing"))

    @retry_transient
    def flaky():
        raise OSError(errno.ESTALE, "Stale file handle")

    @retry_transient
    def broken():
        raise FileNotFoundError("no such checkpoint")

    with pytest.raises(dg.RetryRequested):
        flaky()
    with pytest.raises(FileNotFoundError):
        broken()


def test_reexecute_from_failure_redoes_only_the_failed_step(tmp_path):
    """README's CLI re-execution: a run of tests/gpu_pool_job.py's two_step_job fails at needs_file (its file is
    missing); once the file is there, `python -m ohlora_dagster.reexecute RUN_ID` runs needs_file only, with the
    parent's config, in the parent's code location, linked to the parent; a run that succeeded is refused with a
    message, as is an unknown run id."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((repo / "dagster.yaml").read_text().replace("storage/dagster", str(home)))
    needed = tmp_path / "needed.txt"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"execution: {{config: {{in_process: {{}}}}}}\nops: {{needs_file: {{config: {{path: '{needed}'}}}}}}\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def run(*args):
        return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    failed = run("dg", "launch", "--job", "two_step_job", "-f", "tests/gpu_pool_job.py", "-c", str(config))
    assert failed.returncode != 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (parent,) = instance.get_runs()
        assert parent.status == dg.DagsterRunStatus.FAILURE
    needed.write_text("here")
    done = run(sys.executable, "-m", "ohlora_dagster.reexecute", parent.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"(re-execution of {parent.run_id}): SUCCESS" in done.stdout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        child = instance.get_runs(limit=1)[0]
        assert child.parent_run_id == parent.run_id and child.status == dg.DagsterRunStatus.SUCCESS
        assert child.run_config == parent.run_config
        started = {
            e.dagster_event.step_key
            for e in instance.all_logs(child.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
        }
        assert started == {"needs_file"}  # first_step succeeded in the parent: not redone
    again = run(sys.executable, "-m", "ohlora_dagster.reexecute", child.run_id)
    assert again.returncode != 0 and "is SUCCESS, not FAILURE or CANCELED" in again.stderr
    unknown = run(sys.executable, "-m", "ohlora_dagster.reexecute", "no-such-run")
    assert unknown.returncode != 0 and "no run 'no-such-run'" in unknown.stderr and "Traceback" not in unknown.stderr
