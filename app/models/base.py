"""`LoadedModel`: the one shape every served model takes, whatever it was loaded from."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import BatchServeError, InvalidInput, ModelError, OutputMismatch
from .spec import Array, BatchFn, Execution, Tensors, TensorSpec
from .validation import check_row, shape_matches

#: The name of the single output of a model that declares none.
DEFAULT_OUTPUT_NAME = "output0"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to serve: a batch function plus what it declares about its tensors.

    ``predict_fn`` receives a batch (an array for a model with zero or one declared input, a
    dict by input name for a multi-input model; the batch dimension first) and may return an
    array, a dict by output name, or a tuple/list in declared output order. Empty ``inputs``
    means undeclared (any numeric row is accepted); empty ``outputs`` means one unnamed output,
    reported as ``"output0"``. Instances are immutable and safe to share between threads as
    long as ``predict_fn`` is. ``predict_fn`` must return new arrays on each call: rows of an
    output are delivered while the next batch runs.
    """

    name: str
    platform: str
    predict_fn: BatchFn
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    allow_non_finite: bool = False
    execution: Execution = field(default_factory=Execution)
    #: Makes a new, independent ``predict_fn`` (a model built by a factory): one per slot.
    factory: Callable[[], BatchFn] | None = None

    @property
    def multi_input(self) -> bool:
        """True when the model declares more than one input (rows and batches are dicts)."""
        return len(self.inputs) > 1

    @property
    def output_names(self) -> tuple[str, ...]:
        """Declared output names, or ``("output0",)`` when outputs are undeclared."""
        return tuple(spec.name for spec in self.outputs) or (DEFAULT_OUTPUT_NAME,)

    def validate_row(self, row: Tensors) -> Tensors:
        """Check one row (no batch dimension) against the declared inputs.

        Returns the row in canonical form (see `batchserve.models.validation.check_row`), cast to
        the declared dtypes. Raises `InvalidInput` with a message naming the input, e.g.
        ``input 'pixels': expected shape (64,), got (63,)``.
        """
        return check_row(self.inputs, row, self.allow_non_finite)

    def validate_rows(
        self, rows: list[Tensors], batch: Array | None = None, finite: bool = False
    ) -> list[Tensors]:
        """`validate_row` for every row of a request, in order.

        ``batch`` is the request's rows as one array when they came as one (``rows[i]`` is
        ``batch[i]``); ``finite`` says every number is already known to be finite. A
        single-input model then checks an already conforming batch once as a whole.
        """
        if batch is not None and finite and len(self.inputs) == 1:
            spec = self.inputs[0]
            if batch.dtype == spec.np_dtype and shape_matches(spec.shape, batch.shape[1:]):
                return rows
        return [self.validate_row(row) for row in rows]

    def instance_functions(self, count: int) -> list[Callable[[Tensors], Tensors]]:
        """`count` batch functions for `count` execution slots: a new model instance each
        when the model comes from a factory (the first is this one), else this model shared,
        its calls serialised by a lock when it declares ``thread_safe = False``."""
        if count > 1 and self.factory is not None:
            copies = [replace(self, predict_fn=self.factory()) for _ in range(count - 1)]
            return [self.predict_batch, *(copy.predict_batch for copy in copies)]
        if count > 1 and not self.execution.thread_safe:
            return [_serialised(self.predict_batch)] * count
        return [self.predict_batch] * count

    def predict_batch(self, batch: Tensors) -> Tensors:
        """Run the model on a batch of validated rows.

        Returns an array when the model declares at most one output, otherwise a dict holding
        exactly the declared outputs; every output has one row per input row. Raises
        `ModelError` (wrapping the cause) when the model raises, and `OutputMismatch` when the
        outputs break the declared names or the row count.
        """
        rows = batch_rows(batch)
        try:
            raw = self.predict_fn(batch)
        except BatchServeError:
            raise
        except BaseException as exc:  # a model's SystemExit is its own failure
            raise ModelError(f"model {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        result = self._shape_outputs(raw)
        arrays = result.values() if isinstance(result, dict) else (result,)
        for array in arrays:
            if array.ndim == 0 or array.shape[0] != rows:
                got = f"{array.shape[0]} rows" if array.ndim else "a scalar"
                raise OutputMismatch(f"model {self.name!r} returned {got} for a batch of {rows}")
        return result

    def warmup_row(self) -> Tensors | None:
        """A valid all-zero row (variable dims of size 1), or None when inputs are undeclared."""
        if not self.inputs:
            return None
        row = {spec.name: _zeros(spec) for spec in self.inputs}
        return row if self.multi_input else row[self.inputs[0].name]

    def _shape_outputs(self, raw: object) -> Tensors:
        names = [spec.name for spec in self.outputs]
        if isinstance(raw, Mapping):
            result = {str(key): self._to_array(value) for key, value in raw.items()}
            if not names:
                return result
            if sorted(result) != sorted(names):
                raise OutputMismatch(
                    f"model {self.name!r} returned outputs {sorted(result)}, declared {names}"
                )
            return result[names[0]] if len(names) == 1 else {n: result[n] for n in names}
        if len(names) > 1:
            if not isinstance(raw, tuple | list) or len(raw) != len(names):
                raise OutputMismatch(
                    f"model {self.name!r} declares outputs {names}; return a dict or a "
                    f"tuple of {len(names)} arrays"
                )
            return {n: self._to_array(v) for n, v in zip(names, raw, strict=True)}
        return self._to_array(raw)

    def _to_array(self, value: object) -> Array:
        try:
            return np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise ModelError(f"model {self.name!r} returned a non-array output: {exc}") from exc


def _serialised(fn: Callable[[Tensors], Tensors]) -> Callable[[Tensors], Tensors]:
    lock = threading.Lock()

    def one_at_a_time(batch: Tensors) -> Tensors:
        with lock:
            return fn(batch)

    return one_at_a_time


def batch_rows(batch: Tensors) -> int:
    """Number of rows in a batch.

    Raises `InvalidInput` if a tensor has no batch dimension or named inputs disagree.
    """
    tensors = batch if isinstance(batch, dict) else {"input": batch}
    if any(np.ndim(array) == 0 for array in tensors.values()):
        raise InvalidInput("every tensor of a batch needs a leading batch dimension")
    sizes = {name: len(array) for name, array in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInput(f"batch inputs have different row counts: {sizes}")
    return next(iter(sizes.values()), 0)


def _zeros(spec: TensorSpec) -> Array:
    shape = tuple(1 if dim == -1 else dim for dim in spec.shape)
    if spec.np_dtype.kind == "O":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.np_dtype)
