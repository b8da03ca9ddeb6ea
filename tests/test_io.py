"""Atomic writes, leftovers from crashes, recipe folders and ledgers, strict checkpoint errors."""

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from ohlora_core.io import (
    CheckpointError,
    atomic_path,
    atomic_write_text,
    clean_partial_files,
    load_checkpoint,
    load_state_dict_strict,
    sha256_file,
    sha256_of_files,
    state_dict_in,
)
from ohlora_core.store import Ledger, MissingArtifact, RecipeDir, current_digest, current_dir


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


def test_files_get_the_mode_the_umask_allows(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    # a shared volume's group-writable umask, set before the process starts writing
    code = (
        "import os; os.umask(0o002); from ohlora_core.io import atomic_write_text; "
        "atomic_write_text(os.sys.argv[1], 'x')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.txt")], check=True)
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664


def test_recipe_folders_switch_current_only_when_complete(tmp_path):
    with pytest.raises(MissingArtifact, match="materialize that asset first"):
        current_dir(tmp_path / "asset")
    first = RecipeDir(tmp_path / "asset", {"seed": 0})
    atomic_write_text(first.open() / "out.txt", "old")
    digest = first.promote(["out.txt"])
    assert (current_dir(tmp_path / "asset") / "out.txt").read_text() == "old"
    assert current_digest(tmp_path / "asset") == digest and first.verified()

    second = RecipeDir(tmp_path / "asset", {"seed": 1})  # another recipe: its own folder
    atomic_write_text(second.open() / "out.txt", "new, half done")  # ... and the run dies here
    assert (current_dir(tmp_path / "asset") / "out.txt").read_text() == "old"  # readers see nothing of it
    again = RecipeDir(tmp_path / "asset", {"seed": 1})
    assert again.path == second.path and again.complete is None  # a rerun resumes in the same folder
    atomic_write_text(again.path / "out.txt", "new")
    assert again.promote(["out.txt"]) != digest
    assert (current_dir(tmp_path / "asset") / "out.txt").read_text() == "new"
    assert not first.path.exists()  # superseded only after the switch
    (again.path / "out.txt").write_text("edited")
    assert not again.verified()  # a recorded output that changed is not trusted


def test_ledger_decides_from_content_and_reuse_links_intact_items(tmp_path):
    ledger = Ledger(tmp_path / "a")
    (tmp_path / "a").mkdir()
    for i in range(3):
        (tmp_path / "a" / f"{i}.bin").write_bytes(bytes([i]))
    ledger.record({"item": i, "input": f"in{i}", "files": {f"{i}.bin": tmp_path / "a" / f"{i}.bin"}} for i in range(3))
    with open(ledger.path, "a") as f:
        f.write('{"item": 3, "inp')  # a write cut by a crash
    assert sorted(ledger.done({0: "in0", 1: "in1", 2: "other", 3: "in3"})) == [0, 1]
    (tmp_path / "a" / "1.bin").write_bytes(b"changed")
    assert sorted(ledger.done({0: "in0", 1: "in1"})) == [0]

    old = RecipeDir(tmp_path / "asset", {"item": {"w": 1}, "count": 2})
    (old.open() / "0.bin").write_bytes(b"zero")
    Ledger(old.path).record([{"item": 0, "input": "in0", "files": {"0.bin": old.path / "0.bin"}}])
    old.promote([])
    grown = RecipeDir(tmp_path / "asset", {"item": {"w": 1}, "count": 3})
    grown.open()
    assert grown.reuse_items({0: "in0", 1: "in1"}) == 1
    assert (grown.path / "0.bin").read_bytes() == b"zero" and os.path.samefile(grown.path / "0.bin", old.path / "0.bin")
    other = RecipeDir(tmp_path / "asset", {"item": {"w": 2}, "count": 3})  # other weights: nothing to reuse
    other.open()
    assert other.reuse_items({0: "in0"}) == 0


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .*bad\.pt with weights_only=True"):
        load_checkpoint(bad)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match=r"x\.pt: expected a state_dict \(names -> tensors\), found a list"):
        state_dict_in([1], "x.pt")
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


# --- one hash per file: stats beside the sha256, compaction, manifests streamed byte-identically ---


def _counting_hashes(monkeypatch) -> list:
    """Record every file store.py hashes (what the stat shortcut must avoid)."""
    import ohlora_core.store as store

    hashed = []

    def counted(path, *a, **k):
        hashed.append(os.path.basename(path))
        return sha256_file(path, *a, **k)

    monkeypatch.setattr(store, "sha256_file", counted)
    return hashed


def _ledger_with_files(folder, n: int) -> Ledger:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i}.bin").write_bytes(bytes([i]) * 10)
    ledger = Ledger(folder)
    ledger.record({"item": i, "input": f"in{i}", "files": {f"{i}.bin": folder / f"{i}.bin"}} for i in range(n))
    return ledger


