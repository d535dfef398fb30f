"""The served model as the V2 protocol sees it: lookup by name and version, and metadata."""

from __future__ import annotations

from typing import Any, Final

from ... import __version__
from ...errors import ModelNotFound, NotReady
from ...models import LoadedModel, TensorSpec
from ..state import ServiceState
from ..wire.datatypes import describe

SERVER_NAME: Final = "batchserve"
EXTENSIONS: Final = ("binary_tensor_data", "schedule_policy")
MODEL_VERSION: Final = "1"
#: How outputs a model does not declare are described (their real dtype shows in responses).
UNDECLARED_OUTPUT: Final = {"datatype": "FP32", "shape": [-1, -1]}


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: name, version and the protocol extensions this server implements."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


def find_model(state: ServiceState, name: str, version: str | None) -> LoadedModel:
    """The served model if ``name`` (and ``version``, when given) name it.

    Raises `NotReady` while no model is loaded and `ModelNotFound` for another name or a
    version other than ``"1"``.
    """
    model = state.model
    if model is None:
        raise NotReady("the model is still loading")
    if name != model.name:
        raise ModelNotFound(f"unknown model {name[:100]!r}; this server serves {model.name!r}")
    if version is not None and version != MODEL_VERSION:
        raise ModelNotFound(
            f"model {name!r} has no version {version[:20]!r}; it serves version {MODEL_VERSION}"
        )
    return model


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """``GET /v2/models/{name}``: tensors with ``-1`` for the batch dimension.

    A model with undeclared inputs lists none (it takes one input of any name and numeric
    datatype); undeclared outputs are listed as one FP32 ``output0``.
    """
    outputs = [_tensor(spec) for spec in model.outputs] or [
        {"name": name, **UNDECLARED_OUTPUT} for name in model.output_names
    ]
    return {
        "name": model.name,
        "versions": [MODEL_VERSION],
        "platform": model.platform,
        "inputs": [_tensor(spec) for spec in model.inputs],
        "outputs": outputs,
    }


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": describe(spec.np_dtype), "shape": [-1, *spec.shape]}
