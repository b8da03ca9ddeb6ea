"""The attacks every local server of ours must refuse (ohlora_core/local_server.py), as data plus two senders.

Reusable as is by any later page (the studio): give it the path of one state-changing route and a body
that route would accept, then send each case through Starlette's TestClient (`send_asgi`) and/or to the
real server process (`send_http`, raw http.client so Host and Content-Length are exactly what the case
says), and check it with `check_attack`:

    @pytest.mark.parametrize("attack", attack_cases("/api/label", {"no": 1, "gender": 1, "quality": 1}),
                             ids=lambda a: a.name)
    def test_refused(attack, client, snapshot):
        check_attack(lambda a: send_asgi(client, a), attack, snapshot)

Each state-changing case carries a body the route would accept, so the only reason it can be refused is
the attack itself; `own_requests` are the controls (the page's own requests) that must still succeed.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ohlora_core.local_server import DEFAULT_MAX_BODY

EVIL = "http://evil.example"
JSON = ("Content-Type", "application/json")


@dataclass(frozen=True)
class Attack:
    """One request: `headers` may hold `{port}`; Host defaults to 127.0.0.1:{port} unless given."""

    name: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunks: int = 0  # > 0: send `body` that many times as a chunked body (no Content-Length)
    expect: int = 403
    fixed_length: int | None = None  # a Content-Length to claim whatever the body (the 300 MB case)

    def header_list(self, port: int) -> list[tuple[str, str]]:
        given = [(k, v.format(port=port)) for k, v in self.headers]
        host = [] if any(k.lower() == "host" for k, _ in given) else [("Host", f"127.0.0.1:{port}")]
        length = [] if self.fixed_length is None else [("Content-Length", str(self.fixed_length))]
        return host + given + length


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


def attack_cases(
    state_change_path: str, valid_json_body: dict, read_paths: Sequence[str] = ("/",), max_body: int = DEFAULT_MAX_BODY
) -> list[Attack]:
    """Every attack of issue 17 finding 1 against one server: CSRF, rebinding, foreign origins, big bodies,
    malformed JSON. `read_paths`: GET routes whose answers a foreign page must not read."""
    return (
        _csrf_cases(state_change_path, valid_json_body)
        + _origin_cases(state_change_path, valid_json_body)
        + [c for path in read_paths for c in _read_cases(path)]
        + _body_cases(state_change_path, valid_json_body, max_body)
    )


def own_requests(state_change_path: str, valid_json_body: dict, read_paths: Sequence[str] = ("/",)) -> list[Attack]:
    """The controls: what the page itself sends (from its own origin, as JSON), and reads under each loopback
    name. All must succeed (expect 200) on the very sender the attacks use."""
    body = json.dumps(valid_json_body).encode()
    own = ("Origin", "http://127.0.0.1:{port}")
    post = Attack(
        "own page's JSON POST",
        "POST",
        state_change_path,
        (own, JSON, ("Sec-Fetch-Site", "same-origin")),
        body,
        expect=200,
    )
    curl = Attack("JSON POST without Origin (curl)", "POST", state_change_path, (JSON,), body, expect=200)
    reads = [
        Attack(f"GET {path} as {name}", "GET", path, (("Host", f"{name}:{{port}}"),), expect=200)
        for path in read_paths
        for name in ("127.0.0.1", "localhost", "[::1]")
    ]
    return [post, curl, *reads]


def _csrf_cases(path: str, valid: dict) -> list[Attack]:
    """The "simple requests" a browser sends cross-origin without a preflight, and their variants."""
    body = json.dumps(valid).encode()
    form = "&".join(f"{k}={v}" for k, v in valid.items()).encode()
    multipart = (
        b"".join(
            b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (str(k).encode(), str(v).encode())
            for k, v in valid.items()
        )
        + b"--b--\r\n"
    )
    cross = ("Sec-Fetch-Site", "cross-site")
    return [
        Attack(
            "cross-origin POST text/plain",
            "POST",
            path,
            (("Origin", EVIL), cross, ("Content-Type", "text/plain")),
            body,
        ),
        Attack(
            "cross-origin POST form",
            "POST",
            path,
            (("Origin", EVIL), cross, ("Content-Type", "application/x-www-form-urlencoded")),
            form,
        ),
        Attack(
            "cross-origin POST multipart",
            "POST",
            path,
            (("Origin", EVIL), cross, ("Content-Type", "multipart/form-data; boundary=b")),
            multipart,
        ),
        Attack("POST text/plain without Origin", "POST", path, (("Content-Type", "text/plain"),), body, expect=415),
        Attack(
            "POST form from own origin",
            "POST",
            path,
            (("Origin", "http://127.0.0.1:{port}"), ("Content-Type", "application/x-www-form-urlencoded")),
            form,
            expect=415,
        ),
        Attack(
            "POST multipart without Origin",
            "POST",
            path,
            (("Content-Type", "multipart/form-data; boundary=b"),),
            multipart,
            expect=415,
        ),
        Attack("POST without Content-Type", "POST", path, (), body, expect=415),
        Attack("JSON POST marked cross-site", "POST", path, (cross, JSON), body),
        Attack("JSON POST marked same-site", "POST", path, (("Sec-Fetch-Site", "same-site"), JSON), body),
    ]


def _origin_cases(path: str, valid: dict) -> list[Attack]:
    """Foreign Host (DNS rebinding: the page's own origin is then the attacker's name) and foreign Origins."""
    body = json.dumps(valid).encode()
    rebound = (("Host", "evil.example:{port}"), ("Origin", "http://evil.example:{port}"), JSON)
    origins = [
        EVIL,
        "null",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1:1",
        "http://127.0.0.1:{port}@evil.example",
        "http://127.0.0.1.evil.example:{port}",
    ]
    return [
        Attack("rebound POST (Host evil.example)", "POST", path, rebound, body, expect=421),
        Attack("POST to right name, wrong port", "POST", path, (("Host", "127.0.0.1:1"), JSON), body, expect=421),
    ] + [Attack(f"JSON POST from Origin {o}", "POST", path, (("Origin", o), JSON), body) for o in origins]


def _read_cases(path: str) -> list[Attack]:
    return [
        Attack(f"GET {path} with Host evil.example", "GET", path, (("Host", "evil.example"),), expect=421),
        Attack(f"GET {path} with Host evil.example:port", "GET", path, (("Host", "evil.example:{port}"),), expect=421),
        Attack(f"GET {path} with Host 0.0.0.0:port", "GET", path, (("Host", "0.0.0.0:{port}"),), expect=421),
        Attack(f"GET {path} from Origin evil.example", "GET", path, (("Origin", EVIL),)),
    ]


def _body_cases(path: str, valid: dict, max_body: int) -> list[Attack]:
    """Oversized, deep, malformed and non-object bodies, each sent as proper same-origin JSON."""
    depth = min(100_000, (max_body - 16) // 2)  # as deep as fits under the cap: it must reach the JSON parser
    chunk = 16 * 1024
    return [
        Attack("300 MB Content-Length", "POST", path, (JSON,), b"{}", expect=413, fixed_length=300_000_000),
        Attack(
            "chunked body over the cap", "POST", path, (JSON,), b" " * chunk, chunks=max_body // chunk + 1, expect=413
        ),
        Attack(f"JSON nested {depth:,} deep", "POST", path, (JSON,), b"[" * depth + b"]" * depth, expect=400),
        Attack("malformed JSON", "POST", path, (JSON,), b'{"no": ', expect=400),
        Attack("JSON array, not an object", "POST", path, (JSON,), json.dumps([valid]).encode(), expect=400),
        Attack("JSON with NaN", "POST", path, (JSON,), b'{"no": NaN}', expect=400),
        Attack("body not UTF-8", "POST", path, (JSON,), b'{"no": "\xff"}', expect=400),
    ]


def send_asgi(client, attack: Attack) -> Answer:
    """Through Starlette's TestClient; its base_url must be http://127.0.0.1:<port> (the port comes from it)."""
    port = client.base_url.port
    headers = attack.header_list(port)
    content = (iter([attack.body] * attack.chunks)) if attack.chunks else attack.body
    r = client.request(attack.method, attack.path, headers=headers, content=content)
    return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)


