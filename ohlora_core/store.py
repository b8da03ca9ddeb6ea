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
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ohlora_core.io import atomic_write_text, sha256_file

CURRENT = "current"
RECIPES = "recipes"
RECIPE_FILE = "recipe.json"
COMPLETE_FILE = "complete.json"


class MissingArtifact(FileNotFoundError):
    """An asset's outputs were asked for before the asset was materialized."""


class ArtifactChanged(ValueError):
    """A file no longer has the bytes its producer recorded."""


def verify_files(folder: str | os.PathLike, expected: Mapping[str, str], producer: str) -> None:
    """Check files (`{name relative to folder: sha256}`) before a consumer reads them; the error names
    the first missing or changed file and the asset to re-materialize."""
    for name, sha in expected.items():
        path = Path(folder) / name
        if not path.is_file() or sha256_file(path) != sha:
            raise ArtifactChanged(f"{path} is missing or differs from what {producer} wrote (sha256 {sha[:12]}...); "
                                  f"re-materialize {producer}")


def recipe_text(recipe: Mapping) -> str:
    return json.dumps(recipe, indent=1, sort_keys=True, default=str)


def digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def current_dir(asset_dir: str | os.PathLike) -> Path:
    """The complete outputs of an asset (`<asset>/current`), or a clear error if there are none."""
    link = Path(asset_dir) / CURRENT
    if not (link.is_symlink() and link.resolve().is_dir() and (link / COMPLETE_FILE).is_file()):
        raise MissingArtifact(f"{Path(asset_dir).name} has no complete outputs under {asset_dir}; "
                              f"materialize that asset first")
    return link


def current_digest(asset_dir: str | os.PathLike) -> str:
    """The data version recorded when the current outputs were promoted."""
    return json.loads((current_dir(asset_dir) / COMPLETE_FILE).read_text())["digest"]


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
            (self.path / name).is_file() and sha256_file(self.path / name) == sha for name, sha in done["files"].items())

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
        """Record the outputs (`files`, relative to the folder), switch `current` here, remove
        superseded recipes. Returns the digest (the data version): `digest`, or one over the files."""
        shas = {name: sha256_file(self.path / name) for name in sorted(set(files))}
        digest = digest or digest_text(json.dumps(shas, sort_keys=True))
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


class Ledger:
    """Per-item completion records of a per-item stage, in `<folder>/ledger.jsonl`.

    A record is `{"item": int, "input": digest, "files": {relative name: sha256}, **extra}`; one
    JSON line per item, appended after its files are written (later lines win; a line cut short by
    a crash is ignored). An item is done when its record has the wanted input digest and every
    file still hashes to the recorded value.
    """

    NAME = "ledger.jsonl"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME

    def records(self) -> dict[int, dict]:
        out: dict[int, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    out[int(rec["item"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue  # the tail of a killed write
        return out

    def done(self, inputs: Mapping[int, str]) -> dict[int, dict]:
        """{item: record} for the items of `inputs` ({item: input digest}) whose outputs are intact."""
        records = self.records()
        return {item: rec for item, want in inputs.items()
                if (rec := records.get(item)) is not None and rec.get("input") == want and all(
                    (self.folder / name).is_file() and sha256_file(self.folder / name) == sha
                    for name, sha in rec["files"].items())}

    def write_manifest(self, path: str | os.PathLike, items: Iterable[int]) -> str:
        """Write the records of `items` as `{item: record}` JSON to `path`; return its sha256
        (a data version covering every input digest and output sha256)."""
        records = self.records()
        text = json.dumps({str(i): records[int(i)] for i in sorted(map(int, items))}, indent=0, sort_keys=True)
        atomic_write_text(path, text)
        return digest_text(text)

    def adopt(self, source: Ledger, inputs: Mapping[int, str]) -> int:
        """Take over `source`'s intact records for `inputs` not done here yet (files hard-linked,
        copied where links are impossible). Returns how many items were adopted."""
        mine = self.done(inputs)
        wanted = {i: d for i, d in inputs.items() if i not in mine}
        adopted = []
        for item, rec in source.done(wanted).items():
            for name in rec["files"]:
                dst = self.folder / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():
                    dst.unlink()
                try:
                    os.link(source.folder / name, dst)
                except OSError:
                    shutil.copy2(source.folder / name, dst)
            adopted.append(rec)
        self.record(adopted)
        return len(adopted)

    def record(self, entries: Iterable[dict]) -> None:
        """Append records; `files` values may be paths (hashed here) or sha256 strings."""
        lines = []
        for rec in entries:
            files = {name: v if isinstance(v, str) else sha256_file(v) for name, v in rec.get("files", {}).items()}
            lines.append(json.dumps({**rec, "item": int(rec["item"]), "files": files}, sort_keys=True))
        if lines:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
