"""`ohlora studio`'s API (issue 21): what it offers (methods greyed out with the asset to materialize, sliders from the
report's calibration, report figures), renders that are `ohlora generate`'s row 0 measured by the property CNN,
exports that `ohlora generate` reproduces byte for byte, coalescing (N requests while the renderer is busy: only
the newest is rendered), models loaded once per method, one-line errors, and the local-server attack suite of
tests/web_attacks.py through the TestClient and against the real `ohlora studio` process."""

import base64
import json
import shlex
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from ohlora_core.artifacts import FINETUNES, PropertyScoreCnn
from ohlora_core.cli import main
from ohlora_core.finetune.generate import EVAL_KWARGS, default_z, label_vector, load_z_csv
from ohlora_core.layout import StorageLayout
from ohlora_core.studio import SMOKE_NOTICE, Studio, build_app
from ohlora_core.stylegan import load_generator
from tests.labelling_support import free_port
from tests.studio_support import make_storage, start_server, stop_server
from tests.web_attacks import attack_cases, check_attack, own_requests, send_asgi, send_http

PORT = 8766
VALUES = {"eyes": 1.8, "mouth": 1.6, "pose": -1.2}
RENDER = {"methods": ["v3"], "values": VALUES, "z": {"kind": "seed"}, "seed": 0}
READS = ("/", "/api/info")


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return make_storage(tmp_path_factory.mktemp("studio"))


@pytest.fixture(scope="module")
def studio(storage):
    return Studio(StorageLayout(storage, "smoke"), device="cpu", exports=storage / "exports")


@pytest.fixture(scope="module")
def client(studio):
    return TestClient(build_app(studio), base_url=f"http://127.0.0.1:{PORT}")  # the page's own origin


def post(client, path, body, status=200):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


def jpeg(data_url: str) -> bytes:
    assert data_url.startswith("data:image/jpeg;base64,")
    return base64.b64decode(data_url.split(",", 1)[1])


def cli(*args) -> tuple[int, str]:
    """`ohlora <args>` in this process: (exit status, stderr is not captured here)."""
    try:
        return main([str(a) for a in args]), ""
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1, str(exc.code)


# --- what the page offers ---------------------------------------------------------------------------------------


def test_info_lists_every_method_with_sliders_from_the_reports_calibration(client, storage):
    info = client.get("/api/info").json()
    assert info["mode"] == "smoke" and info["notice"] == SMOKE_NOTICE and info["cnn"] is True
    methods = {m["name"]: m for m in info["methods"]}
    assert list(methods) == ["v1", "v2", "v3", "v4", "directions"]
    assert methods["v2"]["available"] is False and methods["v2"]["reason"] == "materialize stylegan_finetune_v2"
    assert all(methods[m]["available"] and methods[m]["reason"] is None for m in ("v1", "v3", "v4", "directions"))
    ranges = {s["name"]: (s["low"], s["high"], s["step"], s["default"]) for s in methods["v3"]["sliders"]}
    assert ranges == {
        "eyes": (-1.8, 1.8, 0.1, 1.8),
        "hair_color": (-3.0, 3.0, 0.1, 0.0),
        "hair_length": (-3.0, 3.0, 0.1, 0.0),
        "mouth": (-1.2, 1.6, 0.1, 1.6),
        "pose": (-1.2, 3.6, 0.1, -1.2),
        "background_mean": (-3.0, 3.0, 0.1, 0.0),
        "background_std": (-3.0, 3.0, 0.1, 0.0),
    }
    assert [s["name"] for s in methods["v4"]["sliders"]] == ["eyes", "mouth", "pose"]
    assert not any(s["free"] for s in methods["v3"]["sliders"])  # a label row always has every label
    directions = {s["name"]: (s["free"], s["on"]) for s in methods["directions"]["sliders"]}
    assert directions["eyes"] == (True, True) and directions["hair_color"] == (True, False)
    assert methods["v3"]["report"]["pass_share"] == 0.75 and methods["v3"]["report"]["pose_mae"] == 0.8
    assert methods["directions"]["report"]["eyes_corr"] is None  # NaN in the CSV: undefined, not a number
    assert (
        methods["v4"]["report"] is None
        and methods["v4"]["report_note"] == "v4 is not in the latest controllability report"
    )
    assert info["z_files"] == ["test_z_vector_0003.csv", "test_z_vector_0007.csv"] and info["strip"] == 8


