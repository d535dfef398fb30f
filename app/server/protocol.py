"""An HTTP/1.1 protocol for uvicorn that answers `POST /predict` without the ASGI round trip.

Every other request, and `/predict` requests that need more than the plain case (a query
string, ``Expect: 100-continue``, a root path, an exhausted concurrency limit), go through
uvicorn's own httptools protocol and the ASGI app as usual. For the plain case the request is
served by a `PredictExchange` that takes the place of uvicorn's per-request cycle: the body is
collected as uvicorn parses it, `ServiceMiddleware.predict_reply` computes the answer (the
same function the ASGI fast path calls), and the response goes out in a single write. Keep-alive,
pipelining order, back-pressure and graceful shutdown stay uvicorn's: the exchange offers the
attributes uvicorn's protocol reads from a cycle.

This saves, per request, the ASGI task, the scope and message dictionaries, the middleware
chain, uvicorn's header validation of our own constant headers, and one of the two socket
writes. A client that disconnects cancels its exchange at once, which drops its rows from the
queue before they reach the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..errors import DeadlineExceeded, PayloadTooLarge
from .middleware import CLIENT_CLOSED, PREDICT_PATH, request_id_for
from .predict import PendingPredict, Reply, submit_predict, text_headers

if TYPE_CHECKING:
    from .middleware import ServiceMiddleware

logger = logging.getLogger(__name__)
_PATH = PREDICT_PATH.encode("ascii")


class _Settled:
    """The event of a finished exchange: later signals from uvicorn need no action."""

    def set(self) -> None:
        pass


_SETTLED = _Settled()


class PredictExchange:
    """One `POST /predict` on a connection, in the role of uvicorn's request cycle.

    uvicorn's protocol appends body chunks to `body`, clears `more_body` when the message is
    complete, sets `disconnected` when the connection drops, and calls `message_event.set()`
    after each of these; it reads `response_complete` and writes `keep_alive` on shutdown.
    No task runs per request: the rows are queued from the parser's callback and the answer
    is written from the engine's completion callback, or from the deadline's timer.
    """

    __slots__ = (
        "_begun",
        "_finished",
        "_headers",
        "_overflow",
        "_pending",
        "_protocol",
        "_rid",
        "_started_at",
        "_submitted",
        "_timer",
        "body",
        "disconnected",
        "keep_alive",
        "message_event",
        "more_body",
        "response_complete",
    )

    def __init__(
        self, protocol: PredictProtocol, headers: dict[str, str], keep_alive: bool
    ) -> None:
        self._protocol = protocol
        self._headers = headers
        self._begun = False
        self._finished = False
        self._submitted = False
        self._overflow = False
        self._pending: PendingPredict | None = None
        self._rid = ""
        self._started_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.keep_alive = keep_alive
        self.response_complete = False
        self.message_event: PredictExchange | _Settled = self

    def set(self) -> None:
        """uvicorn's signal that the body grew, ended, or the connection dropped."""
        if self.disconnected:
            if self._pending is not None:
                self._pending.gathering.cancel()  # rows still queued never reach the model
                self._cancel_timer()
                self._finish(CLIENT_CLOSED)
            elif self._begun and not self._submitted:
                self._finish(CLIENT_CLOSED)  # left before its body was complete
            return
        if len(self.body) > self._protocol.service.limit:
            self._overflow = True
            self.body = bytearray()  # later chunks are dropped too; the answer is 413
        self._protocol.flow.resume_reading()  # the body is consumed as it arrives
        self._maybe_start()

    def begin(self) -> None:
        """Called when the requests before this one on the connection have been answered."""
        self._begun = True
        self._started_at = time.perf_counter()
        self._rid = request_id_for(self._headers.get("x-request-id"))
        self._protocol.service.state.metrics.inflight += 1
        self._protocol.exchanges.add(self)
        self._maybe_start()

    def refuse_oversize(self) -> None:
        """The declared Content-Length is over the limit: answer 413 without the body."""
        self._overflow = True

    def _maybe_start(self) -> None:
        if self._begun and not self._submitted and (self._overflow or not self.more_body):
            self._submitted = True
            self._start()

    def _start(self) -> None:
        service = self._protocol.service
        if self._overflow:
            too_large = PayloadTooLarge(f"request body exceeds max_body_bytes={service.limit}")
            self._answer(service.predict_error(too_large, self._rid))
            return
        try:
            pending = submit_predict(
                service.state, bytes(self.body), self._headers, on_settled=self._on_results
            )
        except Exception as exc:
            self._answer(service.predict_error(exc, self._rid))
            return
        finally:
            self.body = bytearray()
        self._pending = pending
        if pending.timeout is not None:
            self._timer = self._protocol.loop.call_later(pending.timeout, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        pending = self._pending
        assert pending is not None
        if pending.gathering.settled:
            return
        pending.gathering.cancel()  # a running batch is not interrupted; its result is dropped
        error = DeadlineExceeded(f"no answer within the request timeout of {pending.timeout:g}s")
        self._answer(self._protocol.service.predict_error(error, self._rid))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_results(self, results: list[Any] | None, error: BaseException | None) -> None:
        self._cancel_timer()
        if self._finished:
            return
        pending = self._pending
        assert pending is not None
        service = self._protocol.service
        try:
            if error is None:
                assert results is not None
                reply = pending.reply(results)
            elif isinstance(error, Exception):
                reply = service.predict_error(error, self._rid)
            else:
                raise error
        except Exception as exc:
            reply = service.predict_error(exc, self._rid)
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        flow = self._protocol.flow
        if flow.write_paused and not self.disconnected:
            task = self._protocol.loop.create_task(self._answer_when_writable(reply))
            self._protocol.tasks.add(task)
            task.add_done_callback(self._protocol.tasks.discard)
        else:
            self._write(reply)

    async def _answer_when_writable(self, reply: Reply) -> None:
        await self._protocol.flow.drain()
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        protocol = self._protocol
        transport = protocol.transport
        if self.disconnected or transport.is_closing():
            self._finish(CLIENT_CLOSED)
            return
        try:
            transport.write(self._encode(reply))
        except Exception:
            logger.exception("failed to answer POST %s", PREDICT_PATH)
            transport.close()
            self._finish(500)
            return
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        self._finish(reply.status)
        protocol.on_response_complete()

    def _finish(self, status: int) -> None:
        if self._finished:  # uvicorn may report a lost connection to an exchange twice
            return
        self._finished = True
        # Break the exchange's reference cycles (itself as its event, its timer's callback)
        # so that reference counting frees it: cyclic garbage per request makes the GC run
        # often, and each pass holds the GIL for milliseconds.
        self.message_event = _SETTLED
        self._pending = None
        self._cancel_timer()
        self._protocol.exchanges.discard(self)
        service = self._protocol.service
        service.state.metrics.inflight -= 1
        duration = time.perf_counter() - self._started_at
        service.record("POST", PREDICT_PATH, PREDICT_PATH, status, duration, self._rid)

    def _encode(self, reply: Reply) -> bytes:
        parts = [STATUS_LINE[reply.status]]
        for name, value in self._protocol.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (
            b"content-type: ",
            reply.content_type.encode("latin-1"),
            b"\r\ncontent-length: ",
            str(len(reply.body)).encode("ascii"),
            b"\r\nx-request-id: ",
            self._rid.encode("latin-1"),
            b"\r\n",
        )
        for key, text in reply.headers:
            parts += (key.encode("latin-1"), b": ", text.encode("latin-1"), b"\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", reply.body)
        return b"".join(parts)


class PredictProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with plain `POST /predict` served by `PredictExchange`.

    Use `protocol_for(service)` to get the class to pass as ``uvicorn.Config(http=...)``.
    """

    service: ServiceMiddleware

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.exchanges: set[PredictExchange] = set()  # running ones
        super().connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        # uvicorn tells only the newest request; one answered before it may still be running.
        for exchange in list(self.exchanges):
            exchange.disconnected = True
            exchange.set()
        self.exchanges.clear()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        if not self._plain_predict():
            super().on_headers_complete()
            return
        parser = self.parser
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        headers = text_headers(self.headers)
        exchange = PredictExchange(self, headers, keep_alive)
        length = headers.get("content-length")
        # httptools refuses a malformed Content-Length before this point
        if length is not None and length.isdigit() and int(length) > self.service.limit:
            exchange.refuse_oversize()
        previous = self.cycle
        self.cycle = exchange  # type: ignore[assignment]
        if previous is None or previous.response_complete:
            exchange.begin()
        else:  # pipelined: answered in order, when the requests before it are
            self.flow.pause_reading()
            self.pipeline.appendleft((exchange, self.app))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if isinstance(cycle, PredictExchange):
            cycle.begin()
        else:
            super()._start_asgi_task(cycle, app)

    def _plain_predict(self) -> bool:
        if self.url != _PATH or self.parser.get_method() != b"POST":
            return False
        if self.expect_100_continue or self.root_path or self.parser.should_upgrade():
            return False
        limit = self.limit_concurrency
        return limit is None or (len(self.connections) < limit and len(self.tasks) < limit)


def protocol_for(service: ServiceMiddleware) -> type[PredictProtocol]:
    """A `PredictProtocol` class bound to `service`, for ``uvicorn.Config(http=...)``."""
    return type("PredictProtocol", (PredictProtocol,), {"service": service})
