"""The local-server guard (ohlora_core/local_server.py) on a minimal app: the attack suite is refused and
changes nothing, the app's own requests pass, a body over the cap is never read whole, bad JSON is a 400,
and `serve` listens on loopback only, with clear messages instead of tracebacks."""

import asyncio
import json
import subprocess
import sys
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ohlora_core.local_server import (
    BadInput,
    LocalGuard,
    LocalServerError,
    bind_loopback,
    guard,
    json_error_handlers,
    parse_json_object,
    read_json_object,
    url_of,
)
from tests.labelling_support import free_port
from tests.web_attacks import Attack, assert_no_cors, attack_cases, check_attack, own_requests, send_asgi, send_http

PORT = 8765
EVIL_ORIGIN = "http://evil.example"
VALID = {"key": "a", "value": 1}


def make_app(state: list, max_body: int | None = None):
    """A toy state-changing server: POST /api/set appends its JSON object to `state`."""

    async def page(request):
        return PlainTextResponse("page", headers={"Access-Control-Allow-Origin": "*"})  # the guard drops this

    async def setter(request):
        state.append(await read_json_object(request))
        return JSONResponse({"n": len(state)})

    async def echo(ws):
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    app = Starlette(
        routes=[Route("/", page), Route("/api/set", setter, methods=["POST"]), WebSocketRoute("/ws", echo)],
        exception_handlers=json_error_handlers(),
    )
    return guard(app) if max_body is None else guard(app, max_body=max_body)


@pytest.fixture
def toy():
    state: list = []
    return TestClient(make_app(state), base_url=f"http://127.0.0.1:{PORT}"), state


@pytest.mark.parametrize("attack", attack_cases("/api/set", VALID), ids=lambda a: a.name)
def test_every_attack_is_refused_and_changes_nothing(toy, attack):
    client, state = toy
    check_attack(lambda a: send_asgi(client, a), attack, lambda: list(state))
    assert state == []


@pytest.mark.parametrize("request_", own_requests("/api/set", VALID), ids=lambda a: a.name)
def test_the_apps_own_requests_pass(toy, request_):
    client, state = toy
    answer = send_asgi(client, request_)
    assert answer.status == 200, answer.body
    assert_no_cors(answer)
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cross-origin-resource-policy"] == "same-origin"
    assert state == ([VALID] if request_.method == "POST" else [])


def test_a_body_over_the_cap_is_never_read_whole():
    """Driven as raw ASGI: a 300 MB chunked body is refused after the cap, having pulled only ~cap bytes."""
    pulled, sent = [], []

    async def receive():
        pulled.append(1 << 20)
        return {"type": "http.request", "body": b" " * (1 << 20), "more_body": len(pulled) < 300}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/set",
        "server": ("127.0.0.1", PORT),
        "headers": [
            (b"host", b"127.0.0.1:%d" % PORT),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
    }
    app_calls = []
    asyncio.run(LocalGuard(lambda *a: app_calls.append(a), max_body=64 * 1024)(scope, receive, send))
    assert sum(pulled) == 1 << 20 and app_calls == []  # one 1 MiB chunk read, then refused; the app never ran
    assert sent[0]["status"] == 413 and b"65,536 bytes" in sent[1]["body"]


def test_a_big_content_length_is_refused_before_reading():
    calls = []

    async def receive():
        calls.append(1)
        raise AssertionError("the body must not be read")

    async def send(message):
        calls.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "server": ("127.0.0.1", PORT),
        "headers": [
            (b"host", b"localhost:%d" % PORT),
            (b"content-type", b"application/json"),
            (b"content-length", b"300000000"),
        ],
    }
    asyncio.run(LocalGuard(None)(scope, receive, send))
    assert calls[0]["status"] == 413 and b"300,000,000 bytes" in calls[1]["body"]


