"""LoadedModel.validate_row: every request row is checked before it is queued."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchserve.errors import InvalidInput
from batchserve.models import LoadedModel, TensorSpec
from tests.models.support import as_array


def _model(*inputs: TensorSpec, allow_non_finite: bool = False) -> LoadedModel:
    return LoadedModel(
        name="m",
        platform="test",
        predict_fn=lambda batch: batch,
        inputs=inputs,
        allow_non_finite=allow_non_finite,
    )


PIXELS = _model(TensorSpec("pixels", (64,), "float32"))


def test_wrong_length_names_the_input_and_both_shapes() -> None:
    with pytest.raises(InvalidInput) as excinfo:
        PIXELS.validate_row(np.zeros(63, dtype=np.float32))
    assert str(excinfo.value) == "input 'pixels': expected shape (64,), got (63,)"


def test_wrong_rank_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"expected shape \(64,\), got \(1, 64\)"):
        PIXELS.validate_row(np.zeros((1, 64), dtype=np.float32))


def test_variable_dims_accept_any_size() -> None:
    model = _model(TensorSpec("x", (-1, 3), "float32"))
    assert as_array(model.validate_row(np.zeros((5, 3), dtype=np.float32))).shape == (5, 3)
    with pytest.raises(InvalidInput, match=r"expected shape \(-1, 3\), got \(5, 4\)"):
        model.validate_row(np.zeros((5, 4), dtype=np.float32))


@pytest.mark.parametrize("source", [np.int64, np.float64, np.int32, np.uint8])
def test_json_numbers_are_cast_to_declared_float32(source: Any) -> None:
    row = PIXELS.validate_row(np.ones(64, dtype=source))
    assert isinstance(row, np.ndarray)
    assert row.dtype == np.float32
    assert np.all(row == 1)


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(InvalidInput, match="expected float32, got bool"):
        PIXELS.validate_row(np.ones(64, dtype=np.bool_))


def test_python_lists_are_accepted() -> None:
    row = PIXELS.validate_row([1] * 64)  # type: ignore[arg-type]
    assert isinstance(row, np.ndarray)
    assert row.dtype == np.float32


def test_float64_overflowing_float32_is_refused() -> None:
    with pytest.raises(InvalidInput, match="out of range for float32"):
        PIXELS.validate_row(np.full(64, 1e300))


@pytest.mark.parametrize(
    ("row", "got"),
    [
        (np.array(["1"] * 64), "str"),
        (np.array([b"1"] * 64), "bytes"),
        (np.array([1] * 64, dtype=object), "object"),
    ],
)
def test_non_numeric_values_are_refused_for_numeric_inputs(row: Any, got: str) -> None:
    with pytest.raises(InvalidInput, match=f"input 'pixels': expected float32, got {got}"):
        PIXELS.validate_row(row)


def test_ragged_values_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not a rectangular array"):
        PIXELS.validate_row([[1, 2], [3]])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_by_default(bad: float) -> None:
    row = np.zeros(64)
    row[3] = bad
    with pytest.raises(InvalidInput, match="NaN or Inf"):
        PIXELS.validate_row(row)


def test_non_finite_values_pass_when_the_model_allows_them() -> None:
    model = _model(TensorSpec("x", (2,), "float32"), allow_non_finite=True)
    row = model.validate_row(np.array([np.nan, np.inf]))
    assert isinstance(row, np.ndarray)
    assert np.isnan(row[0])
    assert np.isinf(row[1])


INT64 = _model(TensorSpec("ids", (3,), "int64"))


def test_integral_floats_are_cast_to_integers() -> None:
    row = INT64.validate_row(np.array([1.0, -2.0, 3.0]))
    assert isinstance(row, np.ndarray)
    assert row.dtype == np.int64
    assert row.tolist() == [1, -2, 3]


@pytest.mark.parametrize("values", [[1.5, 2.0, 3.0], [np.nan, 1.0, 2.0], [1e30, 0.0, 0.0]])
def test_lossy_float_to_integer_casts_are_refused(values: list[float]) -> None:
    with pytest.raises(InvalidInput, match="input 'ids'"):
        INT64.validate_row(np.array(values))


def test_integers_out_of_range_of_a_narrow_type_are_refused() -> None:
    model = _model(TensorSpec("b", (2,), "uint8"))
    row = model.validate_row(np.array([0, 255]))
    assert isinstance(row, np.ndarray)
    assert row.dtype == np.uint8
    for values in ([0, 256], [-1, 0]):
        with pytest.raises(InvalidInput, match="out of range for uint8"):
            model.validate_row(np.array(values))


def test_complex_values_are_refused_for_real_inputs() -> None:
    with pytest.raises(InvalidInput, match="expected float32, got complex128"):
        PIXELS.validate_row(np.zeros(64, dtype=np.complex128))


def test_bool_inputs_take_only_bools() -> None:
    model = _model(TensorSpec("mask", (2,), "bool"))
    assert as_array(model.validate_row(np.array([True, False]))).dtype == np.bool_
    with pytest.raises(InvalidInput, match="expected bool, got int64"):
        model.validate_row(np.array([1, 0]))


def test_string_inputs_take_text_and_object_inputs_take_anything() -> None:
    text = _model(TensorSpec("t", (), "str"))
    assert as_array(text.validate_row(np.array("hello"))).dtype.kind == "U"
    with pytest.raises(InvalidInput, match="expected str, got int64"):
        text.validate_row(np.array(3))
    anything = _model(TensorSpec("o", (2,), "object"))
    assert as_array(anything.validate_row(np.array([1, 2]))).dtype == object


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=3, max_size=3))
def test_integral_floats_in_range_always_cast_exactly(values: list[int]) -> None:
    model = _model(TensorSpec("x", (3,), "int32"))
    row = model.validate_row(np.array(values, dtype=np.float64))
    assert isinstance(row, np.ndarray)
    assert row.tolist() == values


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != int(v)))
def test_fractional_floats_never_reach_an_integer_input(value: float) -> None:
    with pytest.raises(InvalidInput):
        INT64.validate_row(np.array([value, 0.0, 0.0]))


MULTI = _model(TensorSpec("a", (2,), "float32"), TensorSpec("b", (), "int64"))


def test_multi_input_rows_are_dicts_cast_per_input() -> None:
    row = MULTI.validate_row({"b": np.array(7), "a": np.array([1.0, 2.0])})
    assert isinstance(row, dict)
    assert list(row) == ["a", "b"]
    assert row["a"].dtype == np.float32
    assert row["b"].dtype == np.int64


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"a": np.zeros(2)}, "missing input\\(s\\) 'b'; expected 'a', 'b'"),
        (
            {"a": np.zeros(2), "b": np.array(1), "c": np.array(1)},
            "unknown input\\(s\\) 'c'; expected 'a', 'b'",
        ),
        (np.zeros(2), "named inputs 'a', 'b'; got a single unnamed tensor"),
        ({"a": np.zeros(3), "b": np.array(1)}, "input 'a': expected shape \\(2,\\), got \\(3,\\)"),
    ],
)
def test_multi_input_rows_must_name_exactly_the_declared_inputs(row: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        MULTI.validate_row(row)


def test_single_input_accepts_a_dict_naming_it_and_unwraps_it() -> None:
    row = PIXELS.validate_row({"pixels": np.zeros(64)})
    assert isinstance(row, np.ndarray)
    assert row.shape == (64,)
    with pytest.raises(InvalidInput, match="missing input\\(s\\) 'pixels'"):
        PIXELS.validate_row({"image": np.zeros(64)})


def test_undeclared_inputs_accept_any_numeric_row_unchanged() -> None:
    model = _model()
    row = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert model.validate_row(row) is row
    named = model.validate_row({"x": np.zeros(2), "y": np.ones(1)})
    assert isinstance(named, dict)
    assert sorted(named) == ["x", "y"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (np.array(["a"]), "input: expected numbers, got str"),
        (np.array([np.nan]), "input: NaN or Inf"),
        ({"x": np.array([None])}, "input 'x': expected numbers, got object"),
    ],
)
def test_undeclared_inputs_still_refuse_non_numeric_and_non_finite(row: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _model().validate_row(row)
