"""THE table: core error -> HTTP status. Every route answers errors through `error_status`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .. import errors

logger = logging.getLogger("batchserve.server")


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What an error becomes on the wire."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


# Most specific classes first: the first match wins.
STATUS_TABLE: tuple[tuple[type[Exception], int], ...] = (
    (errors.ItemTooLarge, 413),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.MalformedRequest, 400),
    (errors.InvalidInput, 422),
    (errors.QueueFull, 429),
    (errors.DeadlineExceeded, 504),
    (errors.ShuttingDown, 503),
    (errors.EngineFailed, 503),
    (errors.NotReady, 503),
    (errors.ModelNotFound, 404),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotImplementedFeature, 501),
    (errors.ModelError, 500),
    (errors.ModelLoadError, 500),
)


def error_status(exc: Exception) -> int:
    """The HTTP status for a core error (500 for anything unknown)."""
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def to_reply(exc: Exception, request_id: str = "") -> ErrorReply:
    """Turn any exception into an `ErrorReply`; unknown ones are logged once and hidden."""
    if not isinstance(exc, errors.BatchServeError):
        logger.error("unhandled error (request %s)", request_id or "-", exc_info=exc)
        return ErrorReply(500, "internal", f"internal server error (request id {request_id})")
    status = error_status(exc)
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, errors.QueueFull):
        headers = (("retry-after", str(max(1, math.ceil(exc.retry_after_s)))),)
    elif isinstance(exc, errors.ShuttingDown | errors.NotReady | errors.EngineFailed):
        headers = (("retry-after", "1"),)
    elif isinstance(exc, errors.Unauthorized):
        headers = (("www-authenticate", 'Bearer realm="batchserve-admin"'),)
    return ErrorReply(status, exc.code, str(exc), headers)
