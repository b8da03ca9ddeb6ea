"""`ohlora label`: the label file stays valid and complete whatever the requests, tabs or kills, only the
asset's images are served, and only to the page's own origin (issue 17 finding 1: the attack suite of
tests/web_attacks.py, through the TestClient and against the real server)."""

import os
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.request

import pytest
from starlette.testclient import TestClient

from ohlora_core.artifacts import GenderQualityScores
from ohlora_core.cnn.labels import load_hand_labels
from ohlora_core.io import FILE_MODE
from ohlora_core.labelling import LabelRequestError, LabelStore, build_app
from ohlora_core.layout import StorageLayout
from tests.labelling_support import N, free_port, label_command, make_storage, post, start_server
from tests.web_attacks import Attack, attack_cases, check_attack, own_requests, send_asgi, send_http

PORT = 8765
VALID = {"no": 1, "gender": 1, "quality": 1}  # a complete label: accepted, it rewrites the file
READS = ("/", "/api/items", "/image/5")


def client_for(app) -> TestClient:
    return TestClient(app, base_url=f"http://127.0.0.1:{PORT}")  # the page's own origin, as the browser has it


@pytest.fixture
def app(tmp_path):
    images = make_storage(tmp_path)
    store = LabelStore(tmp_path / "labels.csv", N)
    scores = GenderQualityScores(tmp_path / "artifacts" / "smoke" / "gender_quality_scores" / "current")
    return client_for(build_app(images, store, expected=10, scores=scores)), store, tmp_path / "labels.csv"


def state_of(store, csv):
    """What an attack must not change: the label file and the labels in memory (half labels included)."""
    return csv.read_bytes() if csv.exists() else None, {k: (v.gender, v.quality) for k, v in store.labels.items()}


def test_labels_are_written_as_the_hand_labels_asset_reads_them(app):
    client, store, csv = app
    page = client.get("/")
    assert page.status_code == 200 and "of" in page.text and "most uncertain first" in page.text
    items = client.get("/api/items").json()
    assert items["expected"] == 10 and items["labelled"] == 0 and items["cnn"] is True and len(items["items"]) == N
    assert client.post("/api/label", json={"no": 3, "gender": 1}).json()["labelled"] == 0
    assert not csv.exists()  # half a label: nothing written yet
    r = client.post("/api/label", json={"no": 3, "quality": 0}).json()
    assert r["labelled"] == 1 and r["item"] == {
        "no": 3,
        "gender": 1,
        "quality": 0,
        "p_gender": pytest.approx(0.282, abs=1e-3),
        "p_quality": pytest.approx(0.282, abs=1e-3),
        "cnn_note": None,
    }
    client.post("/api/label", json={"no": 0, "gender": 0, "quality": 1})
    assert csv.read_text().splitlines() == ["img_name,quality,gender", "0,1,0", "3,0,1"]
    table = load_hand_labels(csv, N, expected_rows=2)  # exactly what hand_labels validates
    assert table["img_no"].tolist() == [0, 3]
    again = LabelStore(csv, N)  # reopening continues where the person stopped
    assert again.labelled == 2 and again.labels[3].gender == 1


@pytest.mark.parametrize(
    "body",
    [
        {"no": N, "gender": 1},
        {"no": -1, "gender": 1},
        {"no": "3; rm", "gender": 1},
        {"no": 2, "gender": 2},
        {"no": 2, "quality": True},
        {"no": 2},
        [1, 2],
        {"no": 2.5, "gender": 1},
    ],
)
def test_invalid_requests_are_refused_and_change_nothing(app, body):
    client, store, csv = app
    client.post("/api/label", json={"no": 1, "gender": 1, "quality": 1})
    before = csv.read_bytes()
    r = client.post("/api/label", json=body)
    assert r.status_code == 400 and r.json()["error"]
    assert csv.read_bytes() == before and store.labelled == 1
    not_json = client.post("/api/label", content=b"not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/image/../labels.csv",
        "/image/..%2F..%2Flabels.csv",
        "/image/%2e%2e/labels.csv",
        "/image//etc/passwd",
        "/image/%2Fetc%2Fpasswd",
        "/image/1.jpg",
        "/image/12",
        "/image/-1",
        "/../labels.csv",
    ],
)
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

    tabs = [
        threading.Thread(target=tab, args=(range(0, N, 2), 1)),
        threading.Thread(target=tab, args=(range(1, N, 2), 0)),
    ]
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


@pytest.mark.parametrize("attack", attack_cases("/api/label", VALID, READS), ids=lambda a: a.name)
def test_attacks_on_the_label_page_are_refused_and_change_nothing(app, attack):
    client, store, csv = app
    client.post("/api/label", json={"no": 0, "gender": 0, "quality": 1})
    check_attack(lambda a: send_asgi(client, a), attack, lambda: state_of(store, csv))
    assert csv.read_text().splitlines() == ["img_name,quality,gender", "0,1,0"]


