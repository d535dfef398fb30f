"""The uvicorn door: an HTTP/1.1 protocol for uvicorn that serves inference requests itself,
with the connection limits of a server that faces the network.

`ServiceProtocol` replaces uvicorn's request sequencing and input handling, for every request:

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
import logging
import urllib.parse
from collections import deque
from typing import Any, Final

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from ...errors import MalformedRequest, PayloadTooLarge
from ..errors import HeaderTooLarge, RequestTimeout, TooManyConnections, to_reply
from ..inference.exchange import Dialect, Exchange, Reply, RequestHead
from ..limits import ConnectionLimits
from ..recorder import request_id_for
from .asgi import ServiceMiddleware, text_headers

logger = logging.getLogger("batchserve.server")
_CHUNKED_SLICE: Final = 4096  # pieces of a body whose length is unknown (chunked)
_HEAD_END: Final = b"\r\n\r\n"
_IDLE, _HEAD, _BODY, _BUSY = range(4)


class _Exchanged:
    """A request served by an `Exchange`; it starts once its body is in and it is first."""

    __slots__ = ("body", "complete", "exchange", "keep_alive", "protocol", "refusal", "started")

    exchange: Exchange  # set by the protocol right after construction

    def __init__(self, protocol: ServiceProtocol, keep_alive: bool) -> None:
        self.protocol = protocol
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.complete = False
        self.started = False
        self.refusal: BaseException | None = None

    def start(self) -> None:
        self.started = True
        if self.refusal is not None:
            self.exchange.refuse(self.refusal)
        else:
            body, self.body = self.body, bytearray()  # handed over whole, not copied
            self.exchange.start(body)

    def respond(self, reply: Reply | None) -> bool:
        return self.protocol.answer(self, reply)

    def lost(self) -> None:
        self.exchange.client_gone()


class _Cycle:
    """A request served by the ASGI app through uvicorn's own request cycle."""

    __slots__ = ("app", "complete", "cycle", "protocol", "started")

    cycle: RequestResponseCycle  # set by the protocol right after construction

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


