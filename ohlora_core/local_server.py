"""The one guard for every local web server of ours (`ohlora label` now, the studio page later).

A server on 127.0.0.1 is still reachable from every web page the user opens: a browser sends "simple"
cross-origin requests (text/plain, form or multipart POSTs) without asking first, and a page on a
rebinding domain (evil.example resolving to 127.0.0.1) talks to us with `Host: evil.example` and can
read the answers. So every local server is wrapped in `LocalGuard` (pure ASGI, so it can refuse a body
before reading it) and started with `serve`:

- `Host` must be this server's own loopback address and port (127.0.0.1, localhost, [::1]) — else 421;
- an `Origin`, where sent, must be `http://<one of those>:<port>` — else 403, whatever the method;
- POST/PUT/PATCH/DELETE need `Content-Type: application/json` (415 otherwise: the simple-request
  CSRF vectors) and no `Sec-Fetch-Site` of cross-site / same-site (403);
- bodies are capped (`max_body`, default 64 KiB): a larger Content-Length is refused (413) before a
  byte is read, a chunked body is counted while it streams and refused once over the cap;
- no CORS header ever leaves (an app's `access-control-*` headers are dropped), and every answer says
  "not in a frame, not for other origins" (clickjacking a keyboard-driven page, cross-origin <img>).

Request bodies are parsed with `parse_json_object` / `read_json_object`, which raise `BadInput` (400 with
a message, see `json_error_handlers`) for non-UTF-8 bytes, malformed JSON, NaN/Infinity, nesting deeper
than `MAX_JSON_DEPTH` or anything but an object — never a 500 for bad input.
"""

from __future__ import annotations

import errno
import json
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # as they appear in Host and Origin
BIND_ADDRESSES = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1", "[::1]": "::1"}
DEFAULT_MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 32
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"referrer-policy", b"no-referrer"),
)
_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[^:\[\]/@\s]+)(?::(\d{1,5}))?$", re.IGNORECASE)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class BadInput(ValueError):
    """A request whose content is malformed: answered 400 with this message."""


class Refused(Exception):
    """A request the guard refuses: `status` and a message for the JSON answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class LocalServerError(Exception):
    """`serve` cannot start: a non-loopback address, a port in use or out of range."""


class LocalGuard:
    """ASGI middleware: only this machine's own pages (same loopback host and port) may use the wrapped app."""

    def __init__(self, app: ASGIApp, *, max_body: int = DEFAULT_MAX_BODY):
        if max_body < 0:
            raise ValueError(f"max_body must be >= 0 bytes, got {max_body}")
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)  # lifespan
        try:
            headers = _headers(scope)
            port = _own_port(scope)
            check_host(_one(headers, "host"), port)
            check_origin(_one(headers, "origin"), port)
            if scope["type"] == "http":
                check_state_change(scope["method"], headers)
                receive = await self._buffered(headers, receive)
        except Refused as refused:
            return await _refuse(scope, send, refused)
        await self.app(scope, receive, _without_cors(send))

    async def _buffered(self, headers: Mapping[str, list[str]], receive: Receive) -> Receive:
        """The whole body, read here chunk by chunk and refused once over the cap; the app gets it replayed."""
        length = _content_length(headers)
        if length is not None and length > self.max_body:
            raise Refused(
                413, f"request body of {length:,} bytes is over this server's limit of {self.max_body:,} bytes"
            )
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay([message], receive)
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_body:
                raise Refused(
                    413,
                    f"request body is over this server's limit of {self.max_body:,} bytes "
                    f"(refused after {total:,} bytes)",
                )
            more = message.get("more_body", False)
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def guard(app: ASGIApp, *, max_body: int = DEFAULT_MAX_BODY) -> LocalGuard:
    """`app` behind the local-server guard (see the module's docstring); `max_body` in bytes."""
    return LocalGuard(app, max_body=max_body)


def check_host(host: str | None, port: int) -> None:
    """Refuse (421) a Host that is not this server's own loopback name and port (DNS rebinding)."""
    if host is None:
        raise Refused(421, "a Host header is required")
    if not _is_own(host, port):
        raise Refused(
            421,
            f"Host {host!r} is not this server; it answers only to "
            f"{', '.join(f'{name}:{port}' for name in LOOPBACK_NAMES)}",
        )


def check_origin(origin: str | None, port: int) -> None:
    """Refuse (403) a request sent by a page of any other origin (any method: reads too)."""
    if origin is None:
        return
    parts = urlsplit(origin)
    if parts.scheme != "http" or parts.path or parts.query or parts.fragment or not _is_own(parts.netloc, port):
        raise Refused(
            403,
            f"Origin {origin!r} is not this server's own page (http://127.0.0.1:{port}); "
            "requests from other pages are refused",
        )


