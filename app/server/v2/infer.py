"""``POST /v2/models/{name}/infer``: decode, split into rows, batch, reassemble, encode.

A request's tensors carry the batch dimension first. Each row becomes one engine item (a dict
by input name for a multi-input model), validated before anything is queued, so V2 rows are
batched together with ``/predict`` rows. Results come back row by row and are stacked into
whole-batch outputs again.

Schedule policy (request ``parameters``, Triton's extension): ``priority`` 0 means the
default (the ``X-Priority`` header, else NORMAL), 1 is HIGH, 2 is NORMAL and 3 or more is
LOW. ``timeout`` is in microseconds, 0 meaning the default (``X-Request-Timeout-Seconds``,
else ``request_timeout_s``); it is the item's deadline in the queue and the wait for the
answer, at most ``max_request_timeout_s``. A parameter, when given, wins over its header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from ...batching import BatchPriority
from ...config import Settings
from ...errors import InvalidInput, ModelError
from ...models import LoadedModel, TensorSpec
from ...models.spec import Array, Tensors
from ..predict import (
    PRIORITY_HEADER,
    TIMEOUT_HEADER,
    Reply,
    parse_priority,
    parse_timeout,
)
from ..state import ServiceState
from ..waiting import Receive, await_results
from .codec import (
    HEADER_LENGTH,
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
from .datatypes import datatype_of
from .models import MODEL_VERSION, find_model

#: Triton priority level -> engine priority (0 = default, handled separately).
PRIORITY_LEVELS: Final = {1: BatchPriority.HIGH, 2: BatchPriority.NORMAL}
_US_PER_S: Final = 1_000_000


async def handle_infer(
    state: ServiceState,
    name: str,
    version: str | None,
    body: bytes,
    headers: Mapping[str, str],
    receive: Receive | None,
) -> Reply:
    """Answer one inference request; raises `batchserve.errors` types for every failure."""
    model = find_model(state, name, version)
    _, processor = state.serving()
    settings = state.settings
    body = decompress(body, headers.get("content-encoding"), settings.max_body_bytes)
    length = header_length(headers.get(HEADER_LENGTH), len(body))
    if length == 0:
        request = decode_raw(body, model.inputs[0] if len(model.inputs) == 1 else None)
    else:
        request = decode_request(body, length)
    if request.parameters.get("sequence_id", 0) not in (0, ""):
        raise InvalidInput("sequence_id is not supported: the model is not stateful")
    priority, timeout = schedule_policy(request.parameters, headers, settings)
    _check_requested_outputs(model, request)
    rows = request_rows(model, request.inputs)
    gathering = processor.enqueue_async(rows, priority=priority, item_timeout=timeout)
    results = await await_results(gathering, receive, timeout)
    head: dict[str, Any] = {"model_name": model.name, "model_version": MODEL_VERSION}
    if request.id is not None:
        head["id"] = request.id
    payload, content_type, extra = encode_response(head, collect_outputs(model, request, results))
    return Reply(200, payload, content_type, extra)


def schedule_policy(
    params: Mapping[str, Any], headers: Mapping[str, str], settings: Settings
) -> tuple[BatchPriority, float | None]:
    """``(engine priority, timeout in seconds)`` from the parameters and headers (module doc).

    Raises `InvalidInput` or `MalformedRequest` for values out of range.
    """
    level = _natural(params, "priority")
    if level == 0:
        priority = parse_priority(headers.get(PRIORITY_HEADER))
    else:
        priority = PRIORITY_LEVELS.get(level, BatchPriority.LOW)
    micros = _natural(params, "timeout")
    limit = settings.max_request_timeout_s
    if micros == 0:
        timeout = parse_timeout(headers.get(TIMEOUT_HEADER), settings.request_timeout_s, limit)
    else:
        timeout = micros / _US_PER_S
        if timeout > limit:
            raise InvalidInput(f"parameter 'timeout' exceeds the limit of {limit:g} s")
    return priority, timeout


def _natural(params: Mapping[str, Any], key: str) -> int:
    value = params.get(key, 0)
    if type(value) is not int or value < 0:
        raise InvalidInput(f"parameter {key!r} must be a non-negative integer")
    return value


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
        problem = f"missing input {missing[0]!r}" if missing else f"unknown input {unknown[0]!r}"
        raise InvalidInput(f"{problem}; the model takes {', '.join(map(repr, expected))}")


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
    if array.ndim != len(declared) or any(
        want not in (-1, got) for want, got in zip(declared, array.shape, strict=True)
    ):
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
