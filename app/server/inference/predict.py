"""The `/predict` dialect: ``{"instances": [...]}`` in JSON or msgpack, ``{"predictions": ...}``
back in the request's format (or what ``Accept`` asks for), errors in `/predict` statuses."""

from __future__ import annotations

import functools
from typing import Any, Final

import numpy as np

from ...batching import BatchPriority
from ...errors import InvalidInput
from ...models import LoadedModel
from ..errors import Column, to_reply
from ..state import ServiceState
from ..wire.bounds import Body, DecodeLimits
from ..wire.codecs import (
    JSON_MEDIA_TYPE,
    TensorStyle,
    WireFormat,
    decode_predict,
    encode_predict,
    response_format,
)
from .exchange import Reply, RequestHead, Submission
from .policy import PRIORITY_HEADER, TIMEOUT_HEADER, parse_priority, parse_timeout

PREDICT_PATH: Final = "/predict"


class PredictDialect:
    """Decodes `/predict` requests for the service's model (see `Dialect`)."""

    route = PREDICT_PATH

    def __init__(self, state: ServiceState, limits: DecodeLimits) -> None:
        self._state = state
        self._limits = limits

    def decode(self, head: RequestHead, body: Body) -> Submission:
        """Decode the body, validate every row against the model; raises `batchserve.errors`
        types, before anything is queued."""
        model, processor = self._state.serving()
        headers = head.headers
        content_type = headers.get("content-type")
        raw = headers.get(PRIORITY_HEADER)
        priority = BatchPriority.NORMAL if raw is None else parse_priority(raw)
        raw, settings = headers.get(TIMEOUT_HEADER), self._state.settings
        timeout = settings.request_timeout_s if raw is None else parse_timeout(raw, settings)
        decoded = decode_predict(body, content_type, dtype=input_dtype(model), limits=self._limits)
        if not decoded.rows:
            raise InvalidInput("'instances' must be a non-empty list")
        rows = model.validate_rows(decoded.rows, decoded.batch, decoded.finite)
        fmt_out = response_format(decoded.fmt, headers.get("accept"))
        encode = functools.partial(_reply, fmt_out, decoded.style)
        return Submission(processor, rows, priority, timeout, encode)

    def error(self, exc: BaseException, request_id: str) -> Reply:
        """A `/predict` error reply."""
        err = to_reply(exc, request_id, Column.PREDICT)
        return Reply(err.status, err.body, JSON_MEDIA_TYPE, list(err.headers))


def input_dtype(model: LoadedModel) -> np.dtype[Any] | None:
    """The dtype numbers are decoded into: the single declared input's, if numeric."""
    if len(model.inputs) != 1:
        return None
    return _numeric_dtype(model.inputs[0].dtype)


@functools.lru_cache(maxsize=64)
def _numeric_dtype(name: str) -> np.dtype[Any] | None:
    dtype = np.dtype(name)
    return dtype if dtype.kind in "biuf" else None


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


def _reply(fmt: WireFormat, style: TensorStyle, results: list[Any]) -> Reply:
    payload, content_type = encode_predict(collect_predictions(results), fmt, style)
    return Reply(200, payload, content_type)
