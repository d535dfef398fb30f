"""batchserve: an HTTP inference micro-service built around a dynamic batching engine."""

__version__ = "0.1.0"
