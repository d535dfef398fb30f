"""The docs pages in a real browser on a host with no route to the internet.

A `batchserve serve` process and Debian's headless Chromium run inside a fresh network
namespace that has only loopback, so any asset the pages tried to fetch from a CDN would
fail; the tests read the DOM Chromium rendered, not the HTML the server sent.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest

from tests.e2e.support import ROOT, clean_env
from tests.e2e.tools import poll_until, require_tool, stop_process

pytestmark = pytest.mark.e2e

PORT = 8000  # the namespace is new: nothing else listens in it
READY_TIMEOUT_S = 60.0
BROWSER_TIMEOUT_S = 120.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
    "--dump-dom",
)
# Run inside the namespace: prints the body of a 2xx answer, exits non-zero otherwise.
FETCH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    sys.stdout.buffer.write(answer.read())
"""

SWAGGER_OPERATION = re.compile(r'<div class="opblock opblock-(\w+)"')
DATA_PATH = re.compile(r'data-path="([^"]*)"')
REDOC_OPERATION = re.compile(r'http-verb (\w+)">\1</span><span[^>]*>([^<]+)</span>')


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when BATCHSERVE_TEST_REQUIRE_TOOLS=1 (as `require_tool` does)."""
    if os.environ.get("BATCHSERVE_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason}, and BATCHSERVE_TEST_REQUIRE_TOOLS=1 requires it")
    pytest.skip(reason)


@dataclass
class OfflineHost:
    """A network namespace with only loopback up, and the service running inside it."""

    ip: str
    name: str
    url: str

    def run(self, *command: str, timeout_s: float) -> subprocess.CompletedProcess[bytes]:
        """Run `command` inside the namespace."""
        return subprocess.run(
            [self.ip, "netns", "exec", self.name, *command],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )

    def fetch(self, path: str) -> bytes | None:
        """The body of GET `path` from inside the namespace; None unless it answered 2xx."""
        done = self.run(sys.executable, "-c", FETCH, self.url + path, timeout_s=10)
        return done.stdout if done.returncode == 0 else None

    def render(self, path: str, profile: Path) -> str:
        """The DOM headless Chromium built for `path`, scripts run, with a fresh profile."""
        chromium = require_tool("chromium", "chromium")
        done = self.run(
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            self.url + path,
            timeout_s=BROWSER_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        return done.stdout.decode()


@pytest.fixture(scope="module")
def offline_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineHost]:
    ip = require_tool("ip", "iproute2")
    require_tool("chromium", "chromium")
    name = f"batchserve-docs-{os.getpid()}-{secrets.token_hex(3)}"
    added = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True)
    if added.returncode != 0:
        unavailable(f"'ip netns add' failed, it needs root: {added.stderr.strip()}")
    try:
        subprocess.run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"], check=True)
        host = OfflineHost(ip, name, f"http://127.0.0.1:{PORT}")
        log_path = tmp_path_factory.mktemp("docs-server") / "server.log"
        serve = [sys.executable, "-m", "batchserve", "serve", "--port", str(PORT)]
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [ip, "netns", "exec", name, *serve],
                env=clean_env({}),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:

            def ready() -> bool | None:
                if server.poll() is not None:
                    pytest.fail(f"server exited with {server.returncode}:\n{log_path.read_text()}")
                return True if host.fetch("/health/ready") is not None else None

            poll_until(ready, READY_TIMEOUT_S, "the service in the namespace to be ready")
            yield host
        finally:
            stop_process(server)
    finally:
        subprocess.run([ip, "netns", "delete", name], check=False)


def openapi_of(host: OfflineHost) -> dict[str, Any]:
    """The service's OpenAPI document."""
    body = host.fetch("/openapi.json")
    assert body is not None
    schema: dict[str, Any] = orjson.loads(body)
    return schema


def operations_of(schema: dict[str, Any]) -> dict[tuple[str, str], bool]:
    """(method, path) of every operation of an OpenAPI document -> it needs a credential."""
    return {
        (method, path): bool(operation.get("security"))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def swagger_operations(dom: str) -> dict[tuple[str, str], bool]:
    """(method, path) of every operation block Swagger UI drew -> it has a lock button."""
    bounds = [*(m.start() for m in SWAGGER_OPERATION.finditer(dom)), len(dom)]
    found = {}
    for start, end in itertools.pairwise(bounds):
        block = dom[start:end]
        method = SWAGGER_OPERATION.match(block)
        path = DATA_PATH.search(block)
        assert method is not None
        assert path is not None, block[:300]
        found[method.group(1), path.group(1)] = "authorization__btn" in block
    return found


def test_the_namespace_has_no_route_off_the_host(offline_host: OfflineHost) -> None:
    links = offline_host.run(offline_host.ip, "-o", "link", "show", timeout_s=10)
    names = [line.split(":")[1].strip() for line in links.stdout.decode().splitlines()]
    assert names == ["lo"]
    for family in ("-4", "-6"):
        routes = offline_host.run(offline_host.ip, family, "route", "show", "default", timeout_s=10)
        assert routes.stdout.strip() == b"", routes.stdout


def test_docs_page_shows_every_operation_without_internet(
    offline_host: OfflineHost, tmp_path: Path
) -> None:
    expected = operations_of(openapi_of(offline_host))
    dom = offline_host.render("/docs", tmp_path / "profile")
    shown = swagger_operations(dom)
    assert shown == expected
    assert ("post", "/predict") in shown
    admin = {op for op, secured in shown.items() if secured}
    assert admin == {
        ("post", "/admin/pause"),
        ("post", "/admin/resume"),
        ("get", "/admin/batch-size"),
        ("put", "/admin/batch-size"),
        ("post", "/admin/model"),
        ("post", "/v2/repository/models/{model_name}/load"),
        ("post", "/v2/repository/models/{model_name}/unload"),
    }
    assert re.search(r'<button class="btn authorize[^"]*"><span>Authorize</span>', dom)


def test_redoc_page_shows_every_operation_without_internet(
    offline_host: OfflineHost, tmp_path: Path
) -> None:
    schema = openapi_of(offline_host)
    dom = offline_host.render("/redoc", tmp_path / "profile")
    shown = set(REDOC_OPERATION.findall(dom))
    assert shown == set(operations_of(schema))
    assert ("post", "/predict") in shown
    (scheme,) = schema["components"]["securitySchemes"]
    assert f"<i>{scheme}</i>" in dom  # the admin operations' "Authorizations" line
