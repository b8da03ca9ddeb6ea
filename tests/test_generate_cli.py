"""`ohlora generate` at its edges (issue 17.2, 17.5, 17.6, 19.8): every bad request refused with exit 2 and a
one-line message before any file is written, requests that never mix in one folder, a record that replays
to the same bytes, and the messages a user reads.

Most cases run the command in-process (`ohlora_core.cli.main`) to stay fast; an exception escaping it
fails the test, which is what a traceback would be. One case runs the real console process."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ohlora_core.cli import main
from ohlora_core.scores.common import SCORE_NAMES
from ohlora_core.stylegan import StyleGANGenerator

FIX = Path(__file__).parent / "fixtures" / "finetune"
sys.path.insert(0, str(FIX))
import weights  # noqa: E402


def _cli(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `ohlora <args>` run in this process (argparse's exits included)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small 256x256 generators (narrow widths): a fine-tuned v3-like one, the pretrained (unconditional) one,
    a 128x128 conditional one, and a directions file fitted for the pretrained one's w (32 wide)."""
    root = tmp_path_factory.mktemp("generators")
    v3 = StyleGANGenerator(**weights.G_CONFIG, label_size=7, label_embed_dim=24)
    v3.load_state_dict(weights.conditional_generator_state(3, 7, 24))
    torch.save(v3.state_dict(), root / "v3_gen.pth")  # a bare state_dict, as the original saved it
    torch.save({"generator": weights.pretrained_generator_state(1)}, root / "pretrained.pth")
    small = StyleGANGenerator(**{**weights.G_CONFIG, "resolution": 128}, label_size=7, label_embed_dim=24)
    torch.save(small.state_dict(), root / "v3_128.pth")
    rng = np.random.default_rng(0)
    normals = rng.standard_normal((7, 32))
    np.savez(
        root / "directions.npz",
        names=np.array(SCORE_NAMES),
        method=np.array("ridge"),
        normals=normals / np.linalg.norm(normals, axis=1, keepdims=True),
        scale=np.ones(7),
        intercept=np.zeros(7),
    )
    return root


def _v3(files, out, *extra):
    return (
        "generate",
        "--version",
        "v3",
        "--checkpoint",
        files / "v3_gen.pth",
        "--device",
        "cpu",
        "--seed",
        0,
        "--out",
        out,
        *extra,
    )


def _images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".jpg")


# --- 17.2: non-finite and out-of-range requests -------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    [
        ("--eyes", "nan"),
        ("--eyes", "inf"),
        ("--mouth=-inf",),
        ("--eyes", "1e30"),
        ("--pose", "5.5"),
        ("--noise", "nan"),
        ("--noise", "inf"),
        ("--noise=-0.1",),
        ("--noise", "1e30"),
    ],
)
def test_non_finite_or_out_of_range_values_are_refused_before_anything_is_written(files, tmp_path, capsys, flag):
    code, out, err = _cli(capsys, *_v3(files, tmp_path / "out", "-n", 2, *flag))
    name = flag[0].split("=")[0]
    assert code == 2 and err.startswith(f"ohlora generate: {name} ") and "Traceback" not in err, err
    assert ("finite" in err) or ("outside" in err)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_the_help_states_each_propertys_range(capsys):
    code, out, _ = _cli(capsys, "generate", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for p in ("eyes", "hair-color", "hair-length", "mouth", "pose", "background-mean", "background-std"):
        assert f"--{p} VALUE" in flat
    assert flat.count("z-score in [-5, 5]") == 7 and "images, 1 to 10,000" in flat


def test_a_nan_inside_the_z_file_is_refused_naming_file_row_and_column(files, tmp_path, capsys):
    z = np.zeros((1, 512))
    z[0, 17] = np.nan
    pd.DataFrame(z).to_csv(tmp_path / "z.csv", index=False)
    code, _, err = _cli(capsys, *_v3(files, tmp_path / "out", "--z-csv", tmp_path / "z.csv"))
    assert code == 2 and f"{tmp_path / 'z.csv'}: row 1 (line 2), column 17 is nan" in err, err
    assert not (tmp_path / "out").exists()


# --- 17.5: counts, output folder, device, mixing, resolution ----------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (("--batch", -1), "--batch -1 must be at least 1"),
        (("-n", 0), "-n 0 must be at least 1"),
        (("-n", 10_001), "-n 10001 must be at most 10000"),
        (("--seed", -1), "--seed -1 must be at least 0"),
    ],
)
def test_counts_below_one_are_refused_for_both_methods(files, tmp_path, capsys, args, message):
    for method in (
        ["--method", "directions", "--directions", files / "directions.npz", "--generator", files / "pretrained.pth"],
        ["--method", "finetuned", "--checkpoint", files / "v3_gen.pth"],
    ):
        code, out, err = _cli(capsys, "generate", *method, "--device", "cpu", "--out", tmp_path / "out", *args)
        assert code == 2 and message in err and "wrote" not in out, (method, err, out)
        assert not (tmp_path / "out").exists()


