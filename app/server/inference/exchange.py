"""One inference request's life, free of any transport.

A door (`batchserve.server.doors`) turns bytes into an `Exchange` and its `Reply` back into
bytes; everything in between happens here, once for every door and every dialect:

    start(body) -> decode (on a thread for a large body) -> submit to the engine
                -> exactly one of: results, an engine error, the deadline, the client gone
                -> exactly one call of `respond`, then the request is recorded.

No task runs per request: the engine's completion callback, the deadline's timer and the
door's disconnect signal each drive the exchange forward on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from ...batching import BatchPriority, BatchProcessor
from ...batching.futures import Gathering
from ...errors import DeadlineExceeded, ShuttingDown
from ..errors import CLIENT_CLOSED
from ..wire.bounds import Body
from .deadlines import Deadline, DeadlineQueue

if TYPE_CHECKING:
    from ..recorder import Recorder

OFFLOAD_BYTES: Final = 64 * 1024
"""Bodies larger than this are decoded on a thread, never on the event loop."""


@dataclass(slots=True)
class Reply:
    """A finished HTTP answer."""

    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)  # not frozen: a frozen dataclass pays for its __init__ per request
class RequestHead:
    """What a door knows of a request before its body: lower-case header names."""

    method: str
    path: str
    headers: Mapping[str, str]
    request_id: str
    params: tuple[str, ...] = ()  # the route's parameters (V2: model name, version or "")


@dataclass(slots=True)
class Submission:
    """A decoded, validated request: rows for the engine and how to answer with their results."""

    processor: BatchProcessor[Any, Any]
    rows: list[Any]
    priority: BatchPriority
    timeout_s: float | None
    encode: Callable[[list[Any]], Reply]


class Dialect(Protocol):
    """A wire dialect of inference (`/predict`, V2): decode a request, encode an error."""

    @property
    def route(self) -> str:
        """The route template requests are recorded under."""
        ...

    def decode(self, head: RequestHead, body: Body) -> Submission:
        """Decode and validate; raises `batchserve.errors` types. Safe to call on a thread."""
        ...

    def error(self, exc: BaseException, request_id: str) -> Reply:
        """The reply for a failure, in this dialect's statuses."""
        ...


#: How a door takes the answer: a reply to write, or None when there is nobody to write to.
#: Returns whether the reply could be handed to the client.
Respond = Callable[[Reply | None], bool]

_NEW, _DECODING, _QUEUED, _DONE = range(4)


def _nobody(reply: Reply | None) -> bool:
    return False


