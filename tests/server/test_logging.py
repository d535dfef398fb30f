"""Log lines: one per request with its id, JSON when asked, secrets redacted."""

from __future__ import annotations

import io
import logging
import sys

import orjson

from app.config import LogFormat
from app.server.logs import JsonFormatter, RedactingFilter, configure_logging
from tests.server.support import serving


def _capture(fmt: LogFormat, secrets: list[str]) -> io.StringIO:
    configure_logging(fmt, "info", secrets)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


async def test_each_request_logs_one_line_with_its_request_id() -> None:
    stream = _capture(LogFormat.JSON, [])
    try:
        async with serving() as (_, client):
            response = await client.get("/health/ready", headers={"x-request-id": "req-42"})
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logging.getLogger().handlers.clear()
    access = [line for line in lines if line["logger"] == "app.access"]
    assert response.status_code == 200
    assert len(access) == 1
    assert access[0]["request_id"] == "req-42"
    assert access[0]["status"] == 200


def test_secrets_are_redacted_from_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token=%s", ("abc-secret",), None)
    try:
        raise ValueError("abc-secret in an exception")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactingFilter(["abc-secret"]).filter(record)
    text = JsonFormatter().format(record)
    assert "abc-secret" not in text
    assert "[redacted]" in text
