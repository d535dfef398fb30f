"""Logging set-up: text or JSON lines, with every configured secret redacted."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import orjson

from ..config import LogFormat

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_REDACTED = "[redacted]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        return orjson.dumps(data, default=str).decode()


class RedactingFilter(logging.Filter):
    """Replaces each secret by a marker in the final message (args, extras and tracebacks)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        if record.exc_info:
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self._redact(value))
        return True

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def configure_logging(fmt: LogFormat, level: str, secrets: Iterable[str] = ()) -> None:
    """Route the root logger (and uvicorn's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    threading.excepthook = _log_thread_exception
    sys.excepthook = _log_uncaught


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """Uncaught exceptions of threads go through logging (one JSON object per line in JSON
    mode), not raw to stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("batchserve").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, traceback: Any) -> None:
    logging.getLogger("batchserve").critical(
        "uncaught exception", exc_info=(exc_type, exc, traceback)
    )


def escape(text: str) -> str:
    """`text` with control characters, other unprintable ones and spaces written as escapes
    (``\\n``, ``\\x1b``, ``\\x20``), so text a client sent cannot start a forged log line."""
    return "".join(ch if ch.isprintable() and ch != " " else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    return "\\x20" if ch == " " else ch.encode("unicode_escape").decode("ascii")


class AccessLog:
    """One line per request, formatted directly and written once per event-loop tick.

    Building a `logging.LogRecord` and formatting it costs more than serving a small request,
    so access lines bypass `logging`; they keep its line formats and the secret redaction.
    """

    def __init__(self, fmt: LogFormat, secrets: Iterable[str] = ()) -> None:
        self._json = fmt is LogFormat.JSON
        self._secrets = [s for s in secrets if s]
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def record(self, method: str, path: str, status: int, duration_s: float, rid: str) -> None:
        """Queue the line for one answered request."""
        now = time.time()
        second = int(now)
        if second != self._second:  # formatting the date is the costly part: once a second
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = self._stamp
        millis = int(now * 1000) % 1000
        duration_ms = round(duration_s * 1e3, 3)
        if not path.isprintable() or " " in path:
            path = escape(path)
        message = f"{method} {path} {status} {duration_ms:.2f}ms id={rid}"
        if self._json:
            line = orjson.dumps(
                {
                    "time": f"{stamp}.{millis:03d}Z",
                    "level": "info",
                    "logger": "batchserve.access",
                    "message": message,
                    "request_id": rid,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                }
            ).decode()
        else:
            line = f"{stamp.replace('T', ' ')},{millis:03d} INFO batchserve.access: {message}"
        for secret in self._secrets:
            line = line.replace(secret, _REDACTED)
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(line)

    def flush(self) -> None:
        """Write the queued lines to stderr."""
        lines, self._lines = self._lines, []
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
