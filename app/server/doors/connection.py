"""One connection of an exposed HTTP/1.1 server: requests answered in order without recursion,
at most one request read beyond the one in flight, and the limits nginx and gunicorn have
(header bytes and time, body progress, keep-alive idle time, open connections).

`Connection` holds this policy over the requests in line (`batchserve.server.doors.requests`);
the uvicorn door (`batchserve.server.doors.uvicorn`) mixes it into its protocol and supplies
what depends on uvicorn: parsing (`_parse`), the wire form of an answer (`_encode`), flow
control, and its request cycles for the ASGI app.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ...errors import PayloadTooLarge
from ..errors import HeaderTooLarge, RequestTimeout, to_reply
from ..inference.exchange import Reply
from ..limits import ConnectionLimits
from ..recorder import request_id_for
from .requests import HEAD_END, Exchanged, Request, one_head_end

if TYPE_CHECKING:
    from .asgi import ServiceMiddleware

_CHUNKED_SLICE: Final = 4096  # pieces of a body whose length is unknown (chunked)
IDLE, HEAD, BODY, BUSY = range(4)


class Connection:
    """The policy of one connection (module docstring); a mixin of the door's protocol."""

    door: ServiceMiddleware
    limits: ConnectionLimits
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]

    def _init_connection(self) -> None:
        self._queue: deque[Request] = deque()  # received requests in order; [0] is first
        self._receiving: Request | None = None  # the request whose body is being parsed
        self._in_head = False
        self._head_fed = 0
        self._body_left: int | None = None
        self._held: bytearray | None = None  # received, not parsed: a request is waiting
        self._broken: BaseException | None = None  # answered once the queue is empty
        self._stopped = False  # nothing more is read from this connection
        self._closing = False  # close once the requests in hand are answered
        self._feeding = self._advancing = self._again = False
        self._phase = IDLE
        self._deadline = 0.0
        self._now = 0.0  # the loop's time when the data being parsed arrived
        self._tick: asyncio.TimerHandle | None = None

    # -- what the door supplies --------------------------------------------------------------

    def _parse(self, piece: bytes | memoryview) -> bool:
        """Feed the parser; False when parsing must stop (an error, an upgrade, closed)."""
        raise NotImplementedError

    def _encode(self, reply: Reply, rid: str, keep_alive: bool) -> bytes:
        raise NotImplementedError

    def _pause_reading(self) -> None:
        raise NotImplementedError

    def _resume_reading(self) -> None:
        raise NotImplementedError

    def _reading_paused(self) -> bool:
        raise NotImplementedError

    def _writing_paused(self) -> bool:
        raise NotImplementedError

    def _count_answer(self) -> None:
        raise NotImplementedError

    # -- input: parsed in pieces, held back past one request read ahead ----------------------

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            self._pause_reading()
            return
        if self._stopped:
            return
        self._now = self.loop.time()
        if self._receiving is None and len(self._queue) >= 2:
            self._held = bytearray(data)
            self._pause_reading()
            return
        room = self.limits.max_header_bytes - (self._head_fed if self._in_head else 0)
        if len(data) <= room and one_head_end(data):
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
                    self._pause_reading()
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
        if self._phase == BODY:
            step = _CHUNKED_SLICE if self._body_left is None else self._body_left
            return min(size, pos + step)
        room = self.limits.max_header_bytes + 1 - (self._head_fed if self._in_head else 0)
        found = data.find(HEAD_END, pos, pos + room)
        return found + len(HEAD_END) if found >= 0 else min(size, pos + room)

    def _refuse_body(self, request: Exchanged) -> None:
        """A body over the limit: answered 413 in its turn without reading any more of it;
        the connection closes after the answer (as nginx does)."""
        request.refusal = PayloadTooLarge(f"request body exceeds max_body_bytes={self.door.limit}")
        request.body, request.complete = bytearray(), True
        self._receiving = None
        self._phase = BUSY
        self._stopped = self._closing = True
        self._pause_reading()
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
        queue = self._queue
        try:
            while True:
                self._again = False
                if self.transport.is_closing():
                    return
                if queue:
                    first = queue[0]
                    ready = first.complete or first.starts_early
                    if not first.started and ready and not self._writing_paused():
                        first.start()  # an answer it gives at once re-enters `_advance`
                        if not self._again:
                            return
                        continue
                elif self._broken is not None:
                    self._write_error(self._broken)
                    if not self._again:
                        return
                    continue
                elif self._closing:
                    self.transport.close()
                    return
                elif self._receiving is None and not self._in_head:
                    self._phase = IDLE
                    self._deadline = self.loop.time() + self.limits.keep_alive_timeout_s
                held = self._held
                if held is not None and not self._feeding and (self._receiving or len(queue) < 2):
                    self._held = None
                    self._resume_reading()
                    self._now = self.loop.time()
                    self._feed(bytes(held))
                    self._again = True
                if not self._again:
                    return
        finally:
            self._advancing = False

    def answer(self, request: Exchanged, reply: Reply | None) -> bool:
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

    def finished(self, request: Request) -> None:
        """A request's answer is complete: the next one may start."""
        queue = self._queue
        if queue and queue[0] is request:
            queue.popleft()  # the usual case, inline: `_forget` does the rest
        else:
            self._forget(request)
        self._count_answer()
        if request.closes:
            return  # it closes the connection itself
        if queue or self._advancing or self._held is not None or self._broken is not None:
            self._advance()
        elif self._closing:
            self.transport.close()
        elif self._receiving is None and not self._in_head:
            self._set_phase(IDLE, self.limits.keep_alive_timeout_s)  # as `_advance` would

    def _forget(self, request: Request) -> None:
        queue = self._queue
        if queue and queue[0] is request:
            queue.popleft()
        elif request in queue:
            queue.remove(request)

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
        if self._phase == BODY and self._reading_paused():
            self._deadline = now + self.limits.body_timeout_s  # the pause is ours, not theirs
        elif self._phase != BUSY and now >= self._deadline:
            self._expire()
            if self.transport.is_closing():
                return
        self._tick = self.loop.call_later(self.limits.tick_s, self._on_tick)

    def _expire(self) -> None:
        limits = self.limits
        if self._phase == IDLE or (self._phase == HEAD and not self._in_head):
            self.transport.close()  # nothing was asked: close without an answer
        elif self._phase == HEAD:
            self._break(RequestTimeout(f"no complete request head in {limits.header_timeout_s:g}s"))
        else:
            self._break(RequestTimeout(f"the request body stalled for {limits.body_timeout_s:g}s"))

    def _break(self, error: BaseException) -> None:
        """Stop reading this connection: the request being received gets `error` (as its
        answer, in order, or as the connection's last words), and the connection closes once
        the requests before it are answered."""
        self._phase, self._in_head = BUSY, False
        self._held = None
        self._pause_reading()
        request, self._receiving = self._receiving, None
        self._stopped = self._closing = True
        if isinstance(request, Exchanged):
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
            c for c in self.connections if c is not self and isinstance(c, Connection) and c.idle
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
        return not self._queue and self._phase in (IDLE, HEAD) and not self._stopped

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
