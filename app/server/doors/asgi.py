"""The ASGI door: the outermost ASGI layer, and how inference requests run on ASGI.

`ServiceMiddleware` wraps the FastAPI app. It gives every request an id, enforces the body
limit, and records every request that is not an inference exchange (an exchange records
itself). With `fast_path` on, inference requests (`POST /predict`, V2 infer) are served here
without the framework's routing; otherwise their documented FastAPI routes call
`run_exchange`, the same code. Under `batchserve serve` the uvicorn door
(`batchserve.server.doors.uvicorn`) serves inference requests before ASGI is involved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from ...errors import MalformedRequest, PayloadTooLarge
from ..errors import CLIENT_CLOSED, to_reply
from ..inference.exchange import Dialect, Reply, RequestHead
from ..inference.service import InferenceService
from ..recorder import request_id_for
from ..state import ServiceState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_KEY: Final = "request_id"  # in the scope's state, for the routes


class ClientDisconnected(Exception):
    """The client went away before its request was read."""


def text_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI-style raw headers (lower-case names) as a str dict."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length header as an int, or None; `MalformedRequest` if it is no number."""
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                raise MalformedRequest("Content-Length is not a number")
            return int(value)
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


async def run_exchange(
    service: InferenceService,
    dialect: Dialect,
    params: tuple[str, ...],
    scope: Scope,
    receive: Receive,
    request_id: str,
) -> Reply | None:
    """Read the body and run one exchange to its reply; None when the client left (the
    exchange has recorded it)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Reply | None] = loop.create_future()

    def respond(reply: Reply | None) -> bool:
        if not answer.done():
            answer.set_result(reply)
        return True

    raw = scope["headers"]
    head = RequestHead(scope["method"], scope["path"], text_headers(raw), request_id, params)
    exchange = service.exchange(dialect, head, respond, loop)
    limit = service.limits.body_bytes
    try:
        length = declared_length(raw)
        if length is not None and length > limit:
            raise PayloadTooLarge(f"request body exceeds max_body_bytes={limit}")
        body = await read_body(receive, limit)
    except (PayloadTooLarge, MalformedRequest) as exc:
        exchange.refuse(exc)
    except ClientDisconnected:
        exchange.client_gone()
    else:
        exchange.start(body)
    watcher = None if answer.done() else asyncio.ensure_future(_watch(receive))
    if watcher is not None:
        watcher.add_done_callback(lambda _: exchange.client_gone())
    try:
        return await answer
    except asyncio.CancelledError:
        exchange.client_gone()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()


async def _watch(receive: Receive) -> None:
    """Return when the client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass


class ServiceMiddleware:
    """Wraps the FastAPI app; see the module docstring."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self.service = InferenceService(state)
        self.recorder = self.service.recorder
        self.limit = state.settings.max_body_bytes
        self.fast_path = state.settings.fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        match = self.service.match(scope["method"], scope["path"])
        if match is not None and self.fast_path:
            dialect, params = match
            reply = await run_exchange(self.service, dialect, params, scope, receive, request_id)
            if reply is not None:
                await send_reply(send, reply, request_id)
            return
        await self._framework(scope, receive, send, request_id, recorded=match is not None)

    async def _framework(
        self, scope: Scope, receive: Receive, send: Send, rid: str, *, recorded: bool
    ) -> None:
        """Through the FastAPI app; an inference route's exchange records itself."""
        start = time.perf_counter()
        status = [CLIENT_CLOSED]
        if not recorded:
            self.recorder.begin()
        try:
            await self._dispatch(scope, receive, send, rid, status, inference=recorded)
        finally:
            if not recorded:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                duration = time.perf_counter() - start
                method, path = scope["method"], scope["path"]
                self.recorder.record(method, path, route, status[0], duration, rid)

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        status: list[int],
        *,
        inference: bool,
    ) -> None:
        scope.setdefault("state", {})[REQUEST_ID_KEY] = rid
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            length = None if inference else declared_length(scope["headers"])  # exchanges check
            if length is not None and length > self.limit:
                raise PayloadTooLarge(f"request body exceeds max_body_bytes={self.limit}")
        except (PayloadTooLarge, MalformedRequest) as exc:
            self.recorder.reject(exc)
            err = to_reply(exc, rid)
            reply = Reply(err.status, err.body, "application/json", list(err.headers))
            await send_reply(send, reply, rid)
            status[0] = reply.status
            return
        await self.app(scope, limited(receive, self.limit), send_with_id)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return request_id_for(value.decode("latin-1"))
    return request_id_for(None)


async def route_exchange(request: Request, dialect: Dialect, params: tuple[str, ...]) -> Response:
    """An inference route's whole work (FastAPI routes call this with `fast_path` off)."""
    service: InferenceService = request.app.state.inference
    request_id = getattr(request.state, REQUEST_ID_KEY, None) or request_id_for(None)
    reply = await run_exchange(service, dialect, params, request.scope, request.receive, request_id)
    if reply is None:  # recorded as 499 by the exchange; nobody is left to read this
        return Response(status_code=CLIENT_CLOSED)
    return Response(reply.body, reply.status, dict(reply.headers), media_type=reply.content_type)