def test_a_storage_without_directions_cnn_or_report_says_what_to_materialize(tmp_path):
    root = make_storage(tmp_path, versions=("v4",), directions=False, cnn=False, report=False)
    studio = Studio(StorageLayout(root, "smoke"), device="cpu")
    client = TestClient(build_app(studio), base_url=f"http://127.0.0.1:{PORT}")
    info = client.get("/api/info").json()
    methods = {m["name"]: m for m in info["methods"]}
    assert methods["directions"]["reason"] == "materialize latent_directions and latent_w"
    assert methods["v3"]["reason"] == "materialize stylegan_finetune_v3" and info["z_files"] == []
    assert info["cnn"] is False and info["cnn_note"] == "no measured values: materialize property_score_cnn"
    assert methods["v4"]["report_note"] == "no controllability report: materialize controllability_report"
    result = post(client, "/api/render", {**RENDER, "methods": ["v4"]})["results"][0]
    assert result["measured"] is None and jpeg(result["image"])[:2] == b"\xff\xd8"  # an image, no measurement
    r = client.post("/api/render", json={**RENDER, "methods": ["v3"]})
    assert r.status_code == 409 and r.json()["error"] == "v3 is not available: materialize stylegan_finetune_v3"


def test_a_checkpoint_that_cannot_be_loaded_is_a_409_naming_the_file(tmp_path):
    root = make_storage(tmp_path, versions=("v1",), directions=False, cnn=False, report=False)
    generator = StorageLayout(root, "smoke").current(FINETUNES["v1"]).generator
    generator.write_bytes(b"not a checkpoint")
    client = TestClient(
        build_app(Studio(StorageLayout(root, "smoke"), device="cpu")), base_url=f"http://127.0.0.1:{PORT}"
    )
    r = client.post("/api/render", json={**RENDER, "methods": ["v1"]})
    assert r.status_code == 409 and r.json()["error"].startswith(f"v1: cannot load checkpoint {generator.resolve()}")


# --- rendering --------------------------------------------------------------------------------------------------


def test_a_render_is_row_0_of_the_request_measured_by_the_property_cnn(client, storage):
    from ohlora_core.cnn.models import PropertyScoreCNN
    from ohlora_core.generation import encode_jpeg
    from ohlora_core.stylegan import postprocess

    body = {**RENDER, "values": {"pose": 2.4, "eyes": -1.8, "hair_color": 0.5}, "seed": 7}
    result = post(client, "/api/render", body)["results"][0]
    assert result["requested"] == {"eyes": -1.8, "hair_color": 0.5, "pose": 2.4}  # label order, as recorded
    where = StorageLayout(storage, "smoke")
    G = load_generator(where.current(FINETUNES["v3"]).generator)
    z = torch.from_numpy(default_z(7)[None].astype(np.float32))
    label = torch.from_numpy(label_vector("v3", result["requested"], 7, "v3"))[None]
    with torch.no_grad():
        image = G(z, label, **EVAL_KWARGS)["image"]
        cnn = PropertyScoreCNN()
        cnn.load_state_dict(torch.load(where.current(PropertyScoreCnn).checkpoint, weights_only=True))
        measured = cnn.eval()(image)[0].tolist()
    assert jpeg(result["image"]) == encode_jpeg(postprocess(image).numpy()[0])
    assert list(result["measured"].values()) == pytest.approx(measured, abs=1e-6)
    again = post(client, "/api/render", body)["results"][0]
    assert again["image"] == result["image"]  # same seed, same bytes
    other = post(client, "/api/render", {**body, "values": {**body["values"], "eyes": 1.8}})["results"][0]
    assert other["image"] != result["image"]


