"""Options of the reliability suite: ``pytest tests/reliability --soak 300`` soaks for 300 s."""

from __future__ import annotations

import pytest

DEFAULT_SOAK_S = 15.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        type=float,
        default=DEFAULT_SOAK_S,
        metavar="SECONDS",
        help=f"how long the soak scenario runs (default {DEFAULT_SOAK_S:g} s)",
    )


@pytest.fixture
def soak_s(request: pytest.FixtureRequest) -> float:
    """The soak duration in seconds (the option is only known when this directory is named
    on the command line; otherwise the default)."""
    return float(request.config.getoption("--soak", default=DEFAULT_SOAK_S))
