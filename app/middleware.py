"""Pure ASGI middleware: request metrics, the API key gate and the body-size limit.

The gate and the limit sit in front of routing so that they answer before a single byte of
the body is read: a request with a missing key gets its 401, and one whose Content-Length is
over the limit its 413, with the body left unread. A body without a Content-Length (chunked) is
counted as it streams in and cut off with a 413 as soon as it passes the limit.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Collection

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, Unauthorized
from app.metrics import Metrics


async def _send_json(send: Send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": raw})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Counts requests by (route template, method, status) and times them.

    Paths that match no route are labelled ``other`` so scanners cannot blow up the label set.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, known_paths: Callable[[], Collection[str]]) -> None:
        self.app, self.metrics, self.known_paths = app, metrics, known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or (scope["path"] if scope["path"] in self.known_paths() else "other")
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"  # bounded label set
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)


def key_matches(authorization: str | None, key: bytes) -> bool:
    """Whether an ``Authorization`` header (as ASGI gives it, decoded latin-1) is ``Bearer <key>``:
    the header's own bytes (latin-1 undoes exactly) against the key's UTF-8 bytes, so a
    non-ASCII key sent as UTF-8 matches; compared in constant time."""
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1"), key)


class ApiKeyGate:
    """``Authorization: Bearer <key>`` on ``protected`` paths (CORS preflights pass through)."""

    def __init__(self, app: ASGIApp, key: str, protected: Collection[str]) -> None:
        self.app, self.key, self.protected = app, key.encode("utf-8"), frozenset(protected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.protected and scope["method"] != "OPTIONS":
            if not key_matches(_header(scope, b"authorization"), self.key):
                err = Unauthorized()
                await _send_json(send, err.status_code, {"detail": err.detail}, err.headers)
                return
        await self.app(scope, receive, send)


MAX_HEAD_BYTES = 32 * 1024


class HeadLimit:
    """431 (JSON) for a request whose headers add up to more than ``max_bytes``. uvicorn's h11
    parser already refuses a head that keeps arriving past 64 KiB (``app.config.SERVER_OPTIONS``);
    this bounds the rest, whatever the server in front."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEAD_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
            if size > self.max_bytes:
                await _send_json(send, 431, {"detail": f"request headers of {size} bytes; the limit is "
                                                       f"{self.max_bytes}"})
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, or while it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _send_json(send, 400, {"detail": f"invalid Content-Length header {length!r}"})
                return
            if int(length) > self.max_bytes:
                await _send_json(send, 413, {"detail": self._too_large(int(length))})
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._too_large())
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except PayloadTooLarge as e:  # raised where nothing turned it into a response
            if not started:
                await _send_json(send, 413, {"detail": e.detail})

    def _too_large(self, length: int | None = None) -> str:
        got = f" ({length} bytes)" if length is not None else ""
        return f"request body too large{got}: the limit is {self.max_bytes} bytes (AIRSCENE_MAX_BODY_BYTES)"


class JsonCORS(CORSMiddleware):
    """Starlette's CORS middleware, but a refused preflight is JSON ``{"detail": ...}`` like
    every other error of the service (starlette answers it in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return JSONResponse({"detail": bytes(response.body).decode()}, status_code=response.status_code,
                            headers=headers)