def test_the_page_measures_the_image_it_shows_without_a_second_forward(client, studio, monkeypatch):
    """While a slider moves the page asks for images only (one forward each); once it rests it asks for the
    measurement, which reuses the image just rendered: the CNN's values equal those of a measured render."""
    forwards = []
    real = studio._forward
    monkeypatch.setattr(studio, "_forward", lambda *a: forwards.append(1) or real(*a))
    body = {**RENDER, "methods": ["v3", "v4"], "values": {"eyes": 0.3, "pose": 3.6}, "seed": 11}
    shown = post(client, "/api/render", {**body, "measure": False})
    assert shown["measured"] is False and [r["measured"] for r in shown["results"]] == [None, None]
    assert len(forwards) == 2
    measured = post(client, "/api/measure", body)["results"]
    assert len(forwards) == 2 and [m["method"] for m in measured] == ["v3", "v4"]
    whole = post(client, "/api/render", body)["results"]
    assert [m["measured"] for m in measured] == [r["measured"] for r in whole]
    assert all(
        set(m["measured"])
        == {"eyes", "hair_color", "hair_length", "mouth", "pose", "background_mean", "background_std"}
        for m in measured
    )


def test_side_by_side_sends_the_same_request_and_z_through_each_method(client):
    body = {**RENDER, "methods": ["v4", "v3", "directions"], "values": {**VALUES, "hair_color": 1.0}}
    results = post(client, "/api/render", body)["results"]
    assert [r["method"] for r in results] == ["v4", "v3", "directions"]
    assert results[0]["requested"] == VALUES and results[0]["not_taken"] == ["hair_color"]
    assert results[1]["requested"] == {"eyes": 1.8, "hair_color": 1.0, "mouth": 1.6, "pose": -1.2}
    assert results[2]["requested"] == results[1]["requested"] and results[2]["not_taken"] == []
    assert results[1]["report"]["pass_share"] == 0.75 and results[0]["report"] is None
    assert all(r["smoke"] for r in results) and len({r["image"] for r in results}) == 3
    alone = post(client, "/api/render", {**body, "methods": ["v3"]})["results"][0]
    assert alone["image"] == results[1]["image"]  # the row does not change a method's image


def test_the_strip_is_z_plus_noise_and_a_picked_thumbnail_becomes_z(client):
    strip = post(client, "/api/strip", RENDER)
    assert strip["method"] == "v3" and len(strip["thumbs"]) == 8 and len(set(strip["thumbs"])) == 8
    picked = post(client, "/api/pick", {**RENDER, "index": 3})
    from ohlora_core.finetune.generate import latents_around

    assert picked["z"] == latents_around(default_z(0), 9, 0.3, 0)[3].astype(np.float64).tolist()
    assert picked["label"] == "strip image 3 of seed 0"
    now = post(client, "/api/render", {**RENDER, "z": {"kind": "row", "z": picked["z"]}})["results"][0]
    assert now["image"] == strip["thumbs"][2]  # the thumbnail's very bytes
    z_file = post(client, "/api/render", {**RENDER, "z": {"kind": "file", "name": "test_z_vector_0007.csv"}})
    assert z_file["z_norm"] == pytest.approx(np.linalg.norm(np.random.default_rng(12).standard_normal(512)))


# --- export -----------------------------------------------------------------------------------------------------


