"""Where every finished request is reported, whichever door served it: metrics, counters, the
access log and, for inference requests, the served version's statistics; and where refused
input is counted."""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Final

from .errors import reject_reason
from .inference.predict import PREDICT_PATH
from .inference.v2 import INFER_ROUTE, VERSION_INFER_ROUTE
from .logs import AccessLog
from .state import ServiceState

_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Fresh ids: a random per-process prefix and a counter. Unique like uuid4 for all practical
# purposes, without a system call per request.
_ID_PREFIX: Final = secrets.token_hex(6)
_ID_COUNTER: Final = itertools.count(1)
#: The routes inference requests are recorded under (either dialect, any door).
INFERENCE_ROUTES: Final = frozenset({PREDICT_PATH, INFER_ROUTE, VERSION_INFER_ROUTE})


def request_id_for(client_id: str | None) -> str:
    """`client_id` (an X-Request-ID value) when it is sane, otherwise a fresh id."""
    if client_id is not None and _REQUEST_ID.match(client_id):
        return client_id
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


class Recorder:
    """Counts, times and logs finished requests of one service."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._metrics = state.metrics
        self._counters = state.counters
        settings = state.settings
        self._access_log: AccessLog | None = None
        if settings.access_log:
            token = settings.admin_token
            secrets = [token.get_secret_value()] if token is not None else []
            self._access_log = AccessLog(settings.log_format, secrets)

    def begin(self) -> None:
        """A request started (its `record` follows exactly once)."""
        self._metrics.inflight += 1  # requests run on the event loop thread only

    def begin_exchange(self) -> bool:
        """An inference request started; True when it counts as being received (see
        `ServiceState.receiving`) until its `admitted` call."""
        self._metrics.inflight += 1
        state = self._state
        if state.closing:
            return False
        state.receiving += 1
        return True

    def admitted(self) -> None:
        """A request counted by `begin_exchange` is in the engine, or finished without it."""
        state = self._state
        state.receiving -= 1
        if not state.receiving and state.all_received is not None:
            state.all_received.set()

    def record(
        self, method: str, path: str, route: str, status: int, duration_s: float, rid: str
    ) -> None:
        """One finished request; `route` is its template (or "unmatched")."""
        self._metrics.inflight -= 1
        self._metrics.observe_request(route, status, duration_s)
        if route in INFERENCE_ROUTES:
            processor = self._state.processor
            if processor is not None:
                processor.statistics.on_request(status, duration_s)
        counters = self._counters
        counters[f"status_{status}"] += 1
        counters["requests"] += 1
        if self._access_log is not None:
            self._access_log.record(method, path, status, duration_s, rid)

    def reject(self, exc: BaseException) -> None:
        """Count input refused before it reached the engine (see `reject_reason`)."""
        reason = reject_reason(exc)
        if reason is not None:
            self._metrics.reject(reason)
