"""The uvicorn door: an HTTP/1.1 protocol for uvicorn that serves inference requests itself,
with the connection limits of a server that faces the network.

`ServiceProtocol` replaces uvicorn's request sequencing and input handling, for every request
(the policy is `batchserve.server.doors.connection`; this module supplies what is uvicorn's):

- inference requests (`POST /predict`, V2 infer) become an `Exchange` once their body is in:
  no ASGI task, no message dictionaries, one socket write per answer;
- every other request (and every request when `fast_path` is off) is a uvicorn
  `RequestResponseCycle` running the ASGI app, as uvicorn would run it;
- requests on a connection are answered in order, without recursion; at most one request is
  read beyond the one in flight (reading pauses, the rest stays unparsed); a malformed
  request is answered only after the requests before it;
- the request head is capped (`max_header_bytes`, 431) and timed (`header_timeout_s`, 408),
  a body must keep arriving (`body_timeout_s`, 408), an idle connection closes after
  `keep_alive_timeout_s`, and past `max_connections` the idlest connection makes room or the
  new one gets 503.

uvicorn internals used (canary: tests/server/test_uvicorn_canary.py; uvicorn is pinned to
the range the tests ran on): from ``uvicorn.protocols.http.httptools_impl``:
``HttpToolsProtocol`` (its ``__init__``, ``connection_made``, ``on_message_begin``,
``on_url``, ``on_header``, ``_should_upgrade``, ``handle_websocket_upgrade``,
``pause_writing``/``resume_writing``; attributes ``parser``, ``transport``, ``flow``, ``scope``,
``headers``, ``url``, ``expect_100_continue``, ``root_path``, ``app``, ``loop``,
``connections``, ``tasks``, ``server_state``, ``logger``, ``access_logger``, ``access_log``),
``RequestResponseCycle`` (constructor keywords and ``run_asgi``, ``body``, ``more_body``,
``message_event``, ``disconnected``, ``keep_alive``, ``response_complete``) and
``STATUS_LINE``; ``ServerState.default_headers`` and ``total_requests``; and
``FlowControl.read_paused``/``write_paused``. The server side is `batchserve.server.runner`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.parse
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from ...errors import MalformedRequest
from ..errors import HeaderTooLarge, TooManyConnections
from ..inference.exchange import Reply, RequestHead
from ..limits import ConnectionLimits
from ..recorder import request_id_for
from .asgi import ServiceMiddleware, text_headers
from .connection import BODY, BUSY, HEAD, Connection
from .requests import Exchanged

logger = logging.getLogger("batchserve.server")


class _Cycle:
    """A request served by the ASGI app through uvicorn's own request cycle."""

    __slots__ = ("app", "complete", "cycle", "protocol", "started")

    cycle: RequestResponseCycle  # set by the protocol right after construction
    starts_early = True  # the app reads the body itself

    @property
    def closes(self) -> bool:
        """uvicorn closes the connection after a response that does not keep it alive."""
        return not self.cycle.keep_alive

    def __init__(self, protocol: ServiceProtocol, app: Any) -> None:
        self.protocol = protocol
        self.app = app
        self.complete = False
        self.started = False

    def start(self) -> None:
        self.started = True
        tasks = self.protocol.tasks
        task = self.protocol.loop.create_task(self.cycle.run_asgi(self.app))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def done(self) -> None:
        """uvicorn's cycle finished its response."""
        self.protocol.finished(self)

    def lost(self) -> None:
        self.cycle.disconnected = True
        self.cycle.message_event.set()


_Request = Exchanged | _Cycle