@pytest.mark.parametrize("request_", own_requests("/api/label", VALID, READS), ids=lambda a: a.name)
def test_the_pages_own_requests_still_work(app, request_):
    client, store, csv = app
    answer = send_asgi(client, request_)
    assert answer.status == 200, answer.body
    assert store.labelled == (1 if request_.method == "POST" else 0)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    make_storage(root)
    port = free_port()
    proc = start_server(root, port)
    post(port, {"no": 0, "gender": 0, "quality": 1})
    yield port, StorageLayout(root, "smoke").labels_csv
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.parametrize("attack", attack_cases("/api/label", VALID, READS), ids=lambda a: a.name)
def test_the_real_label_server_refuses_every_attack(real_server, attack):
    port, csv = real_server

    def state():
        items = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/items", timeout=10).read()
        return csv.read_bytes(), items

    check_attack(lambda a: send_http(port, a), attack, state)
    assert csv.read_text().splitlines() == ["img_name,quality,gender", "0,1,0"]


def test_the_real_server_refuses_300_mb_at_once_and_stays_small(real_server):
    port, csv = real_server
    rss = lambda: int(open(f"/proc/{server_pid(port)}/status").read().split("VmRSS:")[1].split()[0])  # noqa: E731
    before, start = rss(), time.perf_counter()
    big = Attack(
        "300 MB",
        "POST",
        "/api/label",
        (("Content-Type", "application/json"),),
        b"{" * 1000,
        expect=413,
        fixed_length=300_000_000,
    )
    answer = send_http(port, big)
    assert answer.status == 413 and "300,000,000 bytes" in answer.body.decode()
    assert time.perf_counter() - start < 1.0 and rss() - before < 20_000  # KiB: nothing like 300 MB was read


def server_pid(port) -> int:
    """The pid listening on 127.0.0.1:port (the `ohlora label` process under test)."""
    inode = next(
        line.split()[9]
        for line in open("/proc/net/tcp").read().splitlines()[1:]
        if line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "0A"
    )
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process listens on port {port}")


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[" * 30_000 + b"]" * 30_000, "nested deeper than 32 levels"),
        (b'{"no": 1, "gender": NaN}', "holds NaN"),
        (b'{"no": 1, "gender": 1', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_malformed_label_requests_are_a_400_with_a_message(app, body, message):
    client, store, _ = app
    r = client.post("/api/label", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and message in r.json()["error"] and store.labels == {}


def test_the_command_says_which_file_it_writes_and_in_which_mode(tmp_path):
    make_storage(tmp_path)
    port = free_port()
    proc = start_server(tmp_path, port)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    csv = StorageLayout(tmp_path, "smoke").labels_csv
    assert lines[0].startswith(f"labelling {N} images from ") and lines[0].endswith("(smoke mode)")
    assert lines[1] == (
        f"labels go to {csv} (smoke mode: the smoke pipeline does not read it — it uses stand-in "
        "labels; these labels are practice only)"
    )
    assert lines[2] == f"open http://127.0.0.1:{port}/  (Ctrl+C to stop)"


def run_label(root, *args):
    """`ohlora label` in this process (a subprocess costs seconds of imports): its exit status and stderr.
    An uncaught exception (a traceback for the user) fails the test."""
    import contextlib
    import io

    from ohlora_core.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(label_command(root, *args)[3:])
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


def test_smoke_images_never_write_the_full_mode_label_file(tmp_path):
    make_storage(tmp_path)
    full = StorageLayout(tmp_path, "full").labels_csv
    out = run_label(tmp_path, "--csv", full, "--port", free_port())
    assert out.returncode == 2 and "Traceback" not in out.stderr and not full.exists()
    assert f"--csv {full} is the full-mode label file, but these are smoke-mode images" in out.stderr
    assert f"smoke labels go to {StorageLayout(tmp_path, 'smoke').labels_csv}" in out.stderr


def test_a_broken_label_file_is_a_message_and_exit_2_not_a_traceback(tmp_path):
    make_storage(tmp_path)
    csv = StorageLayout(tmp_path, "smoke").labels_csv
    csv.parent.mkdir(parents=True)
    csv.write_text("img_name,quality,gender\n0,1,1\n\n1,2,0\n")
    out = run_label(tmp_path, "--port", free_port())
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"ohlora label: {csv}: quality must be 0 or 1 at line(s) 4 (got ['2'])"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10"])
def test_a_non_loopback_host_is_refused_with_a_message(tmp_path, host):
    make_storage(tmp_path)
    out = run_label(tmp_path, "--host", host, "--port", free_port())
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"ohlora label: --host {host!r} is not a loopback address" in out.stderr and "ssh -L" in out.stderr


def test_a_port_in_use_is_a_message_not_a_traceback(tmp_path):
    make_storage(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_label(tmp_path, "--port", port)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"ohlora label: port {port} on 127.0.0.1 is already in use")


def test_the_label_rewrite_keeps_the_files_mode(tmp_path):
    make_storage(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("img_name,quality,gender\n0,1,1\n")
    os.chmod(csv, 0o600)  # the user keeps labels private
    LabelStore(csv, N).set(1, gender=0, quality=1)
    assert stat.S_IMODE(csv.stat().st_mode) == 0o600 and csv.read_text().splitlines()[-1] == "1,1,0"
    fresh = tmp_path / "new.csv"
    LabelStore(fresh, N).set(1, gender=0, quality=1)
    assert stat.S_IMODE(fresh.stat().st_mode) == FILE_MODE  # a new file: what open() gives under the umask
