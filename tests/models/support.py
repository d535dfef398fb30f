"""Narrowing helpers: a row or batch is an array or a dict, and each test knows which."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchserve.models.spec import Array


def as_array(value: Any) -> Array:
    """Assert ``value`` is one array (single-tensor row, batch or result) and return it."""
    assert isinstance(value, np.ndarray), type(value)
    return value


def as_dict(value: Any) -> dict[str, Array]:
    """Assert ``value`` is a dict of named arrays and return it."""
    assert isinstance(value, dict), type(value)
    return value


def stack_rows(rows: list[Any]) -> Array:
    """Stack validated single-tensor rows into a batch."""
    return np.stack([as_array(row) for row in rows])