def send_http(port: int, attack: Attack, timeout: float = 10) -> Answer:
    """To a real server on 127.0.0.1:<port>, with exactly the case's headers (http.client adds none)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(attack.method, attack.path, skip_host=True, skip_accept_encoding=True)
        for name, value in attack.header_list(port):
            conn.putheader(name, value)
        if attack.chunks:
            conn.putheader("Transfer-Encoding", "chunked")
            data = b"%x\r\n%s\r\n" % (len(attack.body), attack.body) * attack.chunks + b"0\r\n\r\n"
        else:
            if attack.fixed_length is None:
                conn.putheader("Content-Length", str(len(attack.body)))
            data = attack.body
        conn.endheaders(data)
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def assert_refused(attack: Attack, answer: Answer) -> None:
    """The expected status, a JSON {"error": message} that says why, and no CORS header."""
    assert answer.status == attack.expect, (
        f"{attack.name}: expected {attack.expect}, got {answer.status}: {answer.body[:300]!r}"
    )
    assert_no_cors(answer)
    error = json.loads(answer.body).get("error")
    assert isinstance(error, str) and len(error) > 10, f"{attack.name}: no message in {answer.body[:300]!r}"


def assert_no_cors(answer: Answer) -> None:
    cors = [k for k in answer.headers if k.startswith("access-control-")]
    assert not cors, f"CORS headers sent: {cors}"


def check_attack(send: Callable[[Attack], Answer], attack: Attack, snapshot: Callable[[], object] = lambda: None):
    """Send `attack`; it is refused as expected and `snapshot()` (the server's state) is unchanged."""
    before = snapshot()
    assert_refused(attack, send(attack))
    assert snapshot() == before, f"{attack.name}: the server's state changed"