def test_unchanged_files_are_not_rehashed_changed_ones_are(tmp_path, monkeypatch):
    ledger = _ledger_with_files(tmp_path / "a", 4)
    hashed = _counting_hashes(monkeypatch)
    inputs = {i: f"in{i}" for i in range(4)}
    assert sorted(ledger.done(inputs)) == [0, 1, 2, 3] and hashed == []  # size and mtime_ns as recorded
    os.utime(tmp_path / "a" / "1.bin", ns=(1, 10**18))  # touched: same bytes, another mtime
    (tmp_path / "a" / "2.bin").write_bytes(b"X" * 10)  # edited in place, same size
    os.utime(tmp_path / "a" / "2.bin", ns=(1, 2 * 10**18))
    assert sorted(ledger.done(inputs, refresh=True)) == [0, 1, 3] and sorted(hashed) == ["1.bin", "2.bin"]
    hashed.clear()
    assert sorted(ledger.done(inputs)) == [0, 1, 3] and hashed == ["2.bin"]  # 1.bin's new stat was recorded
    hashed.clear()
    assert sorted(ledger.done(inputs, verify="full")) == [0, 1, 3] and len(hashed) == 4


def test_the_blind_spot_same_size_and_mtime_needs_verify_full(tmp_path):
    """Documented limit of the cheap check: an in-place edit that keeps size AND mtime_ns."""
    ledger = _ledger_with_files(tmp_path / "a", 1)
    path = tmp_path / "a" / "0.bin"
    st = path.stat()
    path.write_bytes(b"Y" * 10)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sorted(ledger.done({0: "in0"})) == [0]  # not seen without reading the file ...
    assert sorted(ledger.done({0: "in0"}, verify="full")) == []  # ... seen with verify="full"


def test_records_of_older_ledgers_without_stats_are_hashed(tmp_path, monkeypatch):
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "0.bin").write_bytes(b"zero")
    line = {"item": 0, "input": "in0", "files": {"0.bin": sha256_file(folder / "0.bin")}}
    (folder / Ledger.NAME).write_text(json.dumps(line) + "\n")
    hashed = _counting_hashes(monkeypatch)
    assert sorted(Ledger(folder).done({0: "in0"})) == [0] and hashed == ["0.bin"]
    (folder / "0.bin").write_bytes(b"ZERO")
    assert sorted(Ledger(folder).done({0: "in0"})) == []


def test_promote_compacts_the_ledger_to_one_line_per_item(tmp_path):
    stage = RecipeDir(tmp_path / "asset", {"seed": 0})
    ledger = _ledger_with_files(stage.open(), 3)
    (stage.path / "1.bin").write_bytes(b"one, redone")
    ledger.record([{"item": 1, "input": "in1b", "files": {"1.bin": stage.path / "1.bin"}}])  # a later line wins
    with open(ledger.path, "a") as f:
        f.write('{"item": 2, "inp')  # a crash's tail
    before = ledger.records()
    assert len(ledger.path.read_text().splitlines()) == 5 and before[1]["input"] == "in1b"
    stage.promote([])
    lines = ledger.path.read_text().splitlines()
    assert len(lines) == 3 and [json.loads(x)["item"] for x in lines] == [0, 1, 2]
    assert ledger.records() == before  # same records, stats included
    assert sorted(ledger.done({0: "in0", 1: "in1b", 2: "in2"})) == [0, 1, 2]


@pytest.mark.parametrize(
    "obj",
    [{}, {"b": "x", "a": "y"}, {str(i): {"files": {"f": "s"}, "n": [1, 2], "u": "é"} for i in (1, 10, 2, 100, 3)}],
)
def test_streamed_json_is_byte_identical_to_json_dumps(tmp_path, obj):
    from ohlora_core.store import digest_text, write_sorted_json

    text = json.dumps(obj, indent=0, sort_keys=True)
    digest = write_sorted_json(tmp_path / "m.json", sorted(obj.items()), block=2)
    assert (tmp_path / "m.json").read_text() == text and digest == digest_text(text)


def test_manifest_without_stat_lines_and_sidecar_bound_to_manifest(tmp_path, monkeypatch):
    from ohlora_core.store import FileIndex, index_path

    ledger = _ledger_with_files(tmp_path / "a", 3)
    manifest = tmp_path / "a" / "manifest.json"
    digest = ledger.write_manifest(manifest, [2, 0, 1])
    records = {
        str(i): {"item": i, "input": f"in{i}", "files": {f"{i}.bin": sha256_file(tmp_path / "a" / f"{i}.bin")}}
        for i in range(3)
    }
    assert manifest.read_text() == json.dumps(records, indent=0, sort_keys=True)  # the bytes of before: same version
    hashed = _counting_hashes(monkeypatch)
    index = FileIndex.load(manifest)
    index.verify(tmp_path / "a", ["0.bin", "1.bin", "2.bin"], "asset")
    assert hashed == ["manifest.json"] and FileIndex.load(manifest) is index  # parsed once, files not read

    # a manifest rewritten without its sidecar (a crash between the writes): stats not trusted, all hashed
    manifest.write_text(manifest.read_text() + " ")
    hashed.clear()
    index = FileIndex.load(manifest)
    index.verify(tmp_path / "a", ["0.bin", "1.bin"], "asset")
    assert sorted(hashed) == ["0.bin", "1.bin", "manifest.json"] and index_path(manifest).is_file()
    assert digest != sha256_file(manifest)


def test_a_full_disk_names_the_file_being_written(tmp_path):
    """Issue 17 finding 6: "No space left on device" did not say where (write() errors carry no file name)."""
    import errno

    import pytest

    from ohlora_core.io import atomic_path

    target = tmp_path / "artifact.bin"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match=r"No space left on device while writing .*artifact\.bin") as err:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.filename == str(target) and target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact.bin"]  # no temp file left