def check_state_change(method: str, headers: Mapping[str, list[str]]) -> None:
    """A state change only as JSON (a browser cannot send that cross-origin without asking) and not cross-site."""
    if method.upper() not in STATE_CHANGING:
        return
    site = (_one(headers, "sec-fetch-site") or "").lower()
    if site in ("cross-site", "same-site"):
        raise Refused(403, f"a {method} from another site (Sec-Fetch-Site: {site}) is refused")
    media_type = (_one(headers, "content-type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise Refused(
            415, f"a {method} must carry Content-Type: application/json, got {media_type or 'no Content-Type'}"
        )


def parse_json_object(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH, what: str = "request body") -> dict:
    """`raw` as a JSON object, or BadInput saying what is wrong (encoding, syntax, depth, type)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what} is not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})") from None
    if _nested_deeper_than(text, max_depth):
        raise BadInput(f"{what} is JSON nested deeper than {max_depth} levels; expected a flat object")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise BadInput(f"{what} must be a JSON object {{...}}, got a JSON {type(value).__name__}")
    return value


async def read_json_object(request, *, max_depth: int = MAX_JSON_DEPTH, what: str = "request body") -> dict:
    """A Starlette request's body as a JSON object (`parse_json_object`)."""
    return parse_json_object(await request.body(), max_depth=max_depth, what=what)


def json_error_handlers() -> dict:
    """Starlette `exception_handlers` that answer BadInput (and subclasses) with 400 {"error": message}."""
    from starlette.responses import JSONResponse

    async def bad_input(request, exc: BadInput):
        return JSONResponse({"error": str(exc)}, status_code=400)

    return {BadInput: bad_input}


def loopback_address(host: str) -> str:
    """The address to bind for --host, or LocalServerError: only this machine's loopback."""
    address = BIND_ADDRESSES.get(host.strip().lower())
    if address is None:
        raise LocalServerError(
            f"--host {host!r} is not a loopback address; a local page listens only on "
            "127.0.0.1, localhost or ::1 (anyone who reaches another address could change "
            "your files). To use it from another machine, forward the port: "
            "ssh -L PORT:127.0.0.1:PORT this-machine"
        )
    return address


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening socket on the loopback `host` and `port` (0: any free port), or LocalServerError."""
    address = loopback_address(host)
    if not 0 <= port <= 65535:
        raise LocalServerError(f"--port {port} is not a TCP port; expected 1..65535")
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop may bind
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LocalServerError(
                f"port {port} on {address} is already in use (another server, perhaps an "
                "earlier one still running); stop it or pass --port with a free port"
            ) from None
        raise LocalServerError(f"cannot listen on {address} port {port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a socket from `bind_loopback`."""
    address, port = sock.getsockname()[:2]
    return f"http://{f'[{address}]' if ':' in address else address}:{port}/"


def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    announce: Callable[[str], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve `app` with uvicorn on loopback only, until Ctrl+C; `announce(url)` once it listens.

    An app not yet wrapped in LocalGuard is wrapped with the defaults (wrap it yourself for another cap).
    Raises LocalServerError (a message for the user, no traceback needed) before anything is served.
    """
    import uvicorn

    sock = bind_loopback(host, port)
    guarded = app if isinstance(app, LocalGuard) else LocalGuard(app)
    config = uvicorn.Config(
        guarded, log_level=log_level, proxy_headers=False, server_header=False
    )  # no X-Forwarded-* trust: nothing stands in front of us
    if announce is not None:
        announce(url_of(sock))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _headers(scope: Scope) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1").strip())
    return out


def _one(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name, [])
    if len(set(values)) > 1:
        raise Refused(400, f"{len(values)} different {name} headers; expected one")
    return values[0] if values else None


def _own_port(scope: Scope) -> int:
    server = scope.get("server")
    if not server or server[1] is None:
        raise Refused(421, "this server cannot tell its own port (not listening on TCP), so it answers nothing")
    return int(server[1])


def _is_own(netloc: str, port: int) -> bool:
    match = _HOST.match(netloc.strip())
    if not match:
        return False
    name, given = match.group(1).lower(), match.group(2)
    return name in LOOPBACK_NAMES and (int(given) if given else 80) == port


def _content_length(headers: Mapping[str, list[str]]) -> int | None:
    value = _one(headers, "content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise Refused(400, f"Content-Length {value!r} is not a byte count")
    return int(value)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands out `messages`, then waits on the real one (for http.disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _without_cors(send: Send) -> Send:
    """Drop any access-control-* header the app sets and add SECURITY_HEADERS to every answer."""

    async def guarded(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", ()) if not k.lower().startswith(b"access-control-")]
            names = {k.lower() for k, _ in kept}
            message = {**message, "headers": kept + [h for h in SECURITY_HEADERS if h[0] not in names]}
        await send(message)

    return guarded


async def _refuse(scope: Scope, send: Send, refused: Refused) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": str(refused)[:120]})
        return
    body = json.dumps({"error": str(refused)}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _nested_deeper_than(text: str, max_depth: int) -> bool:
    """True when brackets outside strings nest deeper than `max_depth` (json.loads would recurse that deep)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > max_depth:
            return True
    return False


def _no_constant(name: str):
    raise BadInput(f"request body holds {name}, which is not JSON (numbers must be finite)")


__all__ = (
    "BadInput",
    "DEFAULT_MAX_BODY",
    "LocalGuard",
    "LocalServerError",
    "MAX_JSON_DEPTH",
    "Refused",
    "bind_loopback",
    "check_host",
    "check_origin",
    "check_state_change",
    "guard",
    "json_error_handlers",
    "loopback_address",
    "parse_json_object",
    "read_json_object",
    "serve",
    "url_of",
)