class ServiceProtocol(Connection, HttpToolsProtocol):
    """uvicorn's httptools protocol with the policy of `Connection` (module docstring). Use
    `protocol_for(app)` to get the class for ``uvicorn.Config(http=...)``."""

    door: ServiceMiddleware
    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_connection()

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self.connections.discard(self)
            self._write_error(TooManyConnections("too many open connections; retry later"))
            return
        self._set_phase(HEAD, self.limits.header_timeout_s)  # until a first request arrives
        self._tick = self.loop.call_later(self.limits.tick_s, self._on_tick)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        for request in list(self._queue):
            request.lost()
        self._queue.clear()
        self._receiving = self._held = None
        if self._tick is not None:
            self._tick.cancel()
        self.flow.resume_writing()
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

    def shutdown(self) -> None:
        """uvicorn's server is shutting down: close when the requests in hand are answered."""
        self._closing = True
        if not self._queue:
            self.transport.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._advance()

    def _pause_reading(self) -> None:
        self.flow.pause_reading()

    def _resume_reading(self) -> None:
        self.flow.resume_reading()

    def _reading_paused(self) -> bool:
        return bool(self.flow.read_paused)

    def _writing_paused(self) -> bool:
        return bool(self.flow.write_paused)

    def _count_answer(self) -> None:
        self.server_state.total_requests += 1

    # -- parsing -------------------------------------------------------------------------

    def _parse(self, piece: bytes | memoryview) -> bool:
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self.logger.warning("Unsupported upgrade request.")
            return False
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._break(cause if isinstance(cause, HeaderTooLarge) else exc)
            return False
        except httptools.HttpParserError as exc:
            self._break(MalformedHttp(f"invalid HTTP request: {exc}"))
            return False
        return not self.transport.is_closing()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_fed = 0
        self._phase = HEAD
        self._deadline = self._now + self.limits.header_timeout_s

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        if parser.should_upgrade() and self._should_upgrade():
            self.scope["method"] = method
            return
        target = self.url
        if target[:1] == b"/":  # origin form, the usual one
            raw_path, _, query = target.partition(b"?")
        else:
            raw_path, query = _split_target(target)
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        keep_alive = version != "1.0" and parser.should_keep_alive()
        match = None
        if self.door.fast_path and not self.expect_100_continue and not self.root_path:
            match = self.door.service.match(method, path)
        request: _Request
        if match is not None:
            headers = text_headers(self.headers)
            dialect, params = match
            request = Exchanged(keep_alive)
            rid = request_id_for(headers.get("x-request-id"))
            head = RequestHead(method, path, headers, rid, params)
            respond = functools.partial(self.answer, request)  # no Python frame of its own
            request.exchange = self.door.service.exchange(dialect, head, respond, self.loop)
            declared, coding = headers.get("content-length"), headers.get("transfer-encoding")
            length = int(declared) if declared is not None and declared.isdigit() else None
            chunked = coding is not None and "chunked" in coding.lower()
        else:
            length, chunked = _framing(self.headers)
            scope = self.scope
            scope["method"] = method
            if version != "1.1":
                scope["http_version"] = version
            scope["path"] = self.root_path + path
            scope["raw_path"] = self.root_path.encode("ascii") + raw_path
            scope["query_string"] = query
            request = self._cycle(keep_alive)
        self._queue.append(request)
        self._receiving = request
        self._body_left = None if chunked else length
        self._phase = BODY
        self._deadline = self._now + self.limits.body_timeout_s
        if match is None:
            self._advance()  # the app starts at once and reads the body itself
        elif length is not None and length > self.door.limit:
            assert isinstance(request, Exchanged)
            self._refuse_body(request)

    def _cycle(self, keep_alive: bool) -> _Cycle:
        request = _Cycle(self, self.app)
        request.cycle = RequestResponseCycle(
            scope=self.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=keep_alive and not self._closing_now(),
            on_response=request.done,
        )
        return request

    def on_body(self, body: bytes) -> None:
        request = self._receiving
        if request is None:
            return
        if self._body_left is not None:
            self._body_left -= len(body)
        self._deadline = self._now + self.limits.body_timeout_s
        if isinstance(request, Exchanged):
            request.body += body
            if len(request.body) > self.door.limit:  # a chunked body over the limit
                self._refuse_body(request)
            return
        assert isinstance(request, _Cycle)
        cycle = request.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()  # the app resumes it as it reads
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        request, self._receiving, self._body_left = self._receiving, None, None
        if request is None:
            return
        request.complete = True
        if isinstance(request, _Cycle):
            request.cycle.more_body = False
            request.cycle.message_event.set()
        self._phase = BUSY
        self._advance()

    # -- bytes out ---------------------------------------------------------------------------

    def _encode(self, reply: Reply, rid: str, keep_alive: bool) -> bytes:
        parts = [STATUS_LINE[reply.status]]
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (
            b"content-type: ",
            reply.content_type.encode("latin-1"),
            b"\r\ncontent-length: ",
            str(len(reply.body)).encode("ascii"),
            b"\r\nx-request-id: ",
            rid.encode("latin-1"),
            b"\r\n",
        )
        for key, text in reply.headers:
            parts += (key.encode("latin-1"), b": ", text.encode("latin-1"), b"\r\n")
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", reply.body)
        return b"".join(parts)


class MalformedHttp(MalformedRequest):
    """The bytes on the connection are not HTTP/1.1."""


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """(path, query) of a request target in absolute form (``http://host/path?q``)."""
    parsed = httptools.parse_url(target)
    return parsed.path, parsed.query or b""


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(declared Content-Length or None, whether the body is chunked); httptools has already
    refused malformed or contradictory framing."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked


def protocol_for(door: ServiceMiddleware) -> type[ServiceProtocol]:
    """A `ServiceProtocol` class bound to `door` (and its settings' connection limits)."""
    limits = ConnectionLimits.from_settings(door.state.settings)
    return type("ServiceProtocol", (ServiceProtocol,), {"door": door, "limits": limits})
