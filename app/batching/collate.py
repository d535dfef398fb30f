"""How a group of items becomes the model's batch, and its output one row per item again.

The engine's default stacks same-shape arrays (`stack`) and splits the output by rows
(`split_rows`). A `Collator` replaces both for models that need more: padding to the batch
sizes a model accepts, or padding rows of different lengths to a common one. The engine
knows nothing of the model; `batchserve.models.padding` builds a collator from what a model
declares.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol


class Collator(Protocol):
    """Batch formation for one model."""

    @property
    def max_rows(self) -> int | None:
        """The largest batch the model takes (None: any); batches are formed up to it."""
        ...

    def key(self, item: Any) -> Hashable | None:
        """Items with equal keys share a batch; None: run the item alone."""
        ...

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        """The model's batch for `items` (all of one key), and what `uncollate` needs."""
        ...

    def uncollate(self, output: Any, layout: Any, count: int) -> Sequence[Any]:
        """One row per item from the model's output; raises `OutputMismatch` when the
        output does not have the rows the batch had."""
        ...
