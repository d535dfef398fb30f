"""Options of the reliability suite: ``pytest tests/reliability --soak 300`` soaks for 300 s."""

from __future__ import annotations

import pytest

DEFAULT_SOAK_S = 15.0
SOAK_OVERHEAD_S = 120.0  # start-up, warm-up and checks, on top of the soak itself


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        type=float,
        default=DEFAULT_SOAK_S,
        metavar="SECONDS",
        help=f"how long the soak scenario runs (default {DEFAULT_SOAK_S:g} s)",
    )


def _soak_s(config: pytest.Config) -> float:
    # The option is known only when this directory is named on the command line.
    return float(config.getoption("--soak", default=DEFAULT_SOAK_S))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the soak test time for the soak (the suite's timeout is for ordinary tests)."""
    limit = 1.5 * _soak_s(config) + SOAK_OVERHEAD_S
    for item in items:
        if "soak_s" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture
def soak_s(request: pytest.FixtureRequest) -> float:
    """The soak duration in seconds."""
    return _soak_s(request.config)
