"""batchserve: an HTTP inference micro-service built around a dynamic batching engine.

The engine and the client are importable from here (``from batchserve import BatchProcessor,
Client``); each is loaded on first use, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .batching import (
        BatchPriority,
        BatchProcessingStrategy,
        BatchProcessor,
        BatchProcessorConfig,
    )
    from .client import AsyncClient, Client, ClientError, PredictError, TransportError

_EXPORTS = {
    "BatchPriority": ".batching",
    "BatchProcessingStrategy": ".batching",
    "BatchProcessor": ".batching",
    "BatchProcessorConfig": ".batching",
    "AsyncClient": ".client",
    "Client": ".client",
    "ClientError": ".client",
    "PredictError": ".client",
    "TransportError": ".client",
}
__all__ = [
    "AsyncClient",
    "BatchPriority",
    "BatchProcessingStrategy",
    "BatchProcessor",
    "BatchProcessorConfig",
    "Client",
    "ClientError",
    "PredictError",
    "TransportError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
