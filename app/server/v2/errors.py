"""Errors of the V2 routes: the protocol's status codes over the service's error messages.

The V2 protocol answers every refused request with 400 where ``/predict`` distinguishes
413/415/422, and Triton reports a full queue as 503 (UNAVAILABLE) where ``/predict`` uses
429. Everything else (404, 500, 503, 504, Retry-After) is the service's own mapping in
`batchserve.server.errors`. Bodies are ``{"error": message, "code": code}``.
"""

from __future__ import annotations

from typing import Final

import orjson

from ... import errors
from ...metrics import Metrics
from ..errors import to_reply
from ..predict import Reply

# Most specific first: the first match wins; unlisted errors keep the service's status.
V2_STATUS: Final[tuple[tuple[type[Exception], int], ...]] = (
    (errors.ItemTooLarge, 400),
    (errors.PayloadTooLarge, 400),
    (errors.UnsupportedMediaType, 400),
    (errors.MalformedRequest, 400),
    (errors.InvalidInput, 400),
    (errors.QueueFull, 503),
)


def v2_error(exc: Exception, request_id: str, metrics: Metrics | None = None) -> Reply:
    """The V2 error reply for ``exc``; counts refused input on ``metrics`` like ``/predict``."""
    reply = to_reply(exc, request_id)
    status = next((code for cls, code in V2_STATUS if isinstance(exc, cls)), reply.status)
    if metrics is not None:
        if isinstance(
            exc, errors.MalformedRequest | errors.InvalidInput | errors.UnsupportedMediaType
        ):
            metrics.reject("invalid")
        elif isinstance(exc, errors.PayloadTooLarge) and not isinstance(exc, errors.ItemTooLarge):
            metrics.reject("too_large")  # the engine counts the items it refuses itself
    body = orjson.dumps({"error": reply.message, "code": reply.code})
    return Reply(status, body, "application/json", list(reply.headers))
