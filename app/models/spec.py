"""Tensor declarations: what a model takes and returns, one row at a time.

A `TensorSpec` describes one named tensor *per row* (the batch dimension is never part of
it). `specs_from_object` reads the declarations a user model carries as attributes; the forms
it accepts are documented in `batchserve.models`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ..errors import ModelLoadError

Array: TypeAlias = npt.NDArray[Any]
#: One row or one batch: a single array (single-input model) or arrays by input name.
Tensors: TypeAlias = Array | dict[str, Array]
#: The callable a model is reduced to: a batch in, a batch out (array, dict, tuple or list).
BatchFn: TypeAlias = Callable[[Tensors], object]

# Kinds numpy can represent but batchserve cannot carry over the wire.
_UNSUPPORTED_KINDS = frozenset("VMm")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named tensor of a model, per row.

    ``shape`` excludes the batch dimension; ``-1`` marks a variable dimension. ``dtype`` is a
    numpy dtype name and is normalised on construction ("f4" -> "float32", any unicode string
    type -> "str", any bytes type -> "bytes"). ``pad``, on an input with variable dimensions,
    is the value rows are padded with so that rows of different lengths batch together.
    Raises ``ValueError`` on a bad name, shape, dtype or pad.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    pad: float | int | bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"tensor name must be a non-empty string, got {self.name!r}")
        if self.pad is not None:
            if -1 not in self.shape:
                raise ValueError(f"tensor {self.name!r}: pad needs a variable dimension (-1)")
            if not isinstance(self.pad, int | float | bool):
                raise ValueError(f"tensor {self.name!r}: pad must be a number, got {self.pad!r}")
        # Frozen: normalising needs object.__setattr__, which is what dataclasses do too.
        object.__setattr__(self, "shape", _normalise_shape(self.name, self.shape))
        object.__setattr__(self, "dtype", _normalise_dtype(self.name, self.dtype))

    @property
    def np_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this tensor."""
        return _dtype(self.dtype)


@functools.lru_cache(maxsize=64)
def _dtype(name: str) -> np.dtype[Any]:
    # Checked per request row: building a dtype from its name costs more than the lookup.
    return np.dtype(name)


def _normalise_shape(name: str, shape: object) -> tuple[int, ...]:
    if isinstance(shape, str | bytes) or not isinstance(shape, Sequence):
        raise ValueError(f"tensor {name!r}: shape must be a sequence of ints, got {shape!r}")
    dims: list[int] = []
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < -1:
            raise ValueError(f"tensor {name!r}: dims must be ints >= -1, got {shape!r}")
        dims.append(int(dim))
    return tuple(dims)


def _normalise_dtype(name: str, dtype: object) -> str:
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise ValueError(f"tensor {name!r}: dtype is required")
    try:
        resolved: np.dtype[Any] = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ValueError(f"tensor {name!r}: unknown dtype {dtype!r}") from exc
    if resolved.kind in _UNSUPPORTED_KINDS:
        raise ValueError(f"tensor {name!r}: unsupported dtype {resolved.name!r}")
    if resolved.kind == "U":
        return "str"
    if resolved.kind == "S":
        return "bytes"
    return resolved.name


