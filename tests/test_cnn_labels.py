"""Hand-label CSV validation and smoke stand-in labels."""

import numpy as np
import pytest

from ohlora_core.cnn.labels import LabelError, load_hand_labels, smoke_labels, write_hand_labels_csv


def _write(tmp_path, text, name="labels.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_original_format_and_jpg_names(tmp_path):
    df = load_hand_labels(_write(tmp_path, "img_name,quality,gender\n2,1,0\n0,1,1\n1,0,1\n"), n_images=10)
    assert df.columns.tolist() == ["img_no", "gender", "quality"]
    assert df.values.tolist() == [[0, 1, 1], [1, 1, 0], [2, 0, 1]]
    df2 = load_hand_labels(_write(tmp_path, "img_name,quality,gender\n000000.jpg,1,1\n000001.JPG,0,1\n000002,1,0\n"), 3)
    assert df2.values.tolist() == [[0, 1, 1], [1, 1, 0], [2, 0, 1]]


def test_round_trip_csv(tmp_path):
    df = smoke_labels(20, seed=3)
    assert load_hand_labels(_write(tmp_path, write_hand_labels_csv(df)), 20).equals(df)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("img_name,gender\n0,1\n", r"missing column\(s\) \['quality'\]"),
        ("img_name,quality,gender\n0,1,1\n1,2,0\n2,1,0\n", r"quality must be 0 or 1 at line\(s\) 3 "),
        ("img_name,quality,gender\n0,1,1\n1,1,\n", r"gender must be 0 or 1 at line\(s\) 3 "),
        ("img_name,quality,gender\n0,1,1\n1,1,0\n1,0,0\n", r"duplicate image number\(s\) \[1\] at line\(s\) 3, 4"),
        ("img_name,quality,gender\n0,1,1\n10,1,0\n", r"\[10\] outside 0..9 at line\(s\) 3"),
        ("img_name,quality,gender\n0,1,1\n-1,1,0\n", r"img_name must be an image number .* line\(s\) 3 "),
        ("img_name,quality,gender\nabc.jpg,1,1\n", r"img_name must be an image number .* line\(s\) 2 "),
        ("img_name,quality,gender\n", r"no label rows"),
        ("", r"cannot parse as CSV"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, pattern):
    path = _write(tmp_path, text)
    with pytest.raises(LabelError, match=pattern) as info:
        load_hand_labels(path, n_images=10)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(LabelError, match="not found"):
        load_hand_labels(tmp_path / "nope.csv", 10)


def test_smoke_labels_deterministic_both_classes():
    a, b = smoke_labels(200, seed=7), smoke_labels(200, seed=7)
    assert a.equals(b) and not a.equals(smoke_labels(200, seed=8))
    assert a["img_no"].tolist() == list(range(200))
    assert a["gender"].sum() == 100 and (a["quality"] == 0).sum() == 10  # 95% good
    small = smoke_labels(20, seed=1)
    assert (small["quality"] == 0).sum() == 5  # at least one bad image per stratified fold
    assert set(np.unique(smoke_labels(2, 0)["gender"])) == {0, 1}


@pytest.mark.parametrize(
    "text, pattern",
    [
        # issue 17 finding 6: blank lines and quoted line breaks used to shift the reported line
        ("img_name,quality,gender\n0,1,1\n\n\n1,2,0\n", r"quality must be 0 or 1 at line\(s\) 5 "),
        ('img_name,quality,gender\n"0\n",1,1\n1,1,x\n', r"gender must be 0 or 1 at line\(s\) 4 "),
        (
            'img_name,quality,gender\n"0\n",1,1\n\n1,1,0\n1,1,1\n',
            r"duplicate image number\(s\) \[1\] at line\(s\) 5, 6",
        ),
        (
            "img_name,quality,gender\n0,1,1\n1,1,0,7\n",
            r"expected 3 fields \(img_name,quality,gender\) on every line; line 3 has 4",
        ),
        ("img_name,quality,img_name\n0,1,1\n", r"line 1: the header names \['img_name'\] more than once"),
        (
            'img_name,quality,gender\n0,1,1\n"1,1,0\n',
            r"cannot parse as CSV at line 3: .*quote opened there is never closed",
        ),
        ('img_name,quality,gender\n0,1,1\n\n"1"x,1,0\n', r"cannot parse as CSV at line 4: ',' expected after '\"'"),
    ],
)
def test_reported_lines_are_the_lines_an_editor_shows(tmp_path, text, pattern):
    path = _write(tmp_path, text)
    with pytest.raises(LabelError, match=pattern) as info:
        load_hand_labels(path, n_images=10)
    assert str(path) in str(info.value)


def test_a_non_utf8_byte_names_its_line_and_byte_offset(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"img_name,quality,gender\n0,1,1\n1,1,\xe9\n")
    with pytest.raises(LabelError) as info:
        load_hand_labels(path, n_images=10)
    assert str(info.value) == (f"{path}: line 3 (byte offset 34) is not UTF-8 text (b'\\xe9'); save the file as UTF-8")


def test_a_spreadsheets_byte_order_mark_and_crlf_are_fine(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffimg_name,quality,gender\r\n0,1,1\r\n\r\n1, 0, 0\r\n".encode())
    assert load_hand_labels(path, n_images=10).values.tolist() == [[0, 1, 1], [1, 0, 0]]