def test_json_100000_deep_is_a_400_with_a_message_not_a_500():
    state: list = []
    client = TestClient(make_app(state, max_body=1 << 20), base_url=f"http://127.0.0.1:{PORT}")
    deep = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/api/set", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested deeper than 32 levels" in r.json()["error"] and state == []
    nested_in_string = json.dumps({"key": "[" * 1000}).encode()  # brackets inside a string are not nesting
    r = client.post("/api/set", content=nested_in_string, headers={"content-type": "application/json"})
    assert r.json() == {"n": 1}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"a": ', "not valid JSON: Expecting value at line 1 column 7"),
        (b"[1, 2]", "must be a JSON object {...}, got a JSON list"),
        (b'"text"', "got a JSON str"),
        (b'{"a": Infinity}', "holds Infinity, which is not JSON"),
        (b'{"a": "\xe9"}', "not UTF-8 (byte 7"),
        (b"", "not valid JSON"),
    ],
)
def test_parse_json_object_says_what_is_wrong(raw, message):
    with pytest.raises(BadInput) as info:
        parse_json_object(raw)
    assert message in str(info.value)
    assert parse_json_object(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}


def test_websockets_from_foreign_hosts_and_origins_are_closed(toy):
    client, _ = toy
    with client.websocket_connect(f"ws://127.0.0.1:{PORT}/ws", headers={"origin": f"http://localhost:{PORT}"}) as ws:
        assert ws.receive_text() == "hello"
    for headers in ({"host": "evil.example"}, {"origin": EVIL_ORIGIN}):
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect(f"ws://127.0.0.1:{PORT}/ws", headers=headers) as ws:
                ws.receive_text()
        assert info.value.code == 1008


def test_a_server_without_a_tcp_port_answers_nothing():
    client = TestClient(make_app([]), base_url=f"http://127.0.0.1:{PORT}")
    assert client.get("/", headers={"host": f"127.0.0.1:{PORT}"}).status_code == 200
    no_port = TestClient(make_app([]), base_url="http://testserver")  # Host testserver: not loopback
    r = no_port.get("/")
    assert r.status_code == 421 and "127.0.0.1:80" in r.json()["error"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::", ""])
def test_serve_refuses_a_non_loopback_host(host):
    with pytest.raises(LocalServerError, match="not a loopback address; .*ssh -L"):
        bind_loopback(host, 0)


def test_serve_binds_loopback_and_names_a_port_in_use():
    sock = bind_loopback("localhost", 0)
    try:
        url = url_of(sock)
        assert url.startswith("http://127.0.0.1:") and sock.getsockname()[0] == "127.0.0.1"
        with pytest.raises(LocalServerError, match=f"port {sock.getsockname()[1]} on 127.0.0.1 is already in use"):
            bind_loopback("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
    with pytest.raises(LocalServerError, match="--port 70000 is not a TCP port"):
        bind_loopback("127.0.0.1", 70000)


SERVE_TOY = """
import sys
from tests.test_local_server import make_app
from ohlora_core.local_server import serve
serve(make_app([]), "127.0.0.1", int(sys.argv[1]), announce=lambda url: print("listening", url, flush=True))
"""


def test_the_real_server_refuses_the_attacks_and_serves_its_own_page():
    """`serve` under uvicorn: Host and port come from the real socket, bodies arrive in real chunks."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE_TOY, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"listening http://127.0.0.1:{port}/"
        own = send_http(port, Attack("page", "GET", "/", expect=200))
        assert own.status == 200 and own.body == b"page" and "access-control-allow-origin" not in own.headers
        for attack in attack_cases("/api/set", VALID):
            check_attack(lambda a: send_http(port, a), attack)
        start = time.perf_counter()
        big = Attack(
            "big",
            "POST",
            "/api/set",
            (("Content-Type", "application/json"),),
            b"{}",
            expect=413,
            fixed_length=300_000_000,
        )
        check_attack(lambda a: send_http(port, a), big)
        assert time.perf_counter() - start < 1.0
        own_post = send_http(port, own_requests("/api/set", VALID)[0])
        assert json.loads(own_post.body) == {"n": 1}  # no attack reached the app; the page's own POST does
    finally:
        proc.terminate()
        proc.wait(timeout=10)
