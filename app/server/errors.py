"""THE table: error class -> HTTP status, one column per dialect, and the one error encoder.

`/predict` distinguishes 413/415/422 and answers a full queue with 429; the V2 protocol
(Open Inference Protocol, Triton) answers every refused request with 400 and a full queue
with 503. Every answer is ``{"error": message, "code": code}`` in JSON. The errors of the
connection itself (a slow or oversized request head, too many connections) are defined here:
they are HTTP's, not the engine's.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import Final

import orjson

from .. import errors

logger = logging.getLogger("batchserve.server")

CLIENT_CLOSED: Final = 499
"""nginx's "client closed request": recorded in metrics and logs, never sent."""


class RequestTimeout(errors.BatchServeError):
    """The client took too long to send the request's head, or stopped sending its body."""

    code = "request_timeout"


class HeaderTooLarge(errors.BatchServeError):
    """The request line and headers together exceed `max_header_bytes`."""

    code = "header_too_large"


class TooManyConnections(errors.BatchServeError):
    """The server holds `max_connections` open connections already."""

    code = "too_many_connections"


class Column(enum.IntEnum):
    """Which status column of `STATUS_TABLE` applies: the request's dialect."""

    PREDICT = 0
    V2 = 1


# Most specific classes first: the first match wins.       /predict  V2
STATUS_TABLE: Final[tuple[tuple[type[BaseException], int, int], ...]] = (
    (errors.ItemTooLarge, 413, 400),
    (errors.PayloadTooLarge, 413, 400),
    (errors.UnsupportedMediaType, 415, 400),
    (errors.MalformedRequest, 400, 400),
    (errors.InvalidInput, 422, 400),
    (errors.QueueFull, 429, 503),
    (errors.DeadlineExceeded, 504, 504),
    (errors.ShuttingDown, 503, 503),
    (errors.EngineFailed, 503, 503),
    (errors.ModelUnavailable, 503, 503),
    (errors.NotReady, 503, 503),
    (TooManyConnections, 503, 503),
    (errors.ModelNotFound, 404, 404),
    (errors.Unauthorized, 401, 401),
    (errors.Forbidden, 403, 403),
    (RequestTimeout, 408, 408),
    (HeaderTooLarge, 431, 431),
    (errors.NotImplementedFeature, 501, 501),
    (errors.ModelError, 500, 500),
    (errors.ModelLoadFailed, 422, 400),
    (errors.ModelLoadError, 500, 500),
)
_RETRY_SOON: Final = (errors.ShuttingDown, errors.NotReady, errors.EngineFailed, TooManyConnections)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What an error becomes on the wire."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def body(self) -> bytes:
        """The JSON body ``{"error", "code"}``."""
        return orjson.dumps({"error": self.message, "code": self.code})


def error_status(exc: BaseException, column: Column = Column.PREDICT) -> int:
    """The HTTP status for an error (500 for anything unknown)."""
    for cls, *statuses in STATUS_TABLE:
        if isinstance(exc, cls):
            return statuses[column]
    return 500


def to_reply(
    exc: BaseException, request_id: str = "", column: Column = Column.PREDICT
) -> ErrorReply:
    """Turn any exception into an `ErrorReply`; unknown ones are logged once and hidden."""
    if not isinstance(exc, errors.BatchServeError):
        logger.error("unhandled error (request %s)", request_id or "-", exc_info=exc)
        return ErrorReply(500, "internal", f"internal server error (request id {request_id})")
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, errors.QueueFull):
        headers = (("retry-after", str(max(1, math.ceil(exc.retry_after_s)))),)
    elif isinstance(exc, _RETRY_SOON):
        headers = (("retry-after", "1"),)
    elif isinstance(exc, errors.Unauthorized):
        headers = (("www-authenticate", 'Bearer realm="batchserve-admin"'),)
    return ErrorReply(error_status(exc, column), exc.code, str(exc), headers)


def reject_reason(exc: BaseException) -> str | None:
    """The `batchserve_rejected_total` reason of input refused before the engine (None for
    what is not a refusal, and for what the engine counts itself)."""
    if isinstance(exc, errors.ItemTooLarge):
        return None  # refused, and counted, by the engine
    if isinstance(exc, errors.PayloadTooLarge):
        return "too_large"
    if isinstance(exc, errors.MalformedRequest | errors.InvalidInput | errors.UnsupportedMediaType):
        return "invalid"
    return None
