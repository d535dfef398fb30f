"""Parsed ``instances`` -> numpy rows in the model's input dtype.

Values that are not data are refused with ``InvalidInput`` naming where they sit: nulls or
objects among numbers, booleans mixed with numbers, ragged or too deeply nested lists. Casts
to the model's dtype follow the model contract's one policy
(`batchserve.models.validation.cast_checked`): ``1.0`` for an integer model is accepted,
``1.5`` and numbers out of range are refused, on every route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np
from numpy.typing import NDArray

from ...errors import InvalidInput, MalformedRequest, TooManyItems
from ...models.validation import cast_checked
from .bounds import CHUNK, as_array
from .tensors import (
    MAX_NESTING,
    TensorStyle,
    binary_array,
    msgpack_numpy_array,
    tensor_fields,
)

Array: TypeAlias = NDArray[Any]
Row: TypeAlias = NDArray[Any] | dict[str, NDArray[Any]]

_KIND_NAMES: Final = {
    "b": "booleans",
    "i": "integers",
    "u": "integers",
    "f": "floating-point numbers",
    "c": "complex numbers",
    "U": "strings",
    "S": "bytes",
}
_NOT_NUMBERS: Final = "values that are not numbers (null, objects, mixed types or huge integers)"


@dataclass(slots=True)
class RowDecoder:
    """Turns parsed instances into rows and remembers the tensor style it met (``whole`` for a
    msgpack tensor map of all rows, ``rows`` for a list of instances)."""

    target: np.dtype[Any] | None
    tensors: bool  # maps may be binary or msgpack-numpy tensors (msgpack bodies)
    may_hold_bool: bool
    numbers_only: bool  # the instances hold only numbers and lists (a JSON fast path)
    style: TensorStyle = TensorStyle.LISTS

    def whole(self, instances: dict[Any, Any], max_rows: int) -> tuple[list[Row], Array]:
        fields = tensor_fields(instances)
        if fields is None:
            raise MalformedRequest("'instances' map is not a tensor (dtype, shape, data)")
        batch = self.tensor(fields, "'instances'")
        if batch.ndim == 0 or len(batch) == 0:
            raise InvalidInput("'instances' must be a non-empty list (a tensor with rows)")
        if len(batch) > max_rows:
            raise TooManyItems(f"{len(batch)} rows can never fit: max_queue_size={max_rows}")
        return _split(batch), batch

    def rows(self, instances: list[Any]) -> tuple[list[Row], Array | None]:
        if type(instances[0]) is not dict:
            batch = self.array_or_none(instances, "'instances'")
            if batch is not None:
                return _split(batch), batch
        elif (named := self.named_columns(instances)) is not None:
            return named, None
        rows = [self.row(item, f"instance {i}") for i, item in enumerate(instances)]
        if len({type(row) for row in rows}) > 1:
            raise InvalidInput("'instances' mix named inputs (objects) with plain arrays")
        return rows, None

    def named_columns(self, instances: list[Any]) -> list[Row] | None:
        """Rows of named inputs converted one column at a time; None unless all alike."""
        first: dict[Any, Any] = instances[0]
        if not first or (self.tensors and tensor_fields(first) is not None):
            return None
        keys = first.keys()
        if any(type(row) is not dict or row.keys() != keys for row in instances):
            return None
        if any(type(value) is dict for value in first.values()):
            return None
        columns: dict[str, Array] = {}
        for key in keys:
            name = _input_name(key, "instance 0")
            column = self.array_or_none([row[key] for row in instances], f"input {name!r}")
            if column is None:
                return None
            columns[name] = column
        return [{name: col[i, ...] for name, col in columns.items()} for i in range(len(instances))]

    def row(self, item: Any, where: str) -> Row:
        if type(item) is not dict:
            return self.array(item, where)
        fields = tensor_fields(item) if self.tensors else None
        if fields is not None:
            return self.tensor(fields, where)
        if not item:
            raise InvalidInput(f"{where} is an empty object")
        row: dict[str, Array] = {}
        for key, value in item.items():
            name = _input_name(key, where)
            row[name] = self.value(value, f"{where} input {name!r}")
        return row

    def value(self, item: Any, where: str) -> Array:
        if type(item) is not dict:
            return self.array(item, where)
        fields = tensor_fields(item) if self.tensors else None
        if fields is None:
            raise InvalidInput(f"{where} must be an array, not an object")
        return self.tensor(fields, where)

    def array(self, values: Any, where: str) -> Array:
        arr = self.array_or_none(values, where)
        if arr is None:
            raise InvalidInput(f"{where} is ragged: nested lists of different lengths")
        return arr

    def array_or_none(self, values: Any, where: str) -> Array | None:
        """``values`` as one ndarray in the target dtype, or None if they are ragged."""
        check_nesting(values, where)
        try:
            arr = self._convert(values)
        except ValueError:
            return None
        except (OverflowError, FloatingPointError) as exc:
            model = "the model" if self.target is None else self.target.name
            raise InvalidInput(f"{where} holds a number out of range for {model}") from exc
        if self.may_hold_bool and arr.dtype.kind in "iuf" and holds_bool(values, arr):
            raise InvalidInput(f"{where} mixes booleans with numbers")
        return _coerce(arr, self.target, where)

    def _convert(self, values: Any) -> Array:
        target = self.target
        if self.numbers_only and target is not None and target.kind == "f":
            try:
                with np.errstate(over="raise"):
                    return as_array(values, target)
            except TypeError:
                pass  # an object such as {} sits among the numbers: inferred as such below
        return as_array(values)

    def tensor(self, fields: dict[str, Any], where: str) -> Array:
        if "nd" in fields:
            arr, style = msgpack_numpy_array(fields, where), TensorStyle.MSGPACK_NUMPY
        else:
            arr, style = binary_array(fields, where), TensorStyle.BINARY
        if self.style is TensorStyle.LISTS:
            self.style = style
        return _coerce(arr, self.target, where)


def _split(batch: Array) -> list[Row]:
    if batch.ndim > 1:
        return list(batch)
    return [batch[i, ...] for i in range(len(batch))]  # 0-d views, not numpy scalars


def check_nesting(values: Any, where: str) -> None:
    """Refuse nesting deeper than MAX_NESTING along the first path.

    Rectangular data is as deep on every path; deeper paths elsewhere make it ragged, which
    numpy reports without recursing far.
    """
    node, depth = values, 0
    while type(node) is list:
        depth += 1
        if depth > MAX_NESTING:
            raise InvalidInput(f"{where} is nested deeper than {MAX_NESTING} levels")
        if not node:
            return
        node = node[0]


def holds_bool(values: Any, arr: Array) -> bool:
    """Whether ``values`` hold a bool among numbers (numpy silently reads True as 1)."""
    if not (np.any(arr == 0) or np.any(arr == 1)):
        return False  # a bool always lands on 0 or 1
    if type(values) is not list:
        return type(values) is bool
    pending = [values]
    while pending:
        seq = pending.pop()
        for start in range(0, len(seq), CHUNK):  # in slices: the GIL is free between them
            part = seq[start : start + CHUNK]
            types = set(map(type, part))
            if bool in types:
                return True
            if list in types:
                pending.extend(x for x in part if type(x) is list)
    return False


def _coerce(arr: Array, target: np.dtype[Any] | None, where: str) -> Array:
    """``arr`` in the ``target`` dtype under the model contract's cast policy
    (`batchserve.models.validation.cast_checked`), after refusing what is not data at all."""
    kind = arr.dtype.kind
    if kind not in "biufcU":
        raise InvalidInput(f"{where} holds {_KIND_NAMES.get(kind, _NOT_NUMBERS)}")
    if target is None or arr.dtype == target:
        return arr
    return cast_checked(where, arr, target)


def _input_name(key: Any, where: str) -> str:
    if type(key) is str:
        return key
    if type(key) is bytes:
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    raise InvalidInput(f"{where} has an input name that is not UTF-8 text")