_Request = _Exchanged | _Cycle


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with batchserve's request sequencing and limits (module
    docstring). Use `protocol_for(app)` to get the class for ``uvicorn.Config(http=...)``."""

    door: ServiceMiddleware
    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: deque[_Request] = deque()  # received requests in order; [0] is first
        self._receiving: _Request | None = None  # the request whose body is being parsed
        self._in_head = False
        self._head_fed = 0
        self._body_left: int | None = None
        self._held: bytearray | None = None  # received, not parsed: a request is waiting
        self._broken: BaseException | None = None  # answered once the queue is empty
        self._stopped = False  # nothing more is read from this connection
        self._closing = False  # close once the requests in hand are answered
        self._feeding = self._advancing = self._again = False
        self._phase = _IDLE
        self._deadline = 0.0
        self._now = 0.0  # the loop's time when the data being parsed arrived
        self._tick: asyncio.TimerHandle | None = None

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self.connections.discard(self)
            self._write_error(TooManyConnections("too many open connections; retry later"))
            return
        self._set_phase(_HEAD, self.limits.header_timeout_s)  # until a first request arrives
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

    # -- input ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            self.flow.pause_reading()
            return
        if self._stopped:
            return
        self._now = self.loop.time()
        if self._receiving is None and len(self._queue) >= 2:
            self._held = bytearray(data)
            self.flow.pause_reading()
            return
        room = self.limits.max_header_bytes - (self._head_fed if self._in_head else 0)
        if len(data) <= room and data.count(_HEAD_END) <= 1:
            # The usual chunk: at most one request head ends in it, so it can complete at
            # most one request, and even all head it stays under the cap. One parse.
            self._feeding = True
            try:
                if self._parse(data) and self._in_head:
                    self._head_fed += len(data)
            finally:
                self._feeding = False
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Parse `data` in pieces that end where a request's head or body ends, holding the
        rest back once a request waits behind the one in flight."""
        self._feeding = True
        try:
            view, pos, size = memoryview(data), 0, len(data)
            while pos < size:
                if self._receiving is None and len(self._queue) >= 2:
                    self._held = bytearray(view[pos:])
                    self.flow.pause_reading()
                    return
                end = self._piece_end(data, pos, size)
                if not self._parse(view[pos:end]) or self._stopped:
                    return
                if self._in_head:
                    self._head_fed += end - pos
                    if self._head_fed > self.limits.max_header_bytes:
                        self._break(self._too_large_head())
                        return
                pos = end
        finally:
            self._feeding = False

    def _piece_end(self, data: bytes, pos: int, size: int) -> int:
        if self._phase == _BODY:
            step = _CHUNKED_SLICE if self._body_left is None else self._body_left
            return min(size, pos + step)
        room = self.limits.max_header_bytes + 1 - (self._head_fed if self._in_head else 0)
        found = data.find(_HEAD_END, pos, pos + room)
        return found + len(_HEAD_END) if found >= 0 else min(size, pos + room)

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
        self._phase = _HEAD
        self._deadline = self._now + self.limits.header_timeout_s

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        if parser.should_upgrade() and self._should_upgrade():
            self.scope["method"] = method
            return
        raw_path, query = _split_target(self.url)
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
            request = self._exchanged(method, path, headers, keep_alive, *match)
            length, chunked = _text_framing(headers)
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
        self._phase = _BODY
        self._deadline = self._now + self.limits.body_timeout_s
        if isinstance(request, _Cycle):
            self._advance()  # the app starts at once and reads the body itself
        elif length is not None and length > self.door.limit:
            self._refuse_body(request)

    def _exchanged(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        keep_alive: bool,
        dialect: Dialect,
        params: tuple[str, ...],
    ) -> _Exchanged:
        rid = request_id_for(headers.get("x-request-id"))
        request = _Exchanged(self, keep_alive)
        head = RequestHead(method, path, headers, rid, params)
        request.exchange = self.door.service.exchange(dialect, head, request.respond)
        return request

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
        if isinstance(request, _Exchanged):
            request.body += body
            if len(request.body) > self.door.limit:  # a chunked body over the limit
                self._refuse_body(request)
            return
        cycle = request.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()  # the app resumes it as it reads
        cycle.message_event.set()

    def _refuse_body(self, request: _Exchanged) -> None:
        """A body over the limit: answered 413 in its turn without reading any more of it;
        the connection closes after the answer (as nginx does)."""
        request.refusal = PayloadTooLarge(f"request body exceeds max_body_bytes={self.door.limit}")
        request.body, request.complete = bytearray(), True
        self._receiving = None
        self._phase = _BUSY
        self._stopped = self._closing = True
        self.flow.pause_reading()
        self._advance()

    def on_message_complete(self) -> None:
        request, self._receiving, self._body_left = self._receiving, None, None
        if request is None:
            return
        request.complete = True
        if isinstance(request, _Cycle):
            request.cycle.more_body = False
            request.cycle.message_event.set()
        self._phase = _BUSY
        self._advance()

    # -- answers, in order ------------------------------------------------------------------

    def _advance(self) -> None:
        """Start the first request when it can start, answer a broken connection once every
        request before the break is answered, and parse held data once there is room. One
        loop, re-entered by flag, never by recursion."""
        if self._advancing:
            self._again = True
            return
        self._advancing = True
        try:
            while True:
                self._again = False
                self._step()
                if not self._again:
                    return
        finally:
            self._advancing = False

    def _step(self) -> None:
        queue = self._queue
        if self.transport.is_closing():
            return
        if queue:
            first = queue[0]
            ready = first.complete or isinstance(first, _Cycle)
            if not first.started and ready and not self.flow.write_paused:
                first.start()  # an answer it gives at once re-enters `_advance`
                return
        elif self._broken is not None:
            self._write_error(self._broken)
            return
        elif self._closing:
            self.transport.close()
            return
        elif self._receiving is None and not self._in_head:
            self._set_phase(_IDLE, self.limits.keep_alive_timeout_s)
        held = self._held
        if held is not None and not self._feeding and (self._receiving or len(queue) < 2):
            self._held = None
            self.flow.resume_reading()
            self._now = self.loop.time()
            self._feed(bytes(held))
            self._again = True

    def answer(self, request: _Exchanged, reply: Reply | None) -> bool:
        """An exchange's reply: written at once (it is the first request), or dropped when
        the connection is gone. Returns whether it was written."""
        if reply is None or self.transport.is_closing():
            self._forget(request)
            return False
        last = not request.keep_alive or self.door.state.closing
        if self._closing and self._broken is None and len(self._queue) == 1:
            last = True  # nothing follows this answer on this connection
        self.transport.write(self._encode(reply, request.exchange.head.request_id, not last))
        if last:
            self.transport.close()
        self.finished(request)
        return True

    def finished(self, request: _Request) -> None:
        """A request's answer is complete: the next one may start."""
        self._forget(request)
        self.server_state.total_requests += 1
        if isinstance(request, _Cycle) and not request.cycle.keep_alive:
            return
        self._advance()

    def _forget(self, request: _Request) -> None:
        if self._queue and self._queue[0] is request:
            self._queue.popleft()
        elif request in self._queue:
            self._queue.remove(request)

    def _closing_now(self) -> bool:
        return self._closing or self.door.state.closing

    # -- limits ------------------------------------------------------------------------------

    def _set_phase(self, phase: int, timeout_s: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + timeout_s

    def _on_tick(self) -> None:
        self._tick = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._phase == _BODY and self.flow.read_paused:
            self._deadline = now + self.limits.body_timeout_s  # the pause is ours, not theirs
        elif self._phase != _BUSY and now >= self._deadline:
            self._expire()
            if self.transport.is_closing():
                return
        self._tick = self.loop.call_later(self.limits.tick_s, self._on_tick)

    def _expire(self) -> None:
        limits = self.limits
        if self._phase == _IDLE or (self._phase == _HEAD and not self._in_head):
            self.transport.close()  # nothing was asked: close without an answer
        elif self._phase == _HEAD:
            self._break(RequestTimeout(f"no complete request head in {limits.header_timeout_s:g}s"))
        else:
            self._break(RequestTimeout(f"the request body stalled for {limits.body_timeout_s:g}s"))

    def _break(self, error: BaseException) -> None:
        """Stop reading this connection: the request being received gets `error` (as its
        answer, in order, or as the connection's last words), and the connection closes once
        the requests before it are answered."""
        self._phase, self._in_head = _BUSY, False
        self._held = None
        self.flow.pause_reading()
        request, self._receiving = self._receiving, None
        self._stopped = self._closing = True
        if isinstance(request, _Exchanged):
            request.refusal, request.complete = error, True  # answered in its turn
        else:
            if request is not None:
                request.lost()  # the app sees a disconnect; the connection says why
                self._forget(request)
            self._broken = error
        self._advance()

    def _too_large_head(self) -> HeaderTooLarge:
        return HeaderTooLarge(
            f"the request head exceeds max_header_bytes={self.limits.max_header_bytes}"
        )

    def _make_room(self) -> bool:
        """Close the connection idle longest (or else the slowest request head) for a new
        one; False when every connection is busy with a request."""
        waiting = [
            c
            for c in self.connections
            if c is not self and isinstance(c, ServiceProtocol) and c.idle
        ]
        if not waiting:
            return False
        victim = min(waiting, key=lambda c: (c._in_head, c._deadline))
        if victim._in_head:
            victim._break(RequestTimeout("the server needed this connection for another"))
        else:
            victim.transport.close()
        return True

    @property
    def idle(self) -> bool:
        """Holding no request: idle, or still receiving a request's head."""
        return not self._queue and self._phase in (_IDLE, _HEAD) and not self._stopped

    # -- bytes out ---------------------------------------------------------------------------

    def _write_error(self, error: BaseException) -> None:
        """The connection's last answer (a request that never became one), then close."""
        err = to_reply(error)
        reply = Reply(err.status, err.body, "application/json", list(err.headers))
        rid = request_id_for(None)
        if not self.transport.is_closing():
            self.transport.write(self._encode(reply, rid, keep_alive=False))
            self.transport.close()
        self.door.recorder.begin()
        self.door.recorder.record("-", "-", "connection", err.status, 0.0, rid)

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
    """(path, query) of a request target (origin form, or absolute form via httptools)."""
    if not target.startswith(b"/"):
        parsed = httptools.parse_url(target)
        return parsed.path, parsed.query or b""
    path, _, query = target.partition(b"?")
    return path, query


def _text_framing(headers: dict[str, str]) -> tuple[int | None, bool]:
    """`_framing` from headers already decoded."""
    length = headers.get("content-length")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    return (int(length) if length is not None and length.isdigit() else None), chunked


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
