"""Scheduling a request: its priority and its deadline, from headers (and V2 parameters).

``X-Priority: high|normal|low`` (case-insensitive; absent = normal) and
``X-Request-Timeout-Seconds: <s>`` (a positive number, at most ``max_request_timeout_s``;
absent = ``request_timeout_s``). On V2, Triton's schedule-policy parameters win over the
headers when given: ``priority`` 0 means the default (the header, else NORMAL), 1 is HIGH,
2 NORMAL, 3 or more LOW; ``timeout`` is in microseconds, 0 meaning the default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from ...batching import BatchPriority
from ...config import Settings
from ...errors import InvalidInput, MalformedRequest

PRIORITY_HEADER: Final = "x-priority"
TIMEOUT_HEADER: Final = "x-request-timeout-seconds"
#: Triton priority level -> engine priority (0 = default, handled separately).
PRIORITY_LEVELS: Final = {1: BatchPriority.HIGH, 2: BatchPriority.NORMAL}
_PRIORITIES: Final = {p.name.lower(): p for p in BatchPriority}
_US_PER_S: Final = 1_000_000


def parse_priority(value: str | None) -> BatchPriority:
    """`X-Priority`; raises `MalformedRequest` for another value."""
    if value is None or value == "":
        return BatchPriority.NORMAL
    try:
        return _PRIORITIES[value.strip().lower()]
    except KeyError:
        raise MalformedRequest(
            f"X-Priority must be one of high, normal, low; got {value[:40]!r}"
        ) from None


def parse_timeout(value: str | None, settings: Settings) -> float | None:
    """`X-Request-Timeout-Seconds` in seconds (None: no deadline); raises `MalformedRequest`
    for a value that is not a number of seconds in (0, max_request_timeout_s]."""
    if value is None or value == "":
        return settings.request_timeout_s
    limit = settings.max_request_timeout_s
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


def schedule_policy(
    params: Mapping[str, Any], headers: Mapping[str, str], settings: Settings
) -> tuple[BatchPriority, float | None]:
    """``(priority, timeout in seconds)`` from V2 request parameters, then the headers.

    Raises `InvalidInput` or `MalformedRequest` for values out of range.
    """
    level = _natural(params, "priority")
    if level == 0:
        priority = parse_priority(headers.get(PRIORITY_HEADER))
    else:
        priority = PRIORITY_LEVELS.get(level, BatchPriority.LOW)
    micros = _natural(params, "timeout")
    if micros == 0:
        return priority, parse_timeout(headers.get(TIMEOUT_HEADER), settings)
    limit = settings.max_request_timeout_s
    timeout = micros / _US_PER_S
    if timeout > limit:
        raise InvalidInput(f"parameter 'timeout' exceeds the limit of {limit:g} s")
    return priority, timeout


def _natural(params: Mapping[str, Any], key: str) -> int:
    value = params.get(key, 0)
    if type(value) is not int or value < 0:
        raise InvalidInput(f"parameter {key!r} must be a non-negative integer")
    return value