def test_an_export_is_reproduced_byte_for_byte_by_ohlora_generate(client, storage, tmp_path):
    picked = post(client, "/api/pick", {**RENDER, "seed": 4, "index": 5})["z"]
    body = {
        **RENDER,
        "methods": ["v3", "directions", "v4"],
        "values": {**VALUES, "hair_length": -0.7},
        "z": {"kind": "row", "z": picked},
        "seed": 4,
    }
    shown = post(client, "/api/render", body)["results"]
    done = post(client, "/api/export", {**body, "strip": True})
    folder = (storage / "exports").resolve()
    assert done["folder"].startswith(str(folder) + "/studio-") and done["n"] == 9
    assert done["z_file"] == f"{done['folder']}/z.csv" and load_z_csv(done["z_file"]).tolist() == picked
    for item, screen in zip(done["exports"], shown):
        out = json.loads(open(item["request"]).read())
        names = [f"{k:06d}.jpg" for k in range(9)]
        assert item["images"] == names and out["n"] == 9 and out["seed"] == 4 and out["batch"] == 1
        assert out["z"] == picked and out["z_file"] == done["z_file"] and out["values"] == screen["requested"]
        assert out["generator"]["mode"] == "smoke" and out["generator"]["data_version"]
        exported = {n: open(f"{item['folder']}/{n}", "rb").read() for n in names}
        if item["method"] != "directions":  # directions maps all 9 rows at once: row 0 may differ in the last bit
            assert exported["000000.jpg"] == jpeg(screen["image"])
        argv = shlex.split(item["command"])
        assert argv[:2] == ["ohlora", "generate"] and cli(*argv[1:])[0] == 0  # the command the page shows
        again = argv[argv.index("--out") + 1]
        assert {n: open(f"{again}/{n}", "rb").read() for n in names} == exported
        record = json.loads(open(f"{again}/request.json").read())
        assert {k: v for k, v in record.items() if k != "command"} == {k: v for k, v in out.items() if k != "command"}
        replay = shlex.split(item["replay"])
        assert cli(*replay[1:])[0] == 0
        assert {n: open(f"{replay[-1]}/{n}", "rb").read() for n in names} == exported


def test_an_export_from_a_seed_or_a_z_file_names_no_new_z_file(client, storage):
    done = post(
        client, "/api/export", {**RENDER, "z": {"kind": "file", "name": "test_z_vector_0003.csv"}, "strip": False}
    )
    v3 = StorageLayout(storage, "smoke").current(FINETUNES["v3"]).dir.resolve()
    assert done["z_file"] == str(v3 / "test_z_vector_0003.csv") and done["n"] == 1
    assert "--z-csv " + str(v3 / "test_z_vector_0003.csv") in done["exports"][0]["command"]
    seeded = post(client, "/api/export", {**RENDER, "seed": 9, "strip": False})
    assert seeded["z_file"] is None and "--z-csv" not in seeded["exports"][0]["command"]
    assert "--seed 9" in seeded["exports"][0]["command"] and seeded["folder"] != done["folder"]


# --- speed ------------------------------------------------------------------------------------------------------


def test_requests_waiting_on_a_busy_renderer_coalesce_to_the_newest(client, studio):
    """6 renders arrive while one runs (the lock held here): the 5 older answer "superseded", only the newest
    is rendered; another page's request waiting meanwhile is not superseded by this page's."""
    answers, threads, c = {}, [], studio.coalescer
    rendered = c.rendered

    def send(k, who):
        answers[k] = client.post("/api/render", json={**RENDER, "client": who, "values": {"eyes": k / 10}}).json()

    with c.lock:
        for k, who in enumerate(["tab-a"] * 6 + ["tab-b"]):
            waiting = c.waiting
            threads.append(threading.Thread(target=send, args=(k, who)))
            threads[-1].start()
            deadline = time.time() + 30
            while c.waiting == waiting and time.time() < deadline:  # one at a time: the order is the sending order
                time.sleep(0.005)
            assert c.waiting == waiting + 1
    for t in threads:
        t.join(60)
    assert [answers[k] == {"superseded": True} for k in range(7)] == [True] * 5 + [False, False]
    assert answers[5]["results"][0]["requested"] == {"eyes": 0.5}
    assert c.rendered - rendered == 2 and c.waiting == 0


