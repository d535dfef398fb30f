"""Canary over the uvicorn internals the uvicorn door and the runner use (listed in the
docstrings of `batchserve.server.doors.uvicorn` and `batchserve.server.runner`): each test
fails, naming the name, when an uvicorn release moves one. CI runs it on the lowest and the
highest uvicorn that pyproject.toml allows."""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import uvicorn
from uvicorn.protocols.http import flow_control, httptools_impl
from uvicorn.server import ServerState

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_METHODS = (
    "connection_made",
    "on_message_begin",
    "on_url",
    "on_header",
    "_should_upgrade",
    "handle_websocket_upgrade",
    "pause_writing",
    "resume_writing",
)
PROTOCOL_ATTRIBUTES = (
    "parser",
    "transport",
    "flow",
    "scope",
    "headers",
    "url",
    "expect_100_continue",
    "root_path",
    "app",
    "loop",
    "connections",
    "tasks",
    "server_state",
    "logger",
    "access_logger",
    "access_log",
)
CYCLE_PARAMETERS = {
    "scope",
    "transport",
    "flow",
    "logger",
    "access_logger",
    "access_log",
    "default_headers",
    "message_event",
    "expect_100_continue",
    "keep_alive",
    "on_response",
}
CYCLE_ATTRIBUTES = ("body", "more_body", "message_event", "disconnected", "keep_alive")


class _Transport(asyncio.Transport):
    """A transport with nothing behind it: no addresses, no socket."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_the_installed_uvicorn_is_in_the_tested_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in dependencies if d.startswith("uvicorn")]
    low, high = re.search(r">=([\d.]+),<([\d.]+)", spec).groups()  # type: ignore[union-attr]
    assert _version(low) <= _version(version("uvicorn")) < _version(high)


async def test_the_protocol_internals_exist() -> None:
    config = uvicorn.Config(app=lambda scope, receive, send: None, ws="none", log_config=None)
    config.load()
    protocol = httptools_impl.HttpToolsProtocol(
        config, ServerState(), {}, asyncio.get_running_loop()
    )
    for name in PROTOCOL_METHODS:
        assert callable(getattr(protocol, name, None)), name
    protocol.connection_made(_Transport())
    protocol.on_message_begin()
    for name in PROTOCOL_ATTRIBUTES:
        assert hasattr(protocol, name), name
    assert hasattr(protocol.flow, "read_paused")
    assert hasattr(protocol.flow, "write_paused")
    assert protocol in protocol.connections


def test_the_request_cycle_takes_what_the_door_passes() -> None:
    parameters = set(inspect.signature(httptools_impl.RequestResponseCycle).parameters)
    assert parameters == CYCLE_PARAMETERS
    assert inspect.iscoroutinefunction(httptools_impl.RequestResponseCycle.run_asgi)
    source = inspect.getsource(httptools_impl.RequestResponseCycle.__init__)
    for name in (*CYCLE_ATTRIBUTES, "response_complete", "response_started"):
        assert f"self.{name} =" in source, name


def test_status_lines_flow_control_and_server_state() -> None:
    assert httptools_impl.STATUS_LINE[200] == b"HTTP/1.1 200 OK\r\n"
    assert httptools_impl.STATUS_LINE[499].startswith(b"HTTP/1.1 499")
    assert flow_control.HIGH_WATER_LIMIT > 0
    state = ServerState()
    assert isinstance(state.default_headers, list)
    assert state.total_requests == 0


@pytest.mark.parametrize("name", ["handle_exit", "capture_signals", "startup", "serve", "shutdown"])
def test_the_server_methods_the_runner_overrides_exist(name: str) -> None:
    assert callable(getattr(uvicorn.Server, name, None)), name


def test_the_server_attributes_the_runner_uses_exist() -> None:
    server = uvicorn.Server(uvicorn.Config(app=lambda scope, receive, send: None))
    for name in ("should_exit", "force_exit", "started", "config", "server_state"):
        assert hasattr(server, name), name
    assert "self.servers" in inspect.getsource(uvicorn.Server.startup)
    assert "timeout_graceful_shutdown" in inspect.getsource(uvicorn.Server.shutdown)