class Exchange:
    """One inference request; every method runs on the event loop (see the module doc)."""

    __slots__ = (
        "_deadlines",
        "_decoder",
        "_dialect",
        "_encode",
        "_gathering",
        "_loop",
        "_receiving",
        "_recorder",
        "_respond",
        "_started",
        "_state",
        "_timeout_s",
        "_timer",
        "head",
    )

    def __init__(
        self,
        dialect: Dialect,
        head: RequestHead,
        respond: Respond,
        recorder: Recorder,
        decoder: Executor | None,
        loop: asyncio.AbstractEventLoop,
        deadlines: DeadlineQueue | None = None,
    ) -> None:
        self.head = head
        self._loop = loop  # `asyncio.get_running_loop()` is a system call (getpid) each time
        self._dialect = dialect
        self._respond = respond
        self._recorder = recorder
        self._decoder = decoder
        self._deadlines = deadlines  # on `loop`: the service's default timeout, one timer
        self._started = time.perf_counter()
        self._receiving = recorder.begin_exchange()
        self._state = _NEW
        self._gathering: Gathering | None = None
        self._timer: asyncio.TimerHandle | Deadline | None = None
        self._timeout_s: float | None = None
        self._encode: Callable[[list[Any]], Reply] | None = None

    @property
    def done(self) -> bool:
        """Answered, failed, or abandoned by its client."""
        return self._state == _DONE

    def start(self, body: Body) -> None:
        """The whole body has arrived: decode it and submit its rows."""
        if self._state != _NEW:
            return
        self._state = _DECODING
        if self._decoder is not None and len(body) > OFFLOAD_BYTES:
            decode = self._dialect.decode
            future = self._loop.run_in_executor(self._decoder, decode, self.head, body)
            future.add_done_callback(self._decoded)
            return
        try:
            submission = self._dialect.decode(self.head, body)
        except Exception as exc:
            self._fail(exc)
            return
        self._submit(submission)

    def refuse(self, exc: BaseException) -> None:
        """The door refused the request before its body (e.g. a declared length over the
        limit): answer with the error."""
        if self._state == _NEW:
            self._fail(exc)

    def client_gone(self) -> None:
        """The client disconnected: rows still queued never reach the model; nothing is
        answered, and the request is recorded as 499."""
        if self._state == _DONE:
            return
        if self._gathering is not None:
            self._gathering.cancel()
        self._close()
        respond, self._respond = self._respond, _nobody
        respond(None)
        self._record(CLIENT_CLOSED)

    def _decoded(self, future: asyncio.Future[Submission]) -> None:
        if self._state != _DECODING:
            return  # the client left meanwhile
        if future.cancelled():  # the service is closing its decoding thread
            self._fail(ShuttingDown("the server is shutting down"))
            return
        error = future.exception()
        if error is not None:
            self._fail(error)
        else:
            self._submit(future.result())

    def _submit(self, submission: Submission) -> None:
        try:
            gathering = submission.processor.enqueue_async(
                submission.rows,
                priority=submission.priority,
                item_timeout=submission.timeout_s,
                on_settled=self._on_results,
                loop=self._loop,
            )
        except Exception as exc:
            self._fail(exc)
            return
        self._state = _QUEUED
        if self._receiving:
            self._receiving = False
            self._recorder.admitted()
        self._gathering = gathering
        self._encode = submission.encode
        timeout = submission.timeout_s
        if timeout is not None:
            self._timeout_s = timeout
            deadlines = self._deadlines
            if deadlines is not None and timeout == deadlines.timeout_s:
                self._timer = deadlines.add(self._on_deadline)
            else:
                self._timer = self._loop.call_later(timeout, self._on_deadline)

    def _on_results(self, results: list[Any] | None, error: BaseException | None) -> None:
        if self._state != _QUEUED:
            return
        if error is not None:
            self._fail(error)
            return
        assert results is not None
        assert self._encode is not None
        try:
            reply = self._encode(results)
        except Exception as exc:
            self._fail(exc)
            return
        self._finish(reply)

    def _on_deadline(self) -> None:
        self._timer = None
        if self._state != _QUEUED:
            return
        assert self._gathering is not None
        self._gathering.cancel()  # a running batch is not interrupted; its result is dropped
        limit = self._timeout_s
        self._fail(DeadlineExceeded(f"no answer within the request timeout of {limit:g}s"))

    def _fail(self, exc: BaseException) -> None:
        self._recorder.reject(exc)
        self._finish(self._dialect.error(exc, self.head.request_id))

    def _finish(self, reply: Reply) -> None:
        self._close()
        respond, self._respond = self._respond, _nobody  # the door holds this exchange too
        delivered = respond(reply)
        self._record(reply.status if delivered else CLIENT_CLOSED)

    def _close(self) -> None:
        self._state = _DONE
        if self._receiving:
            self._receiving = False
            self._recorder.admitted()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Break the reference cycles (the gathering's callback is a bound method of this
        # exchange) so that reference counting frees it: cyclic garbage per request makes
        # the collector run often, and each pass holds the GIL for milliseconds.
        self._gathering = None
        self._encode = None

    def _record(self, status: int) -> None:
        head = self.head
        duration = time.perf_counter() - self._started
        self._recorder.record(
            head.method, head.path, self._dialect.route, status, duration, head.request_id
        )