def parse_specs(value: object, what: str) -> tuple[TensorSpec, ...]:
    """Parse a sequence of `TensorSpec` or ``{"name", "shape", "dtype"}`` mappings.

    ``what`` ("inputs" / "outputs") only labels error messages. Raises `ModelLoadError` on a
    malformed entry or a duplicated name.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ModelLoadError(f"model {what} must be a sequence of tensor specs, got {value!r}")
    specs = tuple(_parse_one(item, what) for item in value)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ModelLoadError(f"model {what} repeat a name: {names}")
    return specs


def _parse_one(item: object, what: str) -> TensorSpec:
    if isinstance(item, TensorSpec):
        return item
    if not isinstance(item, Mapping):
        raise ModelLoadError(f"each of the model {what} must be a TensorSpec or a dict: {item!r}")
    missing = {"name", "shape", "dtype"} - set(item)
    if missing:
        raise ModelLoadError(f"a model {what} entry lacks {sorted(missing)}: {dict(item)!r}")
    try:
        return TensorSpec(item["name"], item["shape"], item["dtype"], item.get("pad"))
    except ValueError as exc:
        raise ModelLoadError(f"bad model {what} entry: {exc}") from exc


def specs_from_object(
    *sources: object,
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], bool]:
    """Read ``(inputs, outputs, allow_non_finite)`` declared on the first source that has each.

    Sources are searched in order per attribute, so a factory's product can override the
    factory. Raises `ModelLoadError` on malformed or conflicting declarations.
    """

    lookup = functools.partial(_declared, sources)

    inputs = _declared_inputs(lookup)
    outputs = _declared_outputs(lookup)
    allow_non_finite = lookup("allow_non_finite")
    if allow_non_finite is None:
        allow_non_finite = False
    if not isinstance(allow_non_finite, bool):
        raise ModelLoadError(f"allow_non_finite must be a bool, got {allow_non_finite!r}")
    return inputs, outputs, allow_non_finite


def _declared_inputs(lookup: Callable[[str], Any]) -> tuple[TensorSpec, ...]:
    long_form, shape, dtype = lookup("inputs"), lookup("input_shape"), lookup("input_dtype")
    if long_form is not None:
        if shape is not None or dtype is not None:
            raise ModelLoadError("declare either `inputs` or `input_shape`/`input_dtype`, not both")
        return parse_specs(long_form, "inputs")
    if shape is None:
        if dtype is not None:
            raise ModelLoadError("`input_dtype` needs `input_shape` to declare an input")
        return ()
    name = lookup("input_name") or "input0"
    try:
        return (TensorSpec(name, shape, dtype or "float32", lookup("pad_value")),)
    except ValueError as exc:
        raise ModelLoadError(f"bad input declaration: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Execution:
    """How a model wants to be run, beyond its tensors (attributes, all optional):

    - ``allowed_batch_sizes``: the batch sizes it accepts; batches are padded up to the next;
    - ``length_buckets``: lengths a padded (variable-length) input is padded to, the smallest
      that fits the batch's longest row;
    - ``lengths_input``: a name under which the batch carries the rows' true lengths;
    - ``thread_safe`` (default True): False keeps one call at a time on a shared model.
    """

    allowed_batch_sizes: tuple[int, ...] = ()
    length_buckets: tuple[int, ...] = ()
    lengths_input: str | None = None
    thread_safe: bool = True


def _declared(sources: Sequence[object], attr: str) -> Any:
    """`attr` of the first source that sets it (not None), else None."""
    for source in sources:
        value = getattr(source, attr, None)
        if value is not None:
            return value
    return None


def execution_from_object(*sources: object) -> Execution:
    """The `Execution` attributes declared on the first source that has each; raises
    `ModelLoadError` for malformed ones."""

    lookup = functools.partial(_declared, sources)

    thread_safe = lookup("thread_safe")
    if thread_safe is not None and not isinstance(thread_safe, bool):
        raise ModelLoadError(f"thread_safe must be a bool, got {thread_safe!r}")
    lengths_input = lookup("lengths_input")
    if lengths_input is not None and (not isinstance(lengths_input, str) or not lengths_input):
        raise ModelLoadError(f"lengths_input must be a name, got {lengths_input!r}")
    return Execution(
        allowed_batch_sizes=sizes(lookup("allowed_batch_sizes"), "allowed_batch_sizes"),
        length_buckets=sizes(lookup("length_buckets"), "length_buckets"),
        lengths_input=lengths_input,
        thread_safe=True if thread_safe is None else thread_safe,
    )


def sizes(value: object, what: str) -> tuple[int, ...]:
    """A declaration of positive sizes as a sorted tuple without repeats."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ModelLoadError(f"{what} must be a non-empty sequence of ints, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in value):
        raise ModelLoadError(f"{what} must hold positive ints, got {value!r}")
    return tuple(sorted({int(v) for v in value}))


def _declared_outputs(lookup: Callable[[str], Any]) -> tuple[TensorSpec, ...]:
    long_form, names = lookup("outputs"), lookup("output_names")
    if long_form is not None:
        if names is not None:
            raise ModelLoadError("declare either `outputs` or `output_names`, not both")
        return parse_specs(long_form, "outputs")
    if names is None:
        return ()
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ModelLoadError(f"output_names must be a sequence of str, got {names!r}")
    # Names alone say nothing of shape or dtype: describe each as a float32 vector.
    return parse_specs([{"name": n, "shape": (-1,), "dtype": "float32"} for n in names], "outputs")
