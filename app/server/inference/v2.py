"""The V2 dialect (Open Inference Protocol, Triton-compatible): ``POST
/v2/models/{name}[/versions/{version}]/infer``.

A request's tensors carry the batch dimension first. Each row becomes one engine item (a dict
by input name for a multi-input model), validated before anything is queued, so V2 rows are
batched together with ``/predict`` rows. Results come back row by row and are stacked into
whole-batch outputs again. Priority and timeout follow `batchserve.server.inference.policy`.
Every refused request is 400 and a full queue 503 (`batchserve.server.errors`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from ...errors import InvalidInput, ModelError
from ...models import LoadedModel, TensorSpec
from ...models.spec import Array, Tensors
from ...models.validation import shape_matches
from ..errors import Column, to_reply
from ..state import ServiceState
from ..wire.bounds import Body, DecodeLimits
from ..wire.datatypes import datatype_of
from ..wire.v2 import (
    HEADER_LENGTH,
    JSON_TYPE,
    InferRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    decode_raw,
    decode_request,
    decompress,
    encode_response,
    header_length,
)
from .exchange import Reply, RequestHead, Submission
from .policy import schedule_policy
from .v2_models import find_model

INFER_ROUTE: Final = "/v2/models/{model_name}/infer"
VERSION_INFER_ROUTE: Final = "/v2/models/{model_name}/versions/{model_version}/infer"


def infer_params(path: str) -> tuple[str, ...] | None:
    """``(name, version)`` (version "" when absent) of an inference path, else None."""
    if not path.startswith("/v2/models/") or not path.endswith("/infer"):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return (parts[0], "")
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return (parts[0], parts[2])
    return None


class V2Dialect:
    """Decodes V2 inference requests for the service's model (see `Dialect`)."""

    route = INFER_ROUTE

    def __init__(self, state: ServiceState, limits: DecodeLimits) -> None:
        self._state = state
        self._limits = limits

    def decode(self, head: RequestHead, body: Body) -> Submission:
        """Decode and validate the request; raises `batchserve.errors` types, before anything
        is queued."""
        name, version = head.params
        model = find_model(self._state, name, version or None)
        _, processor = self._state.serving()
        settings = self._state.settings
        headers = head.headers
        body = decompress(body, headers.get("content-encoding"), settings.max_body_bytes)
        length = header_length(headers.get(HEADER_LENGTH), len(body))
        if length == 0:
            request = decode_raw(body, model.inputs[0] if len(model.inputs) == 1 else None)
        else:
            request = decode_request(body, length, self._limits)
        if request.parameters.get("sequence_id", 0) not in (0, ""):
            raise InvalidInput("sequence_id is not supported: the model is not stateful")
        priority, timeout = schedule_policy(request.parameters, headers, settings)
        _check_requested_outputs(model, request)
        rows = request_rows(model, request.inputs)
        encode = functools.partial(_reply, model, str(self._state.version), request)
        return Submission(processor, rows, priority, timeout, encode)

    def error(self, exc: BaseException, request_id: str) -> Reply:
        """A V2 error reply."""
        err = to_reply(exc, request_id, Column.V2)
        return Reply(err.status, err.body, JSON_TYPE, list(err.headers))


def _reply(model: LoadedModel, version: str, request: InferRequest, results: list[Any]) -> Reply:
    head: dict[str, Any] = {"model_name": model.name, "model_version": version}
    if request.id is not None:
        head["id"] = request.id
    payload, content_type, extra = encode_response(head, collect_outputs(model, request, results))
    return Reply(200, payload, content_type, extra)


def _check_requested_outputs(model: LoadedModel, request: InferRequest) -> None:
    if request.outputs is None or not model.outputs:
        return  # undeclared outputs are only known once the model has answered
    for out in request.outputs:
        if out.name not in model.output_names:
            raise _unknown_output(out.name, model.output_names)


def _unknown_output(name: str, known: Sequence[str]) -> InvalidInput:
    return InvalidInput(f"unknown output {name!r}; the model returns {', '.join(map(repr, known))}")


