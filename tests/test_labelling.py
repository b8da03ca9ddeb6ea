"""`ohlora label`: the label file stays valid and complete whatever the requests, tabs or kills, and
only the asset's images are served."""
import os
import signal
import threading

import pytest
from starlette.testclient import TestClient

from ohlora_core.layout import StorageLayout
from ohlora_core.artifacts import GenderQualityScores
from ohlora_core.cnn.labels import load_hand_labels
from ohlora_core.labelling import LabelRequestError, LabelStore, build_app
from tests.labelling_support import N, free_port, make_storage, post, start_server


@pytest.fixture
def app(tmp_path):
    images = make_storage(tmp_path)
    store = LabelStore(tmp_path / "labels.csv", N)
    scores = GenderQualityScores(tmp_path / "artifacts" / "smoke" / "gender_quality_scores" / "current")
    return TestClient(build_app(images, store, expected=10, scores=scores)), store, tmp_path / "labels.csv"


def test_labels_are_written_as_the_hand_labels_asset_reads_them(app):
    client, store, csv = app
    page = client.get("/")
    assert page.status_code == 200 and "of" in page.text and "most uncertain first" in page.text
    items = client.get("/api/items").json()
    assert items["expected"] == 10 and items["labelled"] == 0 and items["cnn"] is True and len(items["items"]) == N
    assert client.post("/api/label", json={"no": 3, "gender": 1}).json()["labelled"] == 0
    assert not csv.exists()  # half a label: nothing written yet
    r = client.post("/api/label", json={"no": 3, "quality": 0}).json()
    assert r["labelled"] == 1 and r["item"] == {"no": 3, "gender": 1, "quality": 0,
                                                 "p_gender": pytest.approx(0.282, abs=1e-3),
                                                 "p_quality": pytest.approx(0.282, abs=1e-3)}
    client.post("/api/label", json={"no": 0, "gender": 0, "quality": 1})
    assert csv.read_text().splitlines() == ["img_name,quality,gender", "0,1,0", "3,0,1"]
    table = load_hand_labels(csv, N, expected_rows=2)  # exactly what hand_labels validates
    assert table["img_no"].tolist() == [0, 3]
    again = LabelStore(csv, N)  # reopening continues where the person stopped
    assert again.labelled == 2 and again.labels[3].gender == 1


@pytest.mark.parametrize("body", [{"no": N, "gender": 1}, {"no": -1, "gender": 1}, {"no": "3; rm", "gender": 1},
                                  {"no": 2, "gender": 2}, {"no": 2, "quality": True}, {"no": 2}, [1, 2],
                                  {"no": 2.5, "gender": 1}])
def test_invalid_requests_are_refused_and_change_nothing(app, body):
    client, store, csv = app
    client.post("/api/label", json={"no": 1, "gender": 1, "quality": 1})
    before = csv.read_bytes()
    r = client.post("/api/label", json=body)
    assert r.status_code == 400 and r.json()["error"]
    assert csv.read_bytes() == before and store.labelled == 1
    assert client.post("/api/label", content=b"not json", headers={"content-type": "application/json"}).status_code == 400


@pytest.mark.parametrize("path", ["/image/../labels.csv", "/image/..%2F..%2Flabels.csv", "/image/%2e%2e/labels.csv",
                                  "/image//etc/passwd", "/image/%2Fetc%2Fpasswd", "/image/1.jpg", "/image/12",
                                  "/image/-1", "/../labels.csv"])
def test_only_the_assets_images_are_served(app, path):
    client, _, _ = app
    assert client.get(path).status_code == 404, path
    ok = client.get("/image/5")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg" and ok.content[:2] == b"\xff\xd8"


def test_two_tabs_labelling_at_once_lose_nothing(app):
    client, store, csv = app

    def tab(numbers, gender):
        for no in numbers:
            client.post("/api/label", json={"no": no, "gender": gender})
            client.post("/api/label", json={"no": no, "quality": 1})

    tabs = [threading.Thread(target=tab, args=(range(0, N, 2), 1)), threading.Thread(target=tab, args=(range(1, N, 2), 0))]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    table = load_hand_labels(csv, N, expected_rows=N)
    assert table["gender"].tolist() == [1, 0] * (N // 2) and store.labelled == N


def test_label_store_checks_its_input():
    with pytest.raises(LabelRequestError, match="nothing to set"):
        LabelStore("/nonexistent/labels.csv", 5).set(1)


def test_a_killed_server_leaves_a_valid_file_with_every_finished_label(tmp_path):
    make_storage(tmp_path)
    port = free_port()
    proc = start_server(tmp_path, port)
    try:
        for no in range(5):
            post(port, {"no": no, "gender": no % 2, "quality": 1})
        post(port, {"no": 5, "gender": 1})  # being typed when the server dies
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    csv = StorageLayout(tmp_path, "smoke").labels_csv  # smoke images: the smoke label file
    table = load_hand_labels(csv, N)
    assert table["img_no"].tolist() == [0, 1, 2, 3, 4] and table["gender"].tolist() == [0, 1, 0, 1, 0]
