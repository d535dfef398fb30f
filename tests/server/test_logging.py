"""Log lines: one per request with its id, JSON when asked, secrets redacted."""

from __future__ import annotations

import io
import logging
import sys
import threading

import orjson
import pytest

from batchserve.config import LogFormat, Settings
from batchserve.server.logs import JsonFormatter, RedactingFilter, configure_logging
from tests.server.support import serving


@pytest.mark.parametrize("fmt", [LogFormat.JSON, LogFormat.TEXT])
async def test_each_request_logs_one_line_with_its_request_id(capsys, fmt) -> None:
    token = "admin-token-that-must-not-leak"
    async with serving(Settings(log_format=fmt, admin_token=token)) as (_, client):
        response = await client.get("/health/ready", headers={"x-request-id": "req-42"})
        await client.get(f"/admin/{token}")
    lines = [line for line in capsys.readouterr().err.splitlines() if "batchserve.access" in line]
    assert response.status_code == 200
    assert len(lines) == 2
    assert token not in "".join(lines)
    if fmt is LogFormat.JSON:
        first = orjson.loads(lines[0])
        assert first["request_id"] == "req-42"
        assert first["status"] == 200
        assert first["path"] == "/health/ready"
    else:
        assert lines[0].endswith("id=req-42")
        assert " GET /health/ready 200 " in lines[0]


def test_logging_config_writes_json_lines_with_extras() -> None:
    configure_logging(LogFormat.JSON, "info", [])
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        logging.getLogger("batchserve.test").info("hello %s", "world", extra={"batch": 3})
    finally:
        logging.getLogger().handlers.clear()
    line = orjson.loads(stream.getvalue())
    assert (line["message"], line["batch"], line["level"]) == ("hello world", 3, "info")


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


def test_an_uncaught_thread_exception_is_one_json_log_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # restored afterwards
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    configure_logging(LogFormat.JSON, "info", [])
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)

    def boom() -> None:
        raise ZeroDivisionError("in a thread")

    try:
        thread = threading.Thread(target=boom, name="batchserve-test-thread")
        thread.start()
        thread.join()
    finally:
        logging.getLogger().handlers.clear()
    (line,) = [orjson.loads(text) for text in stream.getvalue().splitlines()]
    assert "batchserve-test-thread" in line["message"]
    assert "ZeroDivisionError: in a thread" in line["exc_info"]


async def test_control_characters_in_a_path_cannot_forge_an_access_line(capsys) -> None:
    async with serving(Settings(log_format=LogFormat.TEXT)) as (_, client):
        await client.get("/x%0A2026-01-01 00:00:00,000 INFO batchserve.access: GET /admin 200")
    lines = [line for line in capsys.readouterr().err.splitlines() if "batchserve.access" in line]
    assert len(lines) == 1
    assert "\\n" in lines[0]
    assert "/x\\n2026-01-01\\x2000:00:00" in lines[0]
