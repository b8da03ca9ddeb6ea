"""Where an asset's outputs live, and how a run replaces them without ever losing them.

One asset folder holds one sub-folder per *recipe* (everything that fixes the output bytes:
weights, input digests, settings) and a `current` link to the complete one:

    <asset>/recipes/<key>/...        outputs of one recipe (key = sha256 of the recipe, 16 hex)
    <asset>/recipes/<key>/recipe.json
    <asset>/current -> recipes/<key> readers only ever open this

A run writes into its own recipe's folder and switches `current` with one atomic rename once the
outputs are complete (`RecipeDir.promote`). Until then the previous outputs stay exactly as they
were: a failed run, a rejected setting or a crash changes nothing a reader sees, and a rerun of the
same recipe resumes in the same folder. Superseded recipe folders are removed only after the switch.

Per-item stages (one image in, files out) keep a `Ledger` in their recipe folder: what was done is
decided from recorded content (input digest + sha256 of each output file), never from a file's
existence, so a changed input or a damaged output is redone and everything else is reused.

One hash per file per producer: the producer hashes the bytes it writes (in memory) and records
each file's sha256 with its size and mtime_ns. Later checks (a rerun, a consumer) take a file whose
size and mtime_ns are still the recorded ones as unchanged and re-hash only the others
(`verify="stat"`, the default); `verify="full"` re-hashes every file. The one blind spot of the
cheap check: a file edited in place that keeps both its size and its mtime (an edit within the same
filesystem timestamp tick as the write, or a tool that restores the mtime). A manifest's stats live
in a sidecar (`<manifest stem>.stat.tsv`, see `FileIndex`) bound to the manifest's sha256, so the
manifest itself, and every data version computed from it, has the same bytes as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat as stat_mod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ohlora_core.io import atomic_path, atomic_write_text, sha256_file

CURRENT = "current"
RECIPES = "recipes"
RECIPE_FILE = "recipe.json"
COMPLETE_FILE = "complete.json"
VERIFY_MODES = ("stat", "full")


class MissingArtifact(FileNotFoundError):
    """An asset's outputs were asked for before the asset was materialized."""


class ArtifactChanged(ValueError):
    """A file no longer has the bytes its producer recorded."""


def _check_mode(verify: str) -> None:
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")