def test_models_are_loaded_once_per_method_and_again_when_the_asset_changes(tmp_path):
    root = make_storage(tmp_path, versions=("v3",), directions=True, cnn=False, report=False)
    studio = Studio(StorageLayout(root, "smoke"), device="cpu")
    client = TestClient(build_app(studio), base_url=f"http://127.0.0.1:{PORT}")
    first = [post(client, "/api/render", {**RENDER, "values": {"eyes": e}}) for e in (0.1, 0.2, 0.3)]
    assert studio.models.loads == 1
    post(client, "/api/render", {**RENDER, "methods": ["v3", "directions"]})
    assert studio.models.loads == 2
    from tests.studio_support import finetune_asset

    finetune_asset(root, "v3", seed=99)  # v3 rematerialized: a new recipe folder becomes current
    after = post(client, "/api/render", {**RENDER, "values": {"eyes": 0.1}})
    assert studio.models.loads == 3 and after["results"][0]["image"] != first[0]["results"][0]["image"]


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"methods": ["v9"]}, 400, "methods must be a list of distinct methods out of v1, v2, v3, v4, directions"),
        ({"methods": []}, 400, "methods must be a list"),
        ({"methods": ["v3", "v3"]}, 400, "distinct"),
        ({"methods": ["v2"]}, 409, "v2 is not available: materialize stylegan_finetune_v2"),
        ({"values": {"eyes": 9}}, 400, "eyes 9 is outside [-5, 5]"),
        ({"values": {"smile": 1}}, 400, "unknown properties smile"),
        ({"values": {"eyes": "1"}}, 400, "values must be an object"),
        ({"seed": -1}, 400, "seed -1 must be at least 0"),
        ({"seed": 1.5}, 400, "seed 1.5 is not an integer"),
        ({"z": {"kind": "row", "z": [0.0] * 511}}, 400, "expected a z of 512 values, got 511"),
        ({"z": {"kind": "row", "z": [True] * 512}}, 400, "z must be a list of 512 numbers"),
        ({"z": {"kind": "file", "name": "../../etc/passwd"}}, 400, "z file must be named test_z_vector_NNNN.csv"),
        ({"z": {"kind": "file", "name": "test_z_vector_0009.csv"}}, 400, "no z file test_z_vector_0009.csv"),
        ({"z": {"kind": "url"}}, 400, 'z must be {"kind": "seed"}'),
        ({"client": "a b"}, 400, "client must be 1..64 letters"),
        ({"extra": 1}, 400, "render request: unknown field(s) extra"),
        ({"measure": "no"}, 400, "measure must be true or false"),
    ],
)
def test_a_bad_render_request_is_refused_with_a_message(client, studio, change, status, message):
    rendered = studio.coalescer.rendered
    r = client.post("/api/render", json={**RENDER, **change})
    assert r.status_code == status and message in r.json()["error"], r.text
    assert studio.coalescer.rendered == rendered  # refused before it waits for the renderer


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("/api/pick", {**RENDER, "index": 0}, "index 0 must be at least 1"),
        ("/api/pick", {**RENDER, "index": 9}, "index 9 must be at most 8"),
        ("/api/export", {**RENDER, "strip": "yes"}, "strip must be true or false"),
        ("/api/measure", {**RENDER, "measure": True}, "measure request: unknown field(s) measure"),
        ("/api/z", {"text": "[1, 2]"}, "expected a z of 512 values, got 2"),
        ("/api/z", {"text": "[" + ", ".join(["NaN"] * 512) + "]"}, "uploaded z holds NaN"),
        ("/api/z", {"text": "0,1\n1,x"}, "uploaded z: line 2 is not 512 numbers"),
        ("/api/z", {"text": 5}, "text must be the content of a z file"),
    ],
)
def test_bad_pick_export_and_upload_requests_are_refused_with_a_message(client, storage, path, body, message):
    before = sorted((storage / "exports").glob("*")) if (storage / "exports").exists() else []
    r = client.post(path, json=body)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert (sorted((storage / "exports").glob("*")) if (storage / "exports").exists() else []) == before


def test_an_uploaded_z_may_be_json_or_the_originals_csv(client, storage):
    z_file = StorageLayout(storage, "smoke").current(FINETUNES["v3"]).test_z_vector(3)
    want = load_z_csv(z_file).tolist()
    assert post(client, "/api/z", {"text": z_file.read_text()})["z"] == want
    assert post(client, "/api/z", {"text": json.dumps(want)})["z"] == want
    assert post(client, "/api/z", {"text": json.dumps({"z": want})})["z"] == want