def request_rows(model: LoadedModel, inputs: Mapping[str, InputTensor]) -> list[Tensors]:
    """One validated engine item per row of the batch (see the module docstring).

    Raises `InvalidInput` for a missing or unknown input, a datatype or shape that does not
    match the model's declaration, inputs with different batch sizes, or an empty batch.
    """
    if not model.inputs:
        if len(inputs) != 1:
            raise InvalidInput(f"the model takes one input; got {len(inputs)}")
        arrays = {key: tensor.array for key, tensor in inputs.items()}
    else:
        _check_names(model.inputs, inputs)
        arrays = {spec.name: _conform(spec, inputs[spec.name]) for spec in model.inputs}
    rows = _batch_size(arrays)
    if model.multi_input:
        return [model.validate_row({n: a[i] for n, a in arrays.items()}) for i in range(rows)]
    (array,) = arrays.values()
    return [model.validate_row(array[i]) for i in range(rows)]


def _check_names(specs: Sequence[TensorSpec], inputs: Mapping[str, InputTensor]) -> None:
    expected = [spec.name for spec in specs]
    missing = [name for name in expected if name not in inputs]
    unknown = [name for name in inputs if name not in expected]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if unknown:
            problems.append(f"unknown input(s) {', '.join(repr(n[:100]) for n in unknown[:8])}")
        takes = ", ".join(map(repr, expected))
        raise InvalidInput(f"{'; '.join(problems)}; the model takes {takes}")


def _conform(spec: TensorSpec, tensor: InputTensor) -> Array:
    where = f"input {spec.name!r}"
    expected = datatype_of(spec.np_dtype)
    if expected is None:
        raise InvalidInput(f"{where}: the model's dtype {spec.dtype} has no V2 datatype")
    if tensor.datatype != expected:
        raise InvalidInput(
            f"{where}: datatype {tensor.datatype} does not match the model's {expected}"
        )
    array, declared = tensor.array, [-1, *spec.shape]
    if array.ndim != len(declared) or not shape_matches(spec.shape, array.shape[1:]):
        raise InvalidInput(
            f"{where}: shape {list(array.shape)} does not match the model's {declared}"
        )
    if spec.np_dtype.kind == "U":
        return _as_text(array, where)
    return array


def _as_text(array: Array, where: str) -> Array:
    try:
        text = [item.decode("utf-8") for item in array.reshape(-1).tolist()]
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: the model takes text; got bytes that are not UTF-8") from None
    out = np.empty(len(text), dtype=object)
    out[:] = text
    return out.reshape(array.shape)


def _batch_size(arrays: Mapping[str, Array]) -> int:
    if any(array.ndim == 0 for array in arrays.values()):
        raise InvalidInput("every input needs a batch dimension: shape [batch, ...]")
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInput(f"inputs disagree on the batch size: {sizes}")
    rows = next(iter(sizes.values()))
    if rows == 0:
        raise InvalidInput("the batch is empty: the first dimension must be at least 1")
    return rows


def collect_outputs(
    model: LoadedModel, request: InferRequest, results: Sequence[Any]
) -> list[OutputTensor]:
    """The requested outputs (default: all, in the model's order), rows stacked again."""
    arrays = _stack_outputs(model, results)
    wanted = request.outputs or tuple(_default(name) for name in arrays)
    outputs = []
    for out in wanted:
        if out.name not in arrays:
            raise _unknown_output(out.name, list(arrays))
        binary = request.binary_output if out.binary is None else out.binary
        outputs.append(OutputTensor(out.name, arrays[out.name], binary))
    return outputs


def _default(name: str) -> RequestedOutput:
    return RequestedOutput(name, None)


def _stack_outputs(model: LoadedModel, results: Sequence[Any]) -> dict[str, Array]:
    first = results[0]
    if isinstance(first, dict):
        return {name: _stack([row[name] for row in results], name) for name in first}
    name = model.output_names[0]
    return {name: _stack(results, name)}


def _stack(rows: Sequence[Any], name: str) -> Array:
    arrays = [np.asarray(row) for row in rows]
    try:
        return np.stack(arrays)
    except ValueError:
        shapes = sorted({array.shape for array in arrays})
        raise ModelError(
            f"output {name!r}: the rows of one request came back with different shapes {shapes}"
        ) from None
