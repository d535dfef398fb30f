"""The `/predict` request path, free of any web framework.

Decode the body, validate every row against the model before anything is queued, submit the
rows to the engine as one atomic group, await them (watching for a client that leaves), and
encode the answer in the request's format. Both the lean ASGI fast path and the documented
FastAPI route call `handle_predict`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..batching import BatchPriority
from ..batching.futures import Gathering, Settled
from ..errors import InvalidInput, MalformedRequest
from ..models import LoadedModel
from ..models.validation import shape_matches
from .codecs import (
    DecodedRequest,
    TensorStyle,
    WireFormat,
    decode_predict,
    encode_predict,
    request_format,
    response_format,
)
from .state import ServiceState
from .waiting import Receive, await_results

PRIORITY_HEADER = "x-priority"
TIMEOUT_HEADER = "x-request-timeout-seconds"
_PRIORITIES = {p.name.lower(): p for p in BatchPriority}


@dataclass(slots=True)
class Reply:
    """A finished HTTP answer."""

    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def text_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI-style raw headers (lower-case names) as a str dict."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}


def parse_priority(value: str | None) -> BatchPriority:
    """`X-Priority: high|normal|low` (case-insensitive); absent = normal."""
    if value is None or value == "":
        return BatchPriority.NORMAL
    try:
        return _PRIORITIES[value.strip().lower()]
    except KeyError:
        raise MalformedRequest(
            f"X-Priority must be one of high, normal, low; got {value[:40]!r}"
        ) from None


def parse_timeout(value: str | None, default: float | None, limit: float) -> float | None:
    """`X-Request-Timeout-Seconds`: a positive number of seconds, at most `limit`."""
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0 or seconds > limit:
        raise MalformedRequest(
            f"X-Request-Timeout-Seconds must be a number of seconds in (0, {limit:g}];"
            f" got {value[:40]!r}"
        )
    return seconds


def input_dtype(model: LoadedModel) -> np.dtype[Any] | None:
    """The dtype JSON numbers are decoded into: the single declared input's, if any."""
    if len(model.inputs) != 1:
        return None
    return _numeric_dtype(model.inputs[0].dtype)


@functools.lru_cache(maxsize=64)
def _numeric_dtype(name: str) -> np.dtype[Any] | None:
    dtype = np.dtype(name)
    return dtype if dtype.kind in "biuf" else None


def validate_rows(model: LoadedModel, decoded: DecodedRequest) -> list[Any]:
    """Every row checked (and cast) against the model's declared inputs.

    A rectangular batch already in the single input's dtype and shape, with only finite
    numbers, is checked once as a whole; anything else row by row, for precise messages.
    """
    batch = decoded.batch
    if batch is not None and decoded.finite and len(model.inputs) == 1:
        spec = model.inputs[0]
        if batch.dtype == spec.np_dtype and shape_matches(spec.shape, batch.shape[1:]):
            return decoded.rows
    return [model.validate_row(row) for row in decoded.rows]


def collect_predictions(rows: list[Any]) -> np.ndarray | list[Any]:
    """Stack array rows of one shape into one array (cheaper to encode); else keep the list."""
    first = rows[0]
    if len(rows) == 1:
        return [first]
    if isinstance(first, np.ndarray) and all(
        isinstance(r, np.ndarray) and r.shape == first.shape and r.dtype == first.dtype
        for r in rows
    ):
        return np.stack(rows)
    return rows


@dataclass(slots=True)
class PendingPredict:
    """A `/predict` request whose rows are queued: what is needed to answer it."""

    gathering: Gathering
    timeout: float | None
    fmt_out: WireFormat
    style: TensorStyle

    def reply(self, results: list[Any]) -> Reply:
        """The 200 answer, encoded in the negotiated format."""
        payload, out_type = encode_predict(collect_predictions(results), self.fmt_out, self.style)
        return Reply(200, payload, out_type)


def submit_predict(
    state: ServiceState,
    body: bytes,
    headers: Mapping[str, str],
    on_settled: Settled | None = None,
) -> PendingPredict:
    """Decode and validate a `/predict` body, then queue its rows as one atomic group.

    Runs on the event loop and never blocks; raises `batchserve.errors` types for every failure,
    before anything is queued. The results come by the gathering's `waiter`, or by
    `on_settled` when given (see `Gathering`).
    """
    model, processor = state.serving()
    content_type = headers.get("content-type")
    fmt_in: WireFormat = request_format(content_type)
    fmt_out = response_format(fmt_in, headers.get("accept"))
    priority = parse_priority(headers.get(PRIORITY_HEADER))
    settings = state.settings
    timeout = parse_timeout(
        headers.get(TIMEOUT_HEADER), settings.request_timeout_s, settings.max_request_timeout_s
    )
    decoded = decode_predict(body, content_type, dtype=input_dtype(model))
    if not decoded.rows:
        raise InvalidInput("'instances' must be a non-empty list")
    rows = validate_rows(model, decoded)
    gathering = processor.enqueue_async(
        rows, priority=priority, item_timeout=timeout, on_settled=on_settled
    )
    return PendingPredict(gathering, timeout, fmt_out, decoded.style)


async def handle_predict(
    state: ServiceState,
    body: bytes,
    headers: Mapping[str, str],
    receive: Receive | None,
) -> Reply:
    """Answer one `/predict` request; raises `batchserve.errors` types for every failure."""
    pending = submit_predict(state, body, headers)
    results = await await_results(pending.gathering, receive, pending.timeout)
    return pending.reply(results)
