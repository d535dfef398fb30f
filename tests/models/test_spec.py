"""TensorSpec and the parsing of declarations."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from batchserve.errors import ModelLoadError
from batchserve.models import TensorSpec
from batchserve.models.spec import parse_specs, specs_from_object


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("float32", "float32"),
        ("f4", "float32"),
        (np.float64, "float64"),
        ("int64", "int64"),
        ("bool", "bool"),
        ("object", "object"),
        ("<U5", "str"),
        ("S3", "bytes"),
    ],
)
def test_dtype_is_normalised_to_a_numpy_name(given: Any, expected: str) -> None:
    assert TensorSpec("x", (1,), given).dtype == expected


def test_shape_is_normalised_to_a_tuple_of_ints() -> None:
    spec = TensorSpec("x", [np.int64(2), -1], "float32")  # type: ignore[arg-type]
    assert spec.shape == (2, -1)
    assert spec.np_dtype == np.dtype(np.float32)


@pytest.mark.parametrize("shape", [(-2,), (1.5,), ("3",), (True,), "33", 3])
def test_bad_shape_is_refused(shape: Any) -> None:
    with pytest.raises(ValueError, match="tensor 'x'"):
        TensorSpec("x", shape, "float32")


@pytest.mark.parametrize("dtype", ["floaty", None, "datetime64[s]", "V8"])
def test_bad_dtype_is_refused(dtype: Any) -> None:
    with pytest.raises(ValueError, match="tensor 'x'"):
        TensorSpec("x", (1,), dtype)


def test_blank_name_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        TensorSpec("", (1,), "float32")


def test_spec_is_immutable() -> None:
    spec = TensorSpec("x", (1,), "float32")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "y"  # type: ignore[misc]


def test_parse_specs_accepts_dicts_and_specs() -> None:
    specs = parse_specs(
        [{"name": "a", "shape": (2,), "dtype": "int32"}, TensorSpec("b", (), "float64")],
        "inputs",
    )
    assert specs == (TensorSpec("a", (2,), "int32"), TensorSpec("b", (), "float64"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"name": "a", "shape": (2,)}], "lacks \\['dtype'\\]"),
        ([{"name": "a", "shape": (-5,), "dtype": "int32"}], "bad model inputs entry"),
        ([TensorSpec("a", (), "int32"), TensorSpec("a", (1,), "int32")], "repeat a name"),
        ({"name": "a"}, "must be a sequence"),
        ([("a", (1,), "int32")], "must be a TensorSpec or a dict"),
    ],
)
def test_parse_specs_refuses_malformed_declarations(value: Any, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        parse_specs(value, "inputs")


class _ShortForm:
    input_shape = (4,)
    input_dtype = "int64"
    input_name = "ids"
    output_names = ("a", "b")
    allow_non_finite = True


def test_short_form_declares_one_input_and_named_outputs() -> None:
    inputs, outputs, allow_non_finite = specs_from_object(_ShortForm())
    assert inputs == (TensorSpec("ids", (4,), "int64"),)
    assert [spec.name for spec in outputs] == ["a", "b"]
    assert allow_non_finite is True


def test_nothing_declared_means_empty_specs() -> None:
    assert specs_from_object(object()) == ((), (), False)


def test_earlier_source_wins_per_attribute() -> None:
    class Product:
        input_shape = (2,)

    class Factory:
        input_shape = (9,)
        output_names = ("out",)

    inputs, outputs, _ = specs_from_object(Product(), Factory())
    assert inputs == (TensorSpec("input0", (2,), "float32"),)
    assert [spec.name for spec in outputs] == ["out"]


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"input_dtype": "float32"}, "needs `input_shape`"),
        ({"outputs": [], "output_names": ["a"]}, "not both"),
        ({"output_names": "abc"}, "sequence of str"),
        ({"allow_non_finite": "yes"}, "must be a bool"),
        ({"input_shape": (-3,)}, "bad input declaration"),
    ],
)
def test_inconsistent_declarations_are_refused(attrs: dict[str, Any], message: str) -> None:
    model = type("Model", (), attrs)()
    with pytest.raises(ModelLoadError, match=message):
        specs_from_object(model)
