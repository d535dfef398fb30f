"""What every door shares: the inference routes and their dialects, the decoding limits, the
thread large bodies are decoded on, and the recorder."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ..recorder import Recorder
from ..state import ServiceState
from ..wire.bounds import DecodeLimits
from .deadlines import DeadlineQueue
from .exchange import Dialect, Exchange, RequestHead, Respond
from .predict import PREDICT_PATH, PredictDialect
from .v2 import V2Dialect, infer_params


class InferenceService:
    """The inference side of one service (see the module docstring)."""

    def __init__(self, state: ServiceState) -> None:
        settings = state.settings
        self.state = state
        self.limits = DecodeLimits(settings.max_body_bytes, settings.max_queue_size)
        self.recorder = Recorder(state)
        self.predict = PredictDialect(state, self.limits)
        self.v2 = V2Dialect(state, self.limits)
        # One thread: decoding is GIL-bound, more threads would only take turns. Its thread
        # starts with the first large body.
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="batchserve-decode")
        self._default_timeout_s = settings.request_timeout_s
        self._deadlines: DeadlineQueue | None = None  # of the loop requests last came on

    def match(self, method: str, path: str) -> tuple[Dialect, tuple[str, ...]] | None:
        """The dialect and route parameters of an inference request, else None."""
        if method != "POST":
            return None
        if path == PREDICT_PATH:
            return self.predict, ()
        params = infer_params(path)
        return None if params is None else (self.v2, params)

    def exchange(
        self,
        dialect: Dialect,
        head: RequestHead,
        respond: Respond,
        loop: asyncio.AbstractEventLoop,
    ) -> Exchange:
        """A new exchange for one request on `loop`, the running one (see `Exchange`)."""
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            timeout = self._default_timeout_s
            if timeout is not None:
                deadlines = self._deadlines = DeadlineQueue(loop, timeout)
        return Exchange(dialect, head, respond, self.recorder, self._decoder, loop, deadlines)

    def close(self) -> None:
        """Stop the decoding thread once it is idle."""
        self._decoder.shutdown(wait=False, cancel_futures=True)
