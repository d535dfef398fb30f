"""The typed error family of batchserve's core.

Nothing here knows about HTTP: `batchserve.server.errors` maps each class to a status code in one
table. Every class carries a stable machine-readable ``code`` used in error bodies and metrics.
"""

from __future__ import annotations


class BatchServeError(Exception):
    """Base of every error batchserve raises on purpose."""

    code = "internal"


class InvalidInput(BatchServeError, ValueError):
    """The input is well-formed but unusable: wrong shape, dtype, rank, or values."""

    code = "invalid_input"


class MalformedRequest(BatchServeError, ValueError):
    """The request body cannot be decoded at all."""

    code = "malformed_request"


class UnsupportedMediaType(BatchServeError, ValueError):
    """The request's content type is not one batchserve decodes."""

    code = "unsupported_media_type"


class PayloadTooLarge(BatchServeError, ValueError):
    """A body or an item exceeds a configured size limit."""

    code = "payload_too_large"


class ItemTooLarge(PayloadTooLarge):
    """One item alone is larger than the batch memory cap (`max_batch_memory_mb`)."""

    code = "item_too_large"


class TooManyItems(PayloadTooLarge):
    """One submission has more items than the queue can ever hold (`max_queue_size`)."""

    code = "too_many_items"


class QueueFull(BatchServeError, RuntimeError):
    """The engine's queue stayed full for the whole enqueue timeout."""

    code = "queue_full"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(BatchServeError, TimeoutError):
    """The item's deadline passed before the model ran it."""

    code = "deadline_exceeded"


class ShuttingDown(BatchServeError, RuntimeError):
    """The engine is stopping and accepts or finishes no more work."""

    code = "shutting_down"


class EngineFailed(BatchServeError, RuntimeError):
    """The engine's batch worker has ended for good; nothing more will be processed."""

    code = "engine_failed"


class NotReady(BatchServeError, RuntimeError):
    """The service is not ready to serve (model loading, paused for drain)."""

    code = "not_ready"


class ModelError(BatchServeError):
    """The model raised while processing this item."""

    code = "model_error"


class OutputMismatch(ModelError):
    """The model returned a different number of rows than it was given."""

    code = "output_mismatch"


class ModelNotFound(BatchServeError, LookupError):
    """The request names a model this server does not serve."""

    code = "model_not_found"


class ModelLoadError(BatchServeError):
    """The configured model could not be loaded (bad reference, missing extra, bad file)."""

    code = "model_load_error"


class Unauthorized(BatchServeError):
    """An admin call came without credentials."""

    code = "unauthorized"


class Forbidden(BatchServeError):
    """An admin call came with wrong credentials, or admin is disabled."""

    code = "forbidden"


class NotImplementedFeature(BatchServeError):
    """The request asks for a feature this server does not implement."""

    code = "not_implemented"


class ModelUnavailable(BatchServeError, RuntimeError):
    """The served model was unloaded; nothing is served until the next load."""

    code = "model_unavailable"


class ModelLoadFailed(ModelLoadError):
    """A load asked of the running service failed (the model could not be loaded or failed
    its warm-up); the model served before keeps serving."""

    code = "model_load_failed"
