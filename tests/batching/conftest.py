"""Fixtures of the engine's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.batching.support import GatedModel, ProcessorFactory, RecordingModel, double


@pytest.fixture
def model() -> RecordingModel:
    """A model that doubles its batch and records every call."""
    return RecordingModel()


@pytest.fixture
def make_gated(make_processor: ProcessorFactory) -> Iterator[Callable[..., GatedModel]]:
    """``make_gated(fn=double)`` builds gated models; every gate is opened at teardown, before
    the processors are stopped (this fixture depends on ``make_processor`` for that order)."""
    made: list[GatedModel] = []

    def make(fn: Callable[[Any], Any] = double) -> GatedModel:
        gated = GatedModel(fn)
        made.append(gated)
        return gated

    yield make
    for gated in made:
        gated.open()


@pytest.fixture
def gated(make_gated: Callable[..., GatedModel]) -> GatedModel:
    """A doubling model that blocks every call until ``gated.open()``."""
    return make_gated()
