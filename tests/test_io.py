"""Atomic writes, leftovers from crashes, recipe stamps, strict checkpoint errors."""
import json

import pytest
import torch

from ohlora_core.io import (CheckpointError, atomic_path, atomic_write_text, clean_partial_files, load_checkpoint,
                            load_state_dict_strict, reset_if_recipe_changed, sha256_file, sha256_of_files)


def test_atomic_write_is_all_or_nothing(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_clean_partial_files_removes_only_temp_files(tmp_path):
    (tmp_path / "000001.jpg").write_bytes(b"ok")
    (tmp_path / "000002.jpg.tmp-x1").write_bytes(b"half")
    assert clean_partial_files(tmp_path) == 1 and [p.name for p in tmp_path.iterdir()] == ["000001.jpg"]


def test_recipe_change_removes_old_outputs(tmp_path):
    (tmp_path / "000001.jpg").write_bytes(b"a")
    assert reset_if_recipe_changed(tmp_path, {"seed": 0}, "*.jpg") == 0  # first recipe: nothing to remove
    assert reset_if_recipe_changed(tmp_path, {"seed": 0}, "*.jpg") == 0
    assert (tmp_path / "000001.jpg").exists()
    assert reset_if_recipe_changed(tmp_path, {"seed": 1}, "*.jpg") == 1
    assert not (tmp_path / "000001.jpg").exists()
    assert json.loads((tmp_path / "recipe.json").read_text()) == {"seed": 1}


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .*bad\.pt with weights_only=True"):
        load_checkpoint(bad)
    model = torch.nn.Linear(2, 3)
    sd = {"weight": torch.zeros(3, 3), "extra": torch.zeros(1)}
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(model, sd, "file.pt['generator']")
    msg = str(err.value)
    assert "file.pt['generator'] does not match Linear" in msg and "missing keys (1): bias" in msg
    assert "unexpected keys (1): extra" in msg and "weight: checkpoint (3, 3) vs model (3, 2)" in msg


def test_sha256_of_files_depends_on_content_and_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    import hashlib

    assert sha256_of_files([a, b]) == hashlib.sha256((sha256_file(a) + sha256_file(b)).encode()).hexdigest()
    assert sha256_of_files([a, b]) != sha256_of_files([b, a])