def file_stat(path: str | os.PathLike) -> tuple[int, int] | None:
    """(size, mtime_ns) of a regular file, None where there is none."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat_mod.S_ISREG(st.st_mode) else None


def file_intact(
    path: str | os.PathLike, sha: str, recorded: tuple[int, int] | None, verify: str = "stat"
) -> tuple[int, int] | None:
    """The file's current (size, mtime_ns) if it still has the bytes hashing to `sha`, else None.
    With verify="stat" a file whose (size, mtime_ns) equal `recorded` is not read again. The stat is
    taken before the hash, so a file changed while it is hashed is never paired with the old sha."""
    now = file_stat(path)
    if now is None:
        return None
    if verify == "stat" and recorded is not None and now == tuple(recorded):
        return now
    return now if sha256_file(path) == sha else None


def verify_files(
    folder: str | os.PathLike,
    expected: Mapping[str, str],
    producer: str,
    index: FileIndex | None = None,
    verify: str = "stat",
) -> None:
    """Check files (`{name relative to folder: sha256}`) before a consumer reads them; the error names
    the first missing or changed file and the asset to re-materialize. Without an `index` (the
    producer's recorded stats) every file is hashed; with one, see `FileIndex`."""
    _check_mode(verify)
    for name, sha in expected.items():
        recorded = index.stat_if(name, sha) if index is not None else None
        if file_intact(Path(folder) / name, sha, recorded, verify) is None:
            raise ArtifactChanged(
                f"{Path(folder) / name} is missing or differs from what {producer} wrote "
                f"(sha256 {sha[:12]}...); re-materialize {producer}"
            )


def recipe_text(recipe: Mapping) -> str:
    return json.dumps(recipe, indent=1, sort_keys=True, default=str)


def digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def current_dir(asset_dir: str | os.PathLike) -> Path:
    """The complete outputs of an asset (`<asset>/current`), or a clear error if there are none."""
    link = Path(asset_dir) / CURRENT
    if not (link.is_symlink() and link.resolve().is_dir() and (link / COMPLETE_FILE).is_file()):
        raise MissingArtifact(
            f"{Path(asset_dir).name} has no complete outputs under {asset_dir}; materialize that asset first"
        )
    return link


def current_digest(asset_dir: str | os.PathLike) -> str:
    """The data version recorded when the current outputs were promoted."""
    return json.loads((current_dir(asset_dir) / COMPLETE_FILE).read_text())["digest"]


# --- manifests written as a stream, byte-identical to json.dumps(obj, indent=0, sort_keys=True) ---


def write_sorted_json(path: str | os.PathLike, pairs: Iterable[tuple[str, Any]], block: int = 4096) -> str:
    """Write `{key: value for key, value in pairs}` (pairs sorted by key, keys unique) exactly as
    `json.dumps(obj, indent=0, sort_keys=True)` would, without building the whole text; atomic.
    Returns the sha256 of the text (what `digest_text` of the json.dumps text gives)."""
    h = hashlib.sha256()
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:

        def put(text: str) -> None:
            h.update(text.encode("utf-8"))
            f.write(text)

        parts, first = [], True
        for key, value in pairs:
            parts.append(
                ("{\n" if first else ",\n") + json.dumps(key) + ": " + json.dumps(value, indent=0, sort_keys=True)
            )
            first = False
            if len(parts) >= block:
                put("".join(parts))
                parts = []
        put("".join(parts) + ("{}" if first else "\n}"))
    return h.hexdigest()


# --- the stat sidecar of a manifest ---

INDEX_HEADER = "ohlora-file-index 1"
_INDEX_CACHE: dict[str, tuple[tuple, FileIndex]] = {}
_INDEX_CACHE_SIZE = 2  # manifests of up to 10^6 images are ~100-300 MB parsed: keep the last two only


def index_path(manifest: str | os.PathLike) -> Path:
    """The stat sidecar of a manifest: `manifest.json` -> `manifest.stat.tsv`."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + ".stat.tsv")


def write_file_index(
    manifest: str | os.PathLike, manifest_sha: str, entries: Iterable[tuple[str, str, tuple[int, int] | None]]
) -> None:
    """Write the sidecar of `manifest` (whose sha256 is `manifest_sha`): one line per file,
    `name<TAB>sha256<TAB>size<TAB>mtime_ns` ('-' where no stat was recorded). Atomic, streamed."""
    with atomic_path(index_path(manifest)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{INDEX_HEADER} {manifest_sha}\n")
        lines = []
        for name, sha, st in entries:
            if "\t" in name or "\n" in name:
                raise ValueError(f"file name {name!r} cannot be indexed (tab or newline)")
            lines.append(f"{name}\t{sha}\t{st[0]}\t{st[1]}\n" if st else f"{name}\t{sha}\t-\t-\n")
            if len(lines) >= 4096:
                f.write("".join(lines))
                lines = []
        f.write("".join(lines))


class FileIndex:
    """{file name: sha256 and the (size, mtime_ns) recorded for it} of the files a manifest lists,
    column-wise (~130 bytes per file: names, sha256 and stats in numpy arrays sorted by name).

    Read from the manifest's sidecar when the sidecar names the manifest's current sha256 (a
    sidecar left by a crash between the two writes, or missing, is ignored); else parsed from the
    manifest itself, without stats, so every file is hashed. Parsed once per manifest version
    (`load` caches by the files' inode, size and mtime_ns). A file that passed a re-hash keeps its
    new stat in memory, so the next check of it is cheap again.
    """

    def __init__(self, names: np.ndarray, shas: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray) -> None:
        order = np.argsort(names, kind="stable")
        self.names, self.shas, self.sizes, self.mtimes = names[order], shas[order], sizes[order], mtimes[order]

    @classmethod
    def load(cls, manifest: str | os.PathLike) -> FileIndex:
        manifest = Path(manifest)
        key = (_stamp(manifest), _stamp(index_path(manifest)))
        cached = _INDEX_CACHE.get(str(manifest))
        if cached is not None and cached[0] == key:
            return cached[1]
        if key[0] is None:
            raise MissingArtifact(f"manifest {manifest} does not exist; materialize its asset first")
        index = cls._from_sidecar(manifest, sha256_file(manifest)) or cls._from_manifest(manifest)
        _INDEX_CACHE.pop(str(manifest), None)
        while len(_INDEX_CACHE) >= _INDEX_CACHE_SIZE:
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
        _INDEX_CACHE[str(manifest)] = (key, index)
        return index

    @classmethod
    def _columns(cls, rows: Iterable[tuple[str, str, str, str]]) -> FileIndex:
        """From (name, sha, size or '-', mtime or '-') rows, packed into arrays every 64k rows."""
        chunks, block = [], []

        def pack() -> None:
            if block:
                names, shas, sizes, mtimes = zip(*block)
                chunks.append(
                    (
                        np.array([n.encode() for n in names], dtype=bytes),
                        np.array(shas, dtype="S64"),
                        np.array([-1 if v == "-" else int(v) for v in sizes], np.int64),
                        np.array([0 if v == "-" else int(v) for v in mtimes], np.int64),
                    )
                )
                block.clear()

        for row in rows:
            block.append(row)
            if len(block) >= 4096:
                pack()
        pack()
        if not chunks:
            return cls(np.zeros(0, "S1"), np.zeros(0, "S64"), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return cls(*(np.concatenate([c[j] for c in chunks]) for j in range(4)))

    @classmethod
    def _from_sidecar(cls, manifest: Path, manifest_sha: str) -> FileIndex | None:
        try:
            with open(index_path(manifest), encoding="utf-8") as f:
                if f.readline() != f"{INDEX_HEADER} {manifest_sha}\n":
                    return None  # another manifest's sidecar (a crash between the two writes): not trusted
                return cls._columns(_four_fields(line) for line in f)
        except (FileNotFoundError, ValueError):
            return None

    @classmethod
    def _from_manifest(cls, manifest: Path) -> FileIndex:
        data = json.loads(manifest.read_text())

        def rows():
            for key, value in data.items():  # {name: sha} or {item: ledger record}
                for name, sha in ({key: value} if isinstance(value, str) else value.get("files", {})).items():
                    yield name, sha, "-", "-"

        return cls._columns(rows())

    def _row(self, name: str) -> int | None:
        key = name.encode()
        if len(key) > self.names.dtype.itemsize:
            return None  # longer than every listed name (and would be cut short by the cast below)
        # the key in the array's own dtype: with another width numpy casts the whole array on every search
        k = int(np.searchsorted(self.names, np.array(key, dtype=self.names.dtype)))
        return k if k < len(self.names) and self.names[k] == key else None

    def __contains__(self, name: str) -> bool:
        return self._row(name) is not None

    def __len__(self) -> int:
        return len(self.names)

    def sha(self, name: str) -> str:
        k = self._row(name)
        if k is None:
            raise KeyError(name)
        return self.shas[k].decode()

    def stat_if(self, name: str, sha: str) -> tuple[int, int] | None:
        """The recorded stat of `name` if it was recorded with `sha`, else None (hash it)."""
        k = self._row(name)
        if k is None or self.shas[k].decode() != sha or self.sizes[k] < 0:
            return None
        return int(self.sizes[k]), int(self.mtimes[k])

    def verify(self, folder: str | os.PathLike, names: Iterable[str], producer: str, verify: str = "stat") -> None:
        """Raise ArtifactChanged naming the first of `names` that is not listed, missing or changed."""
        _check_mode(verify)
        folder = str(folder)
        for name in names:
            k = self._row(name)
            if k is None:
                raise ArtifactChanged(
                    f"{name} is not part of {producer} (its manifest lists {len(self)} files); "
                    f"re-materialize {producer}"
                )
            sha, size = self.shas[k].decode(), int(self.sizes[k])
            recorded = (size, int(self.mtimes[k])) if size >= 0 else None
            now = file_intact(os.path.join(folder, name), sha, recorded, verify)
            if now is None:
                raise ArtifactChanged(
                    f"{Path(folder) / name} is missing or differs from what {producer} wrote "
                    f"(sha256 {sha[:12]}...); re-materialize {producer}"
                )
            if now != recorded:
                self.sizes[k], self.mtimes[k] = now


def _four_fields(line: str) -> tuple[str, str, str, str]:
    fields = line.rstrip("\n").split("\t")
    if len(fields) != 4:
        raise ValueError(f"malformed file index line {line!r}")
    return fields[0], fields[1], fields[2], fields[3]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class RecipeDir:
    """The folder of one recipe of one asset; `promote` makes it the asset's `current` outputs."""

    asset_dir: Path
    recipe: dict

    def __post_init__(self) -> None:
        self.asset_dir = Path(self.asset_dir)
        self.recipe = json.loads(recipe_text(self.recipe))  # plain JSON values, as stored
        self.key = digest_text(recipe_text(self.recipe))[:16]
        self.path = self.asset_dir / RECIPES / self.key

    def open(self) -> Path:
        """Create the folder (recording its recipe) and return it."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / RECIPE_FILE).is_file():
            atomic_write_text(self.path / RECIPE_FILE, recipe_text(self.recipe))
        return self.path

    @property
    def complete(self) -> dict | None:
        """The completion record ({'digest', 'files'}) if these outputs were promoted before."""
        marker = self.path / COMPLETE_FILE
        return json.loads(marker.read_text()) if marker.is_file() else None

    def verified(self) -> bool:
        """Promoted before, and every recorded file still has its recorded sha256."""
        done = self.complete
        return done is not None and all(
            (self.path / name).is_file() and sha256_file(self.path / name) == sha for name, sha in done["files"].items()
        )

    def previous(self) -> RecipeDir | None:
        """The asset's current recipe folder if it is another one than this (a source to reuse from)."""
        link = self.asset_dir / CURRENT
        if not link.is_symlink() or not (link / RECIPE_FILE).is_file():
            return None
        other = RecipeDir(self.asset_dir, json.loads((link / RECIPE_FILE).read_text()))
        return None if other.key == self.key else other

    def reuse_items(self, inputs: Mapping[int, str], same: str = "item") -> int:
        """Link intact per-item outputs of the current recipe folder into this one, when both recipes
        agree on `recipe[same]` (what fixes each item's bytes) and the item's input digest matches.
        Hard links: the current folder is never written to, and its files are replaced (new inodes)
        rather than modified, so sharing them is safe. Returns how many items were reused."""
        prev = self.previous()
        if prev is None or prev.recipe.get(same) != self.recipe.get(same):
            return 0
        return Ledger(self.path).adopt(Ledger(prev.path), inputs)

    def promote(self, files: Iterable[str], digest: str | None = None) -> str:
        """Record the outputs (`files`, relative to the folder), compact the folder's ledger (if any),
        switch `current` here, remove superseded recipes. Returns the digest (the data version):
        `digest`, or one over the files."""
        shas = {name: sha256_file(self.path / name) for name in sorted(set(files))}
        digest = digest or digest_text(json.dumps(shas, sort_keys=True))
        ledger = Ledger(self.path)
        if ledger.path.is_file():
            ledger.compact()
        atomic_write_text(self.path / COMPLETE_FILE, json.dumps({"digest": digest, "files": shas}, indent=0))
        link, tmp = self.asset_dir / CURRENT, self.asset_dir / f"{CURRENT}.tmp-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(Path(RECIPES) / self.key, tmp)
        os.replace(tmp, link)  # atomic: readers see the old outputs or the new ones
        for other in (self.asset_dir / RECIPES).iterdir():
            if other.name != self.key and other.is_dir():
                shutil.rmtree(other)
        return digest


class Record(NamedTuple):
    """One item's ledger record: `files` = ((name, sha256, (size, mtime_ns) or None), ...) sorted by
    name; `extra` = the record's other keys (e.g. no_face, fallback) as sorted (key, value) pairs."""

    input: Any
    files: tuple[tuple[str, str, tuple[int, int] | None], ...]
    extra: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_json(cls, rec: dict) -> Record:
        stats = rec.get("stat") or {}
        files = tuple(
            (name, sha, tuple(stats[name]) if stats.get(name) else None) for name, sha in sorted(rec["files"].items())
        )
        extra = tuple(sorted((k, v) for k, v in rec.items() if k not in ("item", "input", "files", "stat")))
        return cls(rec.get("input"), files, extra)

    def shas(self) -> dict[str, str]:
        return {name: sha for name, sha, _ in self.files}

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)

    def as_json(self, item: int, stat: bool = False) -> dict:
        """The record as JSON: as written to the manifest (`stat=False`) or to the ledger."""
        out = {"item": int(item), "input": self.input, "files": self.shas(), **dict(self.extra)}
        if stat:
            out["stat"] = {name: list(st) for name, _, st in self.files if st is not None}
        return out

    def line(self, item: int) -> str:
        return json.dumps(self.as_json(item, stat=True), sort_keys=True)


def _value_key(value: Any) -> Any:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class RecordTable(Mapping):
    """{item: Record} held column-wise in numpy arrays: ~140 bytes per item with one file, ~450 with
    three (the same records as Python objects take ~560 / ~1,300), so a ledger of 10^6 images fits
    in a few hundred MB. Items are sorted; input digests and extras are stored once per distinct
    value (the items of one batch share one digest). Build with `RecordTable.build(pairs)`."""

    def __init__(
        self,
        items: np.ndarray,
        input_ids: np.ndarray,
        extra_ids: np.ndarray,
        starts: np.ndarray,
        counts: np.ndarray,
        names: np.ndarray,
        shas: np.ndarray,
        sizes: np.ndarray,
        mtimes: np.ndarray,
        input_values: list,
        extra_values: list,
    ) -> None:
        self.items, self.input_ids, self.extra_ids = items, input_ids, extra_ids  # per item
        self.starts, self.counts = starts, counts  # each item's files: rows starts[k] .. starts[k] + counts[k] - 1
        self.names, self.shas, self.sizes, self.mtimes = names, shas, sizes, mtimes  # per file; size -1 = no stat
        self.input_values, self.extra_values = input_values, extra_values

    @classmethod
    def build(cls, pairs: Iterable[tuple[int, Record]]) -> RecordTable:
        """From (item, Record) pairs; a later pair of the same item replaces an earlier one."""
        builder = TableBuilder()
        for item, rec in pairs:
            builder.add(item, rec)
        return builder.build()

    @classmethod
    def merge(cls, *tables: RecordTable) -> RecordTable:
        """One table of several; for an item in more than one, the last table's record wins."""
        builder = TableBuilder()
        for table in tables:
            builder.add_table(table)
        return builder.build()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[int]:
        return iter(self.items.tolist())

    def row(self, item: int) -> int | None:
        k = int(np.searchsorted(self.items, item))
        return k if k < len(self.items) and self.items[k] == item else None

    def __contains__(self, item: object) -> bool:
        return isinstance(item, (int, np.integer)) and self.row(int(item)) is not None

    def __getitem__(self, item: int) -> Record:
        k = self.row(int(item))
        if k is None:
            raise KeyError(item)
        return self.record_at(k)

    def record_at(self, k: int) -> Record:
        lo = int(self.starts[k])
        files = tuple(self.file_at(f) for f in range(lo, lo + int(self.counts[k])))
        return Record(self.input_values[self.input_ids[k]], files, self.extra_values[self.extra_ids[k]])

    def file_at(self, f: int) -> tuple[str, str, tuple[int, int] | None]:
        size = int(self.sizes[f])
        return (self.names[f].decode(), self.shas[f].decode(), (size, int(self.mtimes[f])) if size >= 0 else None)

    def input_at(self, k: int) -> Any:
        return self.input_values[self.input_ids[k]]

    def subset(self, rows: np.ndarray) -> RecordTable:
        """The records at `rows` (sorted row numbers)."""
        counts = self.counts[rows]
        files = _ranges(self.starts[rows], counts)
        return RecordTable(
            self.items[rows],
            self.input_ids[rows],
            self.extra_ids[rows],
            _starts(counts),
            counts,
            self.names[files],
            self.shas[files],
            self.sizes[files],
            self.mtimes[files],
            self.input_values,
            self.extra_values,
        )


def _per_record(table: RecordTable, per_file: np.ndarray) -> np.ndarray:
    """Whether any of each record's files has `per_file` set."""
    hits = np.zeros(len(table), np.int64)
    np.add.at(hits, np.repeat(np.arange(len(table)), table.counts), per_file.astype(np.int64))
    return hits > 0


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else np.zeros(0, np.int64)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of range(s, s + c) for each (s, c), vectorised."""
    total = int(counts.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(_starts(counts), counts)
    return np.repeat(starts.astype(np.int64), counts) + offsets


class TableBuilder:
    """Builds a RecordTable from (item, Record) pairs and other tables (a later record of an item
    replaces an earlier one). Collects records in Python lists of at most BLOCK items, then packs
    them into arrays, so the transient Python objects stay bounded too."""

    BLOCK = 4096

    def __init__(self) -> None:
        self.input_ids: dict = {}
        self.input_values: list = []
        self.extra_ids: dict = {}
        self.extra_values: list = []
        self.chunks: list[tuple] = []
        self._reset()

    def _reset(self) -> None:
        self.rec_cols = ([], [], [], [])  # item, input id, extra id, file count
        self.file_cols = ([], [], [], [])  # name, sha, size, mtime

    def _id(self, value: Any, ids: dict, values: list) -> int:
        key = _value_key(value)
        if key not in ids:
            ids[key] = len(values)
            values.append(value)
        return ids[key]

    def add(self, item: int, rec: Record) -> None:
        items, inputs, extras, counts = self.rec_cols
        items.append(int(item))
        inputs.append(self._id(rec.input, self.input_ids, self.input_values))
        extras.append(self._id(rec.extra, self.extra_ids, self.extra_values))
        counts.append(len(rec.files))
        names, shas, sizes, mtimes = self.file_cols
        for name, sha, st in rec.files:
            names.append(name.encode())
            shas.append(sha.encode())
            sizes.append(st[0] if st else -1)
            mtimes.append(st[1] if st else 0)
        if len(items) >= self.BLOCK:
            self._flush()

    def add_table(self, table: RecordTable) -> None:
        self._flush()
        input_map = np.array([self._id(v, self.input_ids, self.input_values) for v in table.input_values] or [0])
        extra_map = np.array([self._id(v, self.extra_ids, self.extra_values) for v in table.extra_values] or [0])
        self.chunks.append(
            (
                table.items,
                input_map[table.input_ids],
                extra_map[table.extra_ids],
                table.counts,
                table.names,
                table.shas,
                table.sizes,
                table.mtimes,
            )
        )

    def _flush(self) -> None:
        items, inputs, extras, counts = self.rec_cols
        if items:
            names, shas, sizes, mtimes = self.file_cols
            self.chunks.append(
                (
                    np.array(items, np.int64),
                    np.array(inputs, np.int32),
                    np.array(extras, np.int32),
                    np.array(counts, np.int32),
                    np.array(names, dtype=bytes),
                    np.array(shas, dtype=bytes),
                    np.array(sizes, np.int64),
                    np.array(mtimes, np.int64),
                )
            )
        self._reset()

    def build(self) -> RecordTable:
        self._flush()
        cols = [np.concatenate([c[j] for c in self.chunks]) if self.chunks else None for j in range(8)]
        if not self.chunks:
            cols = [np.zeros(0, t) for t in (np.int64, np.int32, np.int32, np.int32, "S1", "S64", np.int64, np.int64)]
        items, input_ids, extra_ids, counts, names, shas, sizes, mtimes = cols
        # last record of each item wins: stable sort by item, keep the last of each run
        order = np.argsort(items, kind="stable")
        last = np.ones(len(order), bool)
        if len(order):
            last[:-1] = items[order][1:] != items[order][:-1]
        rows = order[last]
        files = _ranges(_starts(counts)[rows], counts[rows])
        return RecordTable(
            items[rows],
            input_ids[rows],
            extra_ids[rows],
            _starts(counts[rows]),
            counts[rows],
            names[files],
            shas[files],
            sizes[files],
            mtimes[files],
            self.input_values,
            self.extra_values,
        )


class Ledger:
    """Per-item completion records of a per-item stage, in `<folder>/ledger.jsonl`.

    A line is `{"item": int, "input": digest, "files": {relative name: sha256},
    "stat": {relative name: [size, mtime_ns]}, **extra}`, appended after the item's files are
    written (later lines win; a line cut short by a crash is ignored; lines of older versions
    without "stat" are read too, their files are hashed). An item is done when its record has the
    wanted input digest and every file still has the recorded bytes (`file_intact`). `compact()`
    (run by `RecipeDir.promote`) rewrites the ledger with one line per item.
    """

    NAME = "ledger.jsonl"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME

    def _pairs(self) -> Iterator[tuple[int, Record]]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    yield int(rec["item"]), Record.from_json(rec)
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # the tail of a killed write

    def load(self) -> RecordTable:
        """{item: latest Record}, column-wise."""
        return RecordTable.build(self._pairs())

    def records(self) -> dict[int, dict]:
        """{item: latest record as JSON (with its "stat")}."""
        table = self.load()
        return {item: table.record_at(k).as_json(item, stat=True) for k, item in enumerate(table)}

    def done(self, inputs: Mapping[int, Any], verify: str = "stat", refresh: bool = False) -> RecordTable:
        """{item: record} for the items of `inputs` ({item: input digest}) whose outputs are intact;
        each returned record carries its files' current stats. `refresh=True` (a producer in its own
        folder, never in another's) appends the records whose files were re-hashed and found intact
        with a new stat (e.g. touched), so the next check of them is cheap again."""
        _check_mode(verify)
        table = self.load()
        fresh = RecordTable(
            table.items,
            table.input_ids,
            table.extra_ids,
            table.starts,
            table.counts,
            table.names,
            table.shas,
            table.sizes.copy(),
            table.mtimes.copy(),
            table.input_values,
            table.extra_values,
        )
        keep = np.zeros(len(table), bool)
        folder = str(self.folder)
        for k, item in enumerate(table):
            want = inputs.get(item, _ABSENT)
            keep[k] = want is not _ABSENT and table.input_at(k) == want and self._intact(fresh, k, folder, verify)
        if refresh:
            moved = (fresh.sizes != table.sizes) | (fresh.mtimes != table.mtimes)
            restat = np.flatnonzero(keep & _per_record(fresh, moved))
            self.record([fresh.record_at(k).as_json(int(table.items[k]), stat=True) for k in restat])
        return fresh.subset(np.flatnonzero(keep))

    @staticmethod
    def _intact(table: RecordTable, k: int, folder: str, verify: str) -> bool:
        """Whether record k's files are intact; their current stats are written into `table`."""
        for f in range(int(table.starts[k]), int(table.starts[k] + table.counts[k])):
            name, sha, recorded = table.file_at(f)
            now = file_intact(os.path.join(folder, name), sha, recorded, verify)
            if now is None:
                return False
            table.sizes[f], table.mtimes[f] = now
        return True

    def write_manifest(self, path: str | os.PathLike, items: Iterable[int], records: RecordTable | None = None) -> str:
        """Write the records of `items` as `{item: record}` JSON to `path` (each record without its
        stats: the same bytes as before stats were recorded), and its stat sidecar; return its
        sha256 (a data version covering every input digest and output sha256). `records`: the
        ledger's records if the caller holds them already."""
        records = self.load() if records is None else records
        keys = sorted({str(int(i)) for i in items})  # json.dumps(sort_keys=True) orders keys as strings
        digest = write_sorted_json(path, ((key, records[int(key)].as_json(int(key))) for key in keys))
        write_file_index(path, digest, (entry for key in keys for entry in records[int(key)].files))
        return digest

    def adopt(self, source: Ledger, inputs: Mapping[int, Any]) -> int:
        """Take over `source`'s intact records for `inputs` not done here yet (files hard-linked,
        copied where links are impossible). Returns how many items were adopted."""
        mine = self.done(inputs)
        wanted = _Without(inputs, mine)
        theirs = source.done(wanted)
        adopted = []
        for k, item in enumerate(theirs):
            rec = theirs.record_at(k)
            for name, _, _ in rec.files:
                dst = self.folder / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():
                    dst.unlink()
                try:
                    os.link(source.folder / name, dst)
                except OSError:
                    shutil.copy2(source.folder / name, dst)
            adopted.append({**rec.as_json(item), "stat": {}})  # stats taken anew from the linked/copied files
            if len(adopted) >= 4096:
                self.record(adopted)
                adopted = []
        self.record(adopted)
        return len(theirs)

    def record(self, entries: Iterable[dict]) -> list[tuple[int, Record]]:
        """Append records; return them as (item, Record) pairs. `files` values may be paths (hashed
        here) or sha256 strings; `stat` ({name: (size, mtime_ns)}, optional) as taken right after
        the write; names without one are stat-ed here."""
        lines, out = [], []
        for entry in entries:
            item = int(entry["item"])
            stats = dict(entry.get("stat") or {})
            files = {}
            for name, value in entry.get("files", {}).items():
                if stats.get(name) is None:
                    stats[name] = file_stat(self.folder / name)  # before hashing: see file_intact
                files[name] = value if isinstance(value, str) else sha256_file(value)
            rec = Record.from_json({**entry, "files": files, "stat": {k: v for k, v in stats.items() if k in files}})
            out.append((item, rec))
            lines.append(rec.line(item))
        if lines:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
        return out

    def compact(self) -> int:
        """Rewrite the ledger with one line per item (its latest record), atomically. Returns the
        number of items."""
        table = self.load()
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            block = []
            for k, item in enumerate(table):
                block.append(table.record_at(k).line(item) + "\n")
                if len(block) >= 4096:
                    f.write("".join(block))
                    block = []
            f.write("".join(block))
            f.flush()
            os.fsync(f.fileno())
        return len(table)


_ABSENT = object()


class _Without(Mapping):
    """`inputs` less the items of `done` (a view: no copy of a 10^6-item mapping)."""

    def __init__(self, inputs: Mapping, done: RecordTable) -> None:
        self.inputs, self.done = inputs, done

    def __getitem__(self, item):
        if item in self.done:
            raise KeyError(item)
        return self.inputs[item]

    def __iter__(self):
        return (i for i in self.inputs if i not in self.done)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class BatchDigests(Mapping):
    """{item: input digest of its batch} for many items without one entry per item: items are a
    range or a sorted array, and batch b (items b*B .. b*B+B-1) has one digest. Equal to the dict
    it stands for (`==`, `dict(...)`)."""

    def __init__(self, items: range | np.ndarray, batch_size: int, digests: Mapping[int, str]) -> None:
        self.items, self.batch_size, self.digests = items, batch_size, dict(digests)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, (int, np.integer)):
            return False
        if isinstance(self.items, range):
            return int(item) in self.items
        k = int(np.searchsorted(self.items, item))
        return k < len(self.items) and self.items[k] == item

    def __getitem__(self, item: int) -> str:
        if item not in self:
            raise KeyError(item)
        return self.digests[int(item) // self.batch_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.items) if isinstance(self.items, range) else iter(self.items.tolist())

    def __len__(self) -> int:
        return len(self.items)
