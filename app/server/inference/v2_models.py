"""The served model as the V2 protocol sees it: lookup by name and version, metadata, and
Triton's model configuration."""

from __future__ import annotations

from typing import Any, Final

from ... import __version__
from ...batching import BatchProcessingStrategy, BatchProcessorConfig
from ...config import Settings
from ...errors import ModelNotFound, ModelUnavailable, NotReady
from ...models import LoadedModel, TensorSpec
from ..state import FIRST_VERSION, ServiceState
from ..wire.datatypes import BYTES, datatype_of, describe

SERVER_NAME: Final = "batchserve"
EXTENSIONS: Final = (
    "binary_tensor_data",
    "schedule_policy",
    "model_configuration",
    "model_repository",
    "statistics",
)
#: The version the service starts with; every load asked of the running service adds one.
MODEL_VERSION: Final = str(FIRST_VERSION)
#: How outputs a model does not declare are described (their real dtype shows in responses).
UNDECLARED_OUTPUT: Final = {"datatype": "FP32", "shape": [-1, -1]}
#: Triton's priority levels for the engine's HIGH, NORMAL and LOW (0 asks for the default).
PRIORITY_LEVELS: Final = 3
DEFAULT_PRIORITY_LEVEL: Final = 2
_US: Final = 1_000_000


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: name, version and the protocol extensions this server implements."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


def find_model(state: ServiceState, name: str, version: str | None) -> LoadedModel:
    """The served model if ``name`` (and ``version``, when given) name it and it is loaded.

    Raises what `served_model` raises, and `ModelUnavailable` once the model was unloaded.
    """
    model = served_model(state, name, version)
    if state.unloaded:
        raise ModelUnavailable(f"model {name!r} is unloaded; load it again to serve it")
    return model


def served_model(state: ServiceState, name: str, version: str | None) -> LoadedModel:
    """The served model, loaded or not, if ``name`` (and ``version``, when given) name it.

    Raises `NotReady` while no model is loaded yet and `ModelNotFound` for another name or a
    version other than the served one.
    """
    model = state.model
    if model is None:
        raise NotReady("the model is still loading")
    if name != model.name:
        raise ModelNotFound(f"unknown model {name[:100]!r}; this server serves {model.name!r}")
    served = str(state.version)
    if version is not None and version != served:
        raise ModelNotFound(
            f"model {name!r} has no version {version[:20]!r}; it serves version {served}"
        )
    return model


def model_metadata(model: LoadedModel, version: str = MODEL_VERSION) -> dict[str, Any]:
    """``GET /v2/models/{name}``: tensors with ``-1`` for the batch dimension.

    A model with undeclared inputs lists none (it takes one input of any name and numeric
    datatype); undeclared outputs are listed as one FP32 ``output0``.
    """
    outputs = [_tensor(spec) for spec in model.outputs] or [
        {"name": name, **UNDECLARED_OUTPUT} for name in model.output_names
    ]
    return {
        "name": model.name,
        "versions": [version],
        "platform": model.platform,
        "inputs": [_tensor(spec) for spec in model.inputs],
        "outputs": outputs,
    }


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": describe(spec.np_dtype), "shape": [-1, *spec.shape]}


def model_config(
    model: LoadedModel, engine: BatchProcessorConfig, settings: Settings
) -> dict[str, Any]:
    """``GET /v2/models/{name}/config``: the model and the live engine settings in the JSON
    form of Triton's ``model_config.proto``.

    Dims are per row (``-1`` variable); a row that is a scalar is ``[1]`` reshaped to ``[]``,
    as Triton writes it. The batcher: FIXED waits ``batch_timeout`` for company (the queue
    delay), the other strategies never wait; priorities 1-3 are HIGH, NORMAL (the default)
    and LOW; a request past its deadline is rejected, never run late.
    """
    allowed = model.execution.allowed_batch_sizes
    max_batch = min(engine.max_batch_size, max(allowed)) if allowed else engine.max_batch_size
    fixed = engine.processing_strategy is BatchProcessingStrategy.FIXED
    timeout_s = settings.request_timeout_s
    outputs = [_config_tensor(spec) for spec in model.outputs] or [
        {"name": name, "data_type": "TYPE_FP32", "dims": [-1]} for name in model.output_names
    ]
    return {
        "name": model.name,
        "platform": model.platform,
        "backend": SERVER_NAME,
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": max_batch,
        "input": [_config_tensor(spec) for spec in model.inputs],
        "output": outputs,
        "dynamic_batching": {
            "preferred_batch_size": list(allowed),
            "max_queue_delay_microseconds": round(engine.batch_timeout * _US) if fixed else 0,
            "preserve_ordering": False,
            "priority_levels": PRIORITY_LEVELS,
            "default_priority_level": DEFAULT_PRIORITY_LEVEL,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(timeout_s * _US) if timeout_s else 0,
                "allow_timeout_override": True,
                "max_queue_size": engine.max_queue_size,
            },
        },
        "instance_group": [
            {"name": f"{model.name}_0", "kind": "KIND_CPU", "count": _instances(engine)}
        ],
    }


def _instances(engine: BatchProcessorConfig) -> int:
    count = getattr(engine, "instances", 1)
    return count if isinstance(count, int) else 1


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    datatype = datatype_of(spec.np_dtype)
    data_type = "TYPE_INVALID" if datatype is None else f"TYPE_{datatype}"
    if datatype == BYTES:
        data_type = "TYPE_STRING"
    tensor: dict[str, Any] = {"name": spec.name, "data_type": data_type}
    if spec.shape:
        tensor["dims"] = list(spec.shape)
    else:
        tensor["dims"] = [1]
        tensor["reshape"] = {"shape": []}
    return tensor