def _as_non_root_user(monkeypatch):
    """root writes anywhere whatever the mode bits say, so a chmod alone cannot make a read-only folder for
    this test; answer os.access from the mode bits as the kernel does for an ordinary user (or a read-only
    mount does for root)."""
    real = os.access

    def access(path, mode, **kw):
        bits = os.stat(path).st_mode
        if mode & os.W_OK and not bits & 0o200:
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)


def test_an_unusable_output_folder_is_refused_with_a_message(files, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    code, _, err = _cli(capsys, *_v3(files, tmp_path / "a_file"))
    assert code == 2 and f"--out {tmp_path / 'a_file'} is a file, not a folder" in err, err
    code, _, err = _cli(capsys, *_v3(files, tmp_path / "a_file" / "sub" / "out"))
    assert code == 2 and f"{tmp_path / 'a_file'} is a file, not a folder" in err, err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    _as_non_root_user(monkeypatch)
    code, _, err = _cli(capsys, *_v3(files, locked / "out"))
    assert code == 2 and f"cannot write in {locked}" in err, err
    assert (tmp_path / "a_file").read_text() == "x" and list(locked.iterdir()) == []


@pytest.mark.parametrize(
    "device, expected", [("cdua", "--device='cdua' is not a torch device"), ("cuda:99", "--device='cuda:99', but")]
)
def test_a_device_this_machine_lacks_is_refused_naming_the_flag(files, tmp_path, capsys, device, expected):
    code, _, err = _cli(
        capsys, "generate", "--checkpoint", files / "v3_gen.pth", "--out", tmp_path / "o", "--device", device
    )
    assert code == 2 and err.startswith("ohlora generate: ") and expected in err and len(err.splitlines()) == 1, err


def test_cuda_without_cuda_is_refused(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _cli(
        capsys, "generate", "--checkpoint", files / "v3_gen.pth", "--out", tmp_path / "o", "--device", "cuda"
    )
    assert code == 2 and "--device='cuda', but CUDA is not available on this machine" in err, err


def test_two_requests_never_mix_in_one_folder(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(capsys, *_v3(files, out, "-n", 5))[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = _cli(capsys, *_v3(files, out, "-n", 3, "--eyes", 0.5))
    assert code == 2 and f"--out {out} is not empty" in err and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # refused: untouched
    assert _cli(capsys, *_v3(files, out, "-n", 3, "--eyes", 0.5, "--overwrite"))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg", "request.json"]
    fresh = tmp_path / "fresh"
    assert _cli(capsys, *_v3(files, fresh, "-n", 3, "--eyes", 0.5))[0] == 0
    for name in _images(fresh):  # the overwritten folder is what a fresh run leaves
        assert (out / name).read_bytes() == (fresh / name).read_bytes()
    assert json.loads((out / "request.json").read_text())["values"] == {"eyes": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "out"]  # no staging folder left behind


def test_a_failed_write_leaves_the_previous_request_and_names_the_path(files, tmp_path, capsys, monkeypatch):
    import ohlora_core.finetune.generate as core

    out = tmp_path / "out"
    assert _cli(capsys, *_v3(files, out, "-n", 2))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = core.atomic_write_bytes, []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(core, "atomic_write_bytes", full_disk)
    code, _, err = _cli(capsys, *_v3(files, out, "-n", 3, "--overwrite"))
    assert code == 1 and "No space left on device" in err and f"{calls[1]}" in err and str(out) in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_generator_that_is_not_256x256_is_refused_naming_the_file(files, tmp_path, capsys):
    code, _, err = _cli(
        capsys, "generate", "--checkpoint", files / "v3_128.pth", "--out", tmp_path / "o", "--device", "cpu", "-n", 1
    )
    assert code == 2 and f"{files / 'v3_128.pth'} is a 128x128 generator; expected 256x256" in err, err
    assert not (tmp_path / "o").exists()


# --- 17.6 (generate): the generator each method needs, named when wrong -------------------------------------


def test_a_fine_tuned_generator_given_as_the_pretrained_one_is_refused_naming_the_file(files, tmp_path, capsys):
    code, _, err = _cli(
        capsys,
        "generate",
        "--method",
        "directions",
        "--directions",
        files / "directions.npz",
        "--generator",
        files / "v3_gen.pth",
        "--out",
        tmp_path / "o",
        "--device",
        "cpu",
        "-n",
        1,
    )
    assert code == 2 and f"{files / 'v3_gen.pth'} is a fine-tuned (label-conditioned, 7 labels) generator" in err
    assert "--generator" in err and not (tmp_path / "o").exists()


def test_an_unconditional_generator_for_the_finetuned_method_is_refused(files, tmp_path, capsys):
    code, _, err = _cli(
        capsys,
        "generate",
        "--checkpoint",
        files / "pretrained.pth",
        "--out",
        tmp_path / "o",
        "--device",
        "cpu",
        "-n",
        1,
    )
    assert code == 2 and f"{files / 'pretrained.pth'} is an unconditional (pretrained) generator" in err, err


def test_a_missing_directions_file_is_a_usage_error(files, tmp_path, capsys):
    code, _, err = _cli(
        capsys,
        "generate",
        "--method",
        "directions",
        "--directions",
        tmp_path / "none.npz",
        "--generator",
        files / "pretrained.pth",
        "--out",
        tmp_path / "o",
        "--device",
        "cpu",
    )
    assert code == 2 and f"directions file not found: {tmp_path / 'none.npz'}" in err, err


# --- the request record -------------------------------------------------------------------------------------


def test_the_request_is_recorded_and_replays_to_the_same_bytes(files, tmp_path, capsys):
    from ohlora_core.finetune.request import GenerationRequest
    from ohlora_core.io import sha256_file

    z = np.random.default_rng(5).standard_normal((1, 512))
    pd.DataFrame(z).to_csv(tmp_path / "z.csv", index=False)
    out = tmp_path / "out"
    code, stdout, _ = _cli(
        capsys, *_v3(files, out, "-n", 3, "--z-csv", tmp_path / "z.csv", "--pose", -1.2, "--noise", 0.25, "--batch", 2)
    )
    assert code == 0 and f"request: {out / 'request.json'}" in stdout
    record = json.loads((out / "request.json").read_text())
    assert record["method"] == "finetuned" and record["version"] == "v3" and record["values"] == {"pose": -1.2}
    assert (record["n"], record["noise"], record["seed"], record["batch"], record["device"]) == (3, 0.25, 0, 2, "cpu")
    assert record["generator"]["path"] == str((files / "v3_gen.pth").resolve())
    assert record["generator"]["sha256"] == sha256_file(files / "v3_gen.pth")
    assert record["z_file"] == str((tmp_path / "z.csv").resolve())
    assert record["z_sha256"] == sha256_file(tmp_path / "z.csv")
    assert record["z"] == z[0].tolist()  # the row itself, exactly (JSON keeps every float64 bit)
    request = GenerationRequest.from_json((out / "request.json").read_text())
    assert record["command"] == " ".join(request.argv(out))
    # replay the record, and run the command it recorded: both give the same bytes
    assert _cli(capsys, "generate", "--request", out / "request.json", "--out", tmp_path / "replay")[0] == 0
    assert _cli(capsys, *request.argv(tmp_path / "again")[1:])[0] == 0
    for name in _images(out):
        assert (tmp_path / "replay" / name).read_bytes() == (out / name).read_bytes()
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    assert _images(tmp_path / "replay") == ["000000.jpg", "000001.jpg", "000002.jpg"]


def test_a_replay_refuses_a_changed_generator_and_extra_flags(files, tmp_path, capsys):
    import shutil

    ckpt = tmp_path / "g.pth"
    shutil.copy(files / "v3_gen.pth", ckpt)
    assert _cli(capsys, "generate", "--checkpoint", ckpt, "--out", tmp_path / "out", "--device", "cpu", "-n", 1)[0] == 0
    code, _, err = _cli(
        capsys, "generate", "--request", tmp_path / "out" / "request.json", "--out", tmp_path / "r", "-n", 4
    )
    assert code == 2 and "--request replays a recorded request" in err and "-n" in err, err
    torch.save({"generator": weights.conditional_generator_state(9, 7, 24)}, ckpt)
    code, _, err = _cli(capsys, "generate", "--request", tmp_path / "out" / "request.json", "--out", tmp_path / "r")
    assert code == 2 and f"{ckpt} has changed since the request was recorded" in err, err
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = _cli(capsys, "generate", "--request", tmp_path / "bad.json", "--out", tmp_path / "r")
    assert code == 2 and f"{tmp_path / 'bad.json'}: not a request record" in err, err
    assert not (tmp_path / "r").exists()


# --- 19.8: messages -----------------------------------------------------------------------------------------


def test_messages_use_plural_forms_and_name_the_folder(files, tmp_path, capsys):
    code, out, _ = _cli(capsys, *_v3(files, tmp_path / "one", "-n", 1))
    assert code == 0 and f"wrote 1 image to {tmp_path / 'one'} " in out
    code, out, _ = _cli(capsys, *_v3(files, tmp_path / "two", "-n", 2))
    assert code == 0 and f"wrote 2 images to {tmp_path / 'two'} " in out and "smoke mode" not in out


def test_a_smoke_generator_from_the_assets_says_so_and_is_recorded(files, tmp_path, capsys):
    """A stand-in storage with a promoted stylegan_finetune_v3 in smoke mode (the store's layout)."""
    from ohlora_core.store import current_digest

    recipe = tmp_path / "storage" / "artifacts" / "smoke" / "stylegan_finetune_v3" / "abc"
    recipe.mkdir(parents=True)
    (recipe / "stylegan_gen_fine_tuned_v3.pth").write_bytes((files / "v3_gen.pth").read_bytes())
    (recipe / "complete.json").write_text(json.dumps({"digest": "d1g357", "files": {}}))
    (recipe.parent / "current").symlink_to("abc")
    code, out, _ = _cli(
        capsys,
        "generate",
        "--storage",
        tmp_path / "storage",
        "--mode",
        "smoke",
        "-n",
        2,
        "--out",
        tmp_path / "o",
        "--device",
        "cpu",
    )
    assert code == 0 and "smoke mode: random weights — these images are noise, not faces" in out
    record = json.loads((tmp_path / "o" / "request.json").read_text())
    assert record["generator"] == {
        "path": str((recipe / "stylegan_gen_fine_tuned_v3.pth").resolve()),
        "sha256": record["generator"]["sha256"],
        "asset": "stylegan_finetune_v3",
        "mode": "smoke",
        "data_version": current_digest(recipe.parent),
    }
    assert f"--storage {tmp_path / 'storage'} --mode smoke" in record["command"]
    assert "--checkpoint" not in record["command"]
    code, out, _ = _cli(
        capsys,
        "generate",
        "--checkpoint",
        recipe / "stylegan_gen_fine_tuned_v3.pth",
        "-n",
        1,
        "--out",
        tmp_path / "by_path",
        "--device",
        "cpu",
    )
    assert code == 0 and "smoke mode: random weights" in out  # the same file given by path


def test_an_unknown_flag_prints_generates_usage(capsys):
    code, _, err = _cli(capsys, "generate", "--smile")
    assert code == 2 and err.startswith("usage: ohlora generate ") and "unrecognized arguments: --smile" in err, err
    code, _, err = _cli(capsys, "generate")
    assert code == 2 and err.startswith("usage: ohlora generate ") and "arguments are required: --out" in err, err


def test_the_console_command_exits_2_without_a_traceback(files, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ohlora_core.cli",
            "generate",
            "--checkpoint",
            files / "v3_gen.pth",
            "--out",
            tmp_path / "o",
            "--eyes",
            "nan",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("ohlora generate: --eyes nan") and done.stdout == ""
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()