def test_an_unwritable_export_folder_is_a_message(tmp_path, storage):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    studio = Studio(StorageLayout(storage, "smoke"), device="cpu", exports=blocker / "exports")
    client = TestClient(build_app(studio), base_url=f"http://127.0.0.1:{PORT}")
    r = client.post("/api/export", json={**RENDER, "strip": False})
    assert r.status_code == 500 and r.json()["error"].startswith(f"cannot make the export folder in {blocker}")


# --- the command ------------------------------------------------------------------------------------------------


def run_studio(capsys, *args) -> tuple[int, str]:
    code = main(["studio", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (("--host", "0.0.0.0"), "ohlora studio: --host '0.0.0.0' is not a loopback address"),
        (("--device", "cdua"), "ohlora studio: --device='cdua' is not a torch device"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(storage, capsys, args, message):
    code, err = run_studio(capsys, "--storage", storage, "--port", free_port(), *args)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1, err


def test_a_storage_without_any_generator_is_a_message(tmp_path, capsys):
    code, err = run_studio(capsys, "--storage", tmp_path, "--port", free_port())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(
        f"ohlora studio: no generator to show under {tmp_path}/artifacts/smoke (smoke mode): "
        "v1: materialize stylegan_finetune_v1; v2: materialize stylegan_finetune_v2"
    )
    assert "directions: materialize latent_directions and latent_w" in err and "pass --storage / --mode" in err


def test_a_port_in_use_is_a_message(storage, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, err = run_studio(capsys, "--storage", storage, "--port", taken.getsockname()[1])
    assert code == 2 and "is already in use" in err and "Traceback" not in err


# --- the local-server guard -------------------------------------------------------------------------------------


def exports_listing(storage):
    folder = storage / "exports"
    return sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("path", ["/api/render", "/api/export"])
def test_attacks_on_the_studio_are_refused_and_change_nothing(client, studio, storage, path):
    valid = {**RENDER, "strip": False} if path == "/api/export" else RENDER
    for attack in attack_cases(path, valid, READS):
        check_attack(
            lambda a: send_asgi(client, a), attack, lambda: (exports_listing(storage), studio.coalescer.rendered)
        )


def test_the_pages_own_requests_still_work(client, storage):
    for own in own_requests("/api/export", {**RENDER, "strip": False}, READS):
        before = len(exports_listing(storage))
        answer = send_asgi(client, own)
        assert answer.status == 200, (own.name, answer.body[:300])
        assert (len(exports_listing(storage)) > before) == (own.method == "POST")


@pytest.fixture(scope="module")
def real_server(storage):
    port = free_port()
    proc = start_server(storage, port, "--exports", storage / "exports")
    yield port, proc
    stop_server(proc)


def test_the_real_studio_prints_what_it_serves_and_its_url(real_server, storage):
    port, proc = real_server
    lines = [proc.stdout.readline().strip() for _ in range(5)]
    assert lines[0] == f"studio over {storage}/artifacts/smoke (smoke mode, cpu): v1, v3, v4, directions"
    assert lines[1] == "not available: v2 (materialize stylegan_finetune_v2)"
    assert lines[2] == SMOKE_NOTICE and lines[3] == f"exports go to {(storage / 'exports').resolve()}"
    assert lines[4] == f"open http://127.0.0.1:{port}/  (Ctrl+C to stop)"


@pytest.mark.parametrize("path", ["/api/render", "/api/export"])
def test_the_real_studio_refuses_every_attack(real_server, storage, path):
    port, _ = real_server
    valid = {**RENDER, "strip": False} if path == "/api/export" else RENDER

    def state():
        info = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=10).read()
        return exports_listing(storage), info

    for attack in attack_cases(path, valid, READS):
        check_attack(lambda a: send_http(port, a), attack, state)
    for own in own_requests(path, valid, READS):
        assert send_http(port, own, timeout=60).status == 200, own.name
