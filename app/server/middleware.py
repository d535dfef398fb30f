"""The outermost ASGI layer: request ids, body-size limit, metrics, access log, and the lean
fast path that serves `POST /predict` without the framework's routing."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from ..errors import ItemTooLarge, MalformedRequest, PayloadTooLarge
from .errors import to_reply
from .logs import AccessLog
from .predict import Reply, handle_predict, text_headers
from .state import ServiceState
from .waiting import ClientDisconnected

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
PREDICT_PATH = "/predict"
CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never sent


# Fresh ids: a random per-process prefix and a counter. Unique like uuid4 for all practical
# purposes, without a system call per request.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID when it is sane, otherwise a fresh one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return request_id_for(None)


def request_id_for(client_id: str | None) -> str:
    """`client_id` (an X-Request-ID value) when it is sane, otherwise a fresh id."""
    if client_id is not None and _REQUEST_ID.match(client_id):
        return client_id
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as an int, or None."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise MalformedRequest("Content-Length is not a number") from None
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole body, failing with `PayloadTooLarge` as soon as it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds max_body_bytes={limit}")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def limited(receive: Receive, limit: int) -> Receive:
    """A `receive` that raises `PayloadTooLarge` once the body passes `limit` bytes."""
    seen = [0]

    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                raise PayloadTooLarge(f"request body exceeds max_body_bytes={limit}")
        return message

    return wrapped


def error_as_reply(exc: Exception, request_id: str) -> Reply:
    """An error in the service's JSON error format."""
    err = to_reply(exc, request_id)
    body = orjson.dumps({"error": err.message, "code": err.code})
    return Reply(err.status, body, "application/json", list(err.headers))


async def send_reply(send: Send, reply: Reply, request_id: str) -> None:
    """Send a complete response, with its X-Request-ID."""
    headers = [
        (b"content-type", reply.content_type.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode("latin-1")),
        (b"x-request-id", request_id.encode("latin-1")),
    ]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class ServiceMiddleware:
    """Wraps the FastAPI app; see the module docstring."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self.limit = state.settings.max_body_bytes
        self.fast_path = state.settings.fast_path
        settings = state.settings
        self.access_log: AccessLog | None = None
        if settings.access_log:
            secrets = [settings.admin_token.get_secret_value()] if settings.admin_token else []
            self.access_log = AccessLog(settings.log_format, secrets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_from(scope)
        status = [CLIENT_CLOSED]
        metrics = self.state.metrics
        metrics.inflight += 1  # requests run on the event loop thread only
        try:
            await self._dispatch(scope, receive, send, request_id, status)
        finally:
            metrics.inflight -= 1
            self._record(scope, status[0], time.perf_counter() - start, request_id)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, rid: str, status: list[int]
    ) -> None:
        try:
            length = declared_length(scope)
            if length is not None and length > self.limit:
                raise PayloadTooLarge(f"request body exceeds max_body_bytes={self.limit}")
        except (PayloadTooLarge, MalformedRequest) as exc:
            reply = error_as_reply(exc, rid)
            await send_reply(send, reply, rid)
            status[0] = reply.status
            return
        if self.fast_path and scope["path"] == PREDICT_PATH and scope["method"] == "POST":
            await self.serve_predict(scope, receive, send, rid, status)
            return
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        await self.app(scope, limited(receive, self.limit), send_with_id)

    async def serve_predict(
        self, scope: Scope, receive: Receive, send: Send, rid: str, status: list[int]
    ) -> None:
        """The whole `/predict` exchange, straight on ASGI."""
        try:
            body = await read_body(receive, self.limit)
        except ClientDisconnected:
            return
        except Exception as exc:
            reply: Reply | None = self.predict_error(exc, rid)
        else:
            reply = await self.predict_reply(body, scope["headers"], rid, receive)
        if reply is not None:
            status[0] = reply.status
            await send_reply(send, reply, rid)

    async def predict_reply(
        self,
        body: bytes,
        raw_headers: Iterable[tuple[bytes, bytes]],
        rid: str,
        receive: Receive | None,
    ) -> Reply | None:
        """The answer to a `/predict` body, errors included; None when the client left."""
        try:
            return await handle_predict(self.state, body, text_headers(raw_headers), receive)
        except ClientDisconnected:
            return None
        except Exception as exc:
            return self.predict_error(exc, rid)

    def predict_error(self, exc: Exception, rid: str) -> Reply:
        """The error reply for a failed prediction, counting refused input."""
        reply = error_as_reply(exc, rid)
        if reply.status in (400, 415, 422):
            self.state.metrics.reject("invalid")
        elif reply.status == 413 and not isinstance(exc, ItemTooLarge):
            self.state.metrics.reject("too_large")  # the engine counts its own refusals
        return reply

    def _record(self, scope: Scope, status: int, duration: float, rid: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or (
            PREDICT_PATH if scope["path"] == PREDICT_PATH else "unmatched"
        )
        self.record(scope["method"], scope["path"], template, status, duration, rid)

    def record(
        self, method: str, path: str, route: str, status: int, duration: float, rid: str
    ) -> None:
        """Count, time and log one finished request; `route` is its template."""
        self.state.metrics.observe_request(route, status, duration)
        self.state.counters[f"status_{status}"] += 1
        self.state.counters["requests"] += 1
        if self.access_log is not None:
            self.access_log.record(method, path, status, duration, rid)
