"""Batches of the shapes a model takes (`batchserve.batching.collate.Collator`), from what it
declares (`Execution`, `TensorSpec.pad`):

- ``allowed_batch_sizes``: batches are formed up to the largest and padded up to the next
  allowed size with copies of their last row, which are dropped from the outputs; a batch is
  never bisected for its size (a graph exported with a fixed batch of 8 runs batches of 8).
- ``pad`` on an input with variable dimensions: rows of different lengths batch together,
  padded with that value to the batch's longest row, or to the smallest of
  ``length_buckets`` that fits it (rows are grouped by bucket, so a short row never pays for
  a long one beyond its bucket). With ``lengths_input``, the batch is a dict that also holds
  the rows' true lengths (int64, along the input's first variable dimension) under that
  name. Outputs declared with a variable first dimension are trimmed back to each row's
  length.

Padding is counted (``on_padding`` of the metrics collector: rows, and values).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..batching.execution import group_key, split_rows, stack
from ..batching.observer import notify
from .base import LoadedModel
from .spec import Array, TensorSpec


@dataclass(frozen=True, slots=True)
class _Layout:
    rows: int  # the items'
    total: int  # with padding rows
    lengths: Array | None  # each item's length along its padded input's first variable axis


class ModelCollator:
    """The `Collator` of one model (see the module docstring)."""

    def __init__(self, model: LoadedModel, collector: Any = None) -> None:
        execution = model.execution
        self._sizes = execution.allowed_batch_sizes
        self._buckets = execution.length_buckets
        self._lengths_input = execution.lengths_input
        self._collector = collector
        self._first = model.inputs[0].name if model.inputs else "input0"
        self._named = len(model.inputs) > 1
        self._padded = {spec.name: spec for spec in model.inputs if spec.pad is not None}
        self._trimmed = frozenset(
            spec.name for spec in model.outputs if spec.shape and spec.shape[0] == -1
        )
        self._single_output = model.outputs[0].name if len(model.outputs) == 1 else None

    @property
    def max_rows(self) -> int | None:
        """The largest allowed batch size, if the model declares any."""
        return self._sizes[-1] if self._sizes else None

    def key(self, item: Any) -> Hashable | None:
        if not self._padded:
            return group_key(item)
        arrays = item if isinstance(item, dict) else {self._first: item}
        parts: list[Hashable] = []
        for name, array in sorted(arrays.items()):
            if not isinstance(array, np.ndarray):
                return None
            spec = self._padded.get(name)
            if spec is None or array.ndim != len(spec.shape):
                parts.append((name, array.shape, array.dtype))
                continue
            shape = tuple(
                None if want == -1 else got
                for want, got in zip(spec.shape, array.shape, strict=True)
            )
            parts.append((name, shape, array.dtype, self._bucket(_length(spec, array))))
        return tuple(parts)

    def collate(self, items: Sequence[Any]) -> tuple[Any, _Layout]:
        count = len(items)
        total = self._total(count)
        if not self._padded:
            stacked = stack(items)
            notify(self._collector, "on_padding", total - count, 0)
            return _extend(stacked, total), _Layout(count, total, None)
        columns = {
            name: [item[name] for item in items] if isinstance(items[0], dict) else list(items)
            for name in (items[0] if isinstance(items[0], dict) else (self._first,))
        }
        batch: dict[str, Array] = {}
        lengths: Array | None = None
        added = 0
        for name, arrays in columns.items():
            spec = self._padded.get(name)
            if spec is None:
                batch[name] = _extend(stack(arrays), total)
                continue
            padded, row_lengths = self._pad(spec, arrays, total)
            added += padded.size - sum(a.size for a in arrays)
            batch[name] = padded
            lengths = row_lengths if lengths is None else lengths
        notify(self._collector, "on_padding", total - count, added)
        if self._lengths_input is not None and lengths is not None:
            batch[self._lengths_input] = lengths
        elif not self._named:
            return batch[self._first], _Layout(count, total, lengths)
        return batch, _Layout(count, total, lengths)

    def uncollate(self, output: Any, layout: _Layout, count: int) -> Sequence[Any]:
        rows = split_rows(output, layout.total)[:count]
        lengths = layout.lengths
        if lengths is None or not self._trimmed:
            return rows
        if isinstance(output, dict):
            return [
                {k: v[: lengths[i]] if k in self._trimmed else v for k, v in row.items()}
                for i, row in enumerate(rows)
            ]
        if self._single_output in self._trimmed:
            return [row[: lengths[i]] for i, row in enumerate(rows)]
        return rows

    def _total(self, count: int) -> int:
        if not self._sizes:
            return count
        return self._sizes[min(bisect.bisect_left(self._sizes, count), len(self._sizes) - 1)]

    def _bucket(self, length: int) -> int | None:
        if not self._buckets:
            return None
        return self._buckets[min(bisect.bisect_left(self._buckets, length), len(self._buckets) - 1)]

    def _pad(self, spec: TensorSpec, arrays: list[Array], total: int) -> tuple[Array, Array]:
        """`arrays` in one (total, ...) array padded with `spec.pad`, and their lengths."""
        variable = [axis for axis, dim in enumerate(spec.shape) if dim == -1]
        shape = [max(a.shape[axis] for a in arrays) for axis in range(arrays[0].ndim)]
        bucket = self._bucket(shape[variable[0]])
        if bucket is not None and bucket > shape[variable[0]]:
            shape[variable[0]] = bucket
        out = np.full((total, *shape), spec.pad, dtype=arrays[0].dtype)
        for row, array in enumerate(arrays):
            region: tuple[int | slice, ...] = (row, *(slice(0, n) for n in array.shape))
            out[region] = array
        if total > len(arrays):
            out[len(arrays) :] = out[len(arrays) - 1]
        lengths = np.array([_length(spec, a) for a in arrays], dtype=np.int64)
        if total > len(arrays):
            lengths = np.concatenate([lengths, np.repeat(lengths[-1:], total - len(arrays))])
        return out, lengths


def _length(spec: TensorSpec, array: Array) -> int:
    """The row's length along the first variable axis of its input."""
    return int(array.shape[spec.shape.index(-1)])


def _extend(batch: Any, total: int) -> Any:
    """`batch` with copies of its last row up to `total` rows."""
    if isinstance(batch, dict):
        return {k: _extend(v, total) for k, v in batch.items()}
    missing = total - len(batch)
    if missing <= 0:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], missing, axis=0)])


def model_collator(model: LoadedModel, collector: Any = None) -> ModelCollator | None:
    """The model's collator, or None when it declares nothing that needs one (the engine's
    default then stacks same-shape rows, as fast as it can)."""
    execution = model.execution
    padded = any(spec.pad is not None for spec in model.inputs)
    if not execution.allowed_batch_sizes and not padded:
        return None
    return ModelCollator(model, collector)
