"""Hand labels (gender, quality) for the first images, and deterministic stand-in labels for smoke runs.

File format is the original's `cnn/synthesize_results_quality_and_gender.csv`: header
`img_name,quality,gender`, one row per image; img_name is the image number (`0`, `1`, ... in the
original) — `000123.jpg`, `000123.png` or `000123` are accepted too. Values are 0/1
(gender 1 = female, quality 1 = good).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("img_name", "quality", "gender")
_IMG_NAME = re.compile(r"^\s*(\d+)(?:\.(?:jpg|jpeg|png))?\s*$", re.IGNORECASE)
_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


class LabelError(ValueError):
    """The hand-label CSV is malformed; the message names the file and the offending CSV line(s)."""


def _read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The CSV as strings, and for each row the file line it starts on (blank lines and quoted line breaks
    counted, so every message names the line an editor shows). LabelError for bytes or quoting that do not parse."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LabelError(
            f"{path}: line {line} (byte offset {exc.start}) is not UTF-8 text "
            f"({data[exc.start : exc.start + 1]!r}); save the file as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    rows, starts, start = [], [], 1
    try:
        for row in reader:
            if row != [] and row != [""] and not (len(row) == 1 and row[0].isspace()):  # a blank line
                rows.append(row)
                starts.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        hint = " (a quote opened there is never closed)" if "end of data" in str(exc) else ""
        raise LabelError(f"{path}: cannot parse as CSV at line {start}: {exc}{hint}") from None
    if not rows:
        raise LabelError(
            f"{path}: cannot parse as CSV: the file is empty; expected the header {','.join(REQUIRED_COLUMNS)}"
        )
    return _as_frame(path, rows, starts), np.asarray(starts[1:], dtype=np.int64)


def _as_frame(path: Path, rows: list[list[str]], starts: list[int]) -> pd.DataFrame:
    header = [c.strip() for c in rows[0]]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise LabelError(
            f"{path}: line {starts[0]}: the header names {repeated} more than once; expected "
            f"{','.join(REQUIRED_COLUMNS)}"
        )
    wrong = [(line, len(row)) for line, row in zip(starts[1:], rows[1:]) if len(row) != len(header)]
    if wrong:
        raise LabelError(
            f"{path}: expected {len(header)} fields ({','.join(header)}) on every line; line "
            f"{wrong[0][0]} has {wrong[0][1]}" + (f" ({len(wrong)} such lines)" if len(wrong) > 1 else "")
        )
    return pd.DataFrame(rows[1:], columns=header, dtype=str)


def _lines(mask: np.ndarray, line_numbers: np.ndarray, limit: int = 10) -> str:
    rows = line_numbers[np.flatnonzero(mask)].tolist()
    return ", ".join(map(str, rows[:limit])) + (f" ... ({len(rows)} in all)" if len(rows) > limit else "")


def load_hand_labels(csv_path: str | Path, n_images: int, expected_rows: int | None = None) -> pd.DataFrame:
    """Read and validate the hand-label CSV -> DataFrame[img_no, gender, quality] (int64, sorted by img_no).

    Raises LabelError (naming the file and the 1-based line numbers an editor shows) for: unreadable/empty
    file, bytes that are not UTF-8, a line with the wrong number of fields, missing columns, an img_name
    that is not an image number, gender/quality not 0 or 1 (or empty), duplicate image numbers, image
    numbers < 0 or >= n_images, and (if given) a row count other than `expected_rows`.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise LabelError(f"hand-label file not found: {path}")
    raw, line_numbers = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise LabelError(
            f"{path}: missing column(s) {missing}; expected header {','.join(REQUIRED_COLUMNS)}, "
            f"got {list(raw.columns)}"
        )
    if raw.empty:
        raise LabelError(f"{path}: no label rows")

    match = raw["img_name"].str.extract(_IMG_NAME, expand=False)
    bad_name = match.isna().to_numpy()
    if bad_name.any():
        raise LabelError(
            f"{path}: img_name must be an image number like 123 or 000123.jpg at line(s) "
            f"{_lines(bad_name, line_numbers)} (got {raw['img_name'][bad_name].head(3).tolist()})"
        )
    img_no = match.astype(np.int64).to_numpy()

    values = {}
    for col in ("gender", "quality"):
        v = raw[col].str.strip().map(_BINARY)
        bad = v.isna().to_numpy()
        if bad.any():
            raise LabelError(
                f"{path}: {col} must be 0 or 1 at line(s) {_lines(bad, line_numbers)} "
                f"(got {raw[col][bad].head(3).tolist()})"
            )
        values[col] = v.astype(np.int64).to_numpy()

    dup = pd.Series(img_no).duplicated(keep=False).to_numpy()
    if dup.any():
        raise LabelError(
            f"{path}: duplicate image number(s) {sorted(set(img_no[dup].tolist()))[:10]} "
            f"at line(s) {_lines(dup, line_numbers)}"
        )
    out_of_range = (img_no < 0) | (img_no >= n_images)
    if out_of_range.any():
        raise LabelError(
            f"{path}: image number(s) {img_no[out_of_range][:10].tolist()} outside 0..{n_images - 1} "
            f"at line(s) {_lines(out_of_range, line_numbers)}"
        )

    if expected_rows is not None and len(raw) != expected_rows:
        raise LabelError(
            f"{path}: {len(raw)} labelled image(s), but {expected_rows} are expected "
            f"(settings.n_labelled); label the missing images, or set n_labelled: {len(raw)} "
            f"to train on the labels there are"
        )
    df = pd.DataFrame({"img_no": img_no, "gender": values["gender"], "quality": values["quality"]})
    return df.sort_values("img_no", kind="stable").reset_index(drop=True)


def smoke_labels(n: int, seed: int, n_splits: int = 5) -> pd.DataFrame:
    """Deterministic stand-in labels for images 0..n-1 (smoke mode; the caller marks them as stand-ins).

    gender ~ half female; quality about 95% good but with at least `n_splits` bad images (when
    n >= 2 * n_splits) so every stratified fold sees both classes. Both classes are present whenever
    n >= 2.
    """
    if n < 2:
        raise ValueError(f"smoke_labels needs n >= 2 (both classes), got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1AB5]))
    gender = np.zeros(n, dtype=np.int64)
    gender[rng.permutation(n)[: n // 2]] = 1
    n_bad = max(int(round(0.05 * n)), n_splits if n >= 2 * n_splits else 1)
    quality = np.ones(n, dtype=np.int64)
    quality[rng.permutation(n)[:n_bad]] = 0
    return pd.DataFrame({"img_no": np.arange(n, dtype=np.int64), "gender": gender, "quality": quality})


def write_hand_labels_csv(df: pd.DataFrame) -> str:
    """The original CSV text (`img_name,quality,gender`) for a DataFrame[img_no, gender, quality]."""
    return df.rename(columns={"img_no": "img_name"})[list(REQUIRED_COLUMNS)].to_csv(index=False)
