"""External programs the end-to-end tests drive, and the bounded waits around them.

A test that needs a program calls `require_tool`: it skips when the program is missing,
unless ``BATCHSERVE_TEST_REQUIRE_TOOLS=1`` (as in CI) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


def require_tool(name: str, package: str) -> str:
    """Path of executable ``name`` (from Debian package ``package``).

    Skips the test when it is not on PATH, or fails it when BATCHSERVE_TEST_REQUIRE_TOOLS=1.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not on PATH (Debian/Ubuntu: apt-get install {package})"
    if os.environ.get("BATCHSERVE_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason}, and BATCHSERVE_TEST_REQUIRE_TOOLS=1 requires it")
    pytest.skip(reason)


def poll_until(check: Callable[[], T | None], timeout_s: float, what: str | Callable[[], str]) -> T:
    """Call ``check`` until it returns something other than None, and return that.

    Fails the test, naming ``what`` (or what it returns, when it is callable: the state seen
    last), when ``timeout_s`` seconds pass first. An exception raised by ``check`` propagates
    at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {described}")
        time.sleep(POLL_INTERVAL_S)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """SIGTERM ``process`` and wait for it; SIGKILL it if it outlives ``timeout_s``.

    Returns its exit code (negative: the signal that ended it).
    """
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
