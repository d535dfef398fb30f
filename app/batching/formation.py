"""Forming a batch: what the worker takes from the queue, and how it groups it for the model."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from .config import PrioritizedItem
from .execution import group_key, item_nbytes
from .queue import ItemQueue


def entry_nbytes(entry: PrioritizedItem) -> int:
    """Bytes the entry's item adds to a batch."""
    return item_nbytes(entry.item)


def collect_batch(
    queue: ItemQueue,
    target: Callable[[], int],
    max_bytes: int | None,
    fixed_wait_s: float | None,
) -> list[PrioritizedItem]:
    """Wait for work, then take up to `target()` entries (and `max_bytes` bytes).

    With `fixed_wait_s` (the FIXED strategy) keep filling toward the target for at most that
    long after the first entry; otherwise dispatch what was queued at once. Returns an empty
    list once the queue is closed and drained, or aborted.
    """
    entries = queue.take(target, max_bytes, entry_nbytes)
    if fixed_wait_s is None or not entries:
        return entries
    size = target()
    until = time.monotonic() + fixed_wait_s
    left = None if max_bytes is None else max_bytes - sum(entry_nbytes(e) for e in entries)
    # A batch full by bytes is full: waiting for items that cannot fit only adds latency.
    while len(entries) < size and (left is None or left > 0):
        remaining = until - time.monotonic()
        if remaining <= 0 or not queue.wait_for_items(remaining):
            break
        more = queue.take_nowait(size - len(entries), left, entry_nbytes)
        if not more:
            break
        entries.extend(more)
        if left is not None:
            left -= sum(entry_nbytes(e) for e in more)
    return entries


def group_entries(
    entries: list[PrioritizedItem], key_of: Callable[[Any], Hashable | None] | None = None
) -> dict[Hashable | None, list[PrioritizedItem]]:
    """Entries that batch together, in arrival order: same `key_of(item)` (default: same
    shape and dtype, or same keys); the key None holds items that cannot be stacked."""
    if not entries:
        return {}
    if key_of is not None:
        keyed: dict[Hashable | None, list[PrioritizedItem]] = defaultdict(list)
        for entry in entries:
            keyed[key_of(entry.item)].append(entry)
        return keyed
    first = entries[0].item
    if type(first) is np.ndarray:
        # The common case, one shape and dtype for the whole batch, without a key per item.
        shape, dtype = first.shape, first.dtype
        for entry in entries:
            item = entry.item
            if type(item) is not np.ndarray or item.dtype is not dtype or item.shape != shape:
                break
        else:
            return {group_key(first): entries}
    groups: dict[Hashable | None, list[PrioritizedItem]] = defaultdict(list)
    for entry in entries:
        groups[group_key(entry.item)].append(entry)
    return groups
