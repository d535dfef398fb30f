"""Models named ``package.module:attr``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from batchserve.errors import ModelLoadError
from batchserve.models import TensorSpec, load_model, model_from_object
from batchserve.models.spec import Array
from tests.models.support import as_array, as_dict

FIXTURES = "tests.models.fixtures_models"


def test_batch_function_is_served_as_is() -> None:
    model = load_model(f"{FIXTURES}:double")
    assert model.name == "double"
    assert model.platform == "batchserve_python"
    assert model.inputs == ()
    assert model.outputs == ()
    np.testing.assert_array_equal(
        as_array(model.predict_batch(np.ones((2, 3)))), np.full((2, 3), 2)
    )


def test_zero_argument_factory_function_is_called_once_at_load() -> None:
    model = load_model(f"{FIXTURES}:make_doubler")
    assert model.name == "make_doubler"
    np.testing.assert_array_equal(as_array(model.predict_batch(np.ones(2))), [2.0, 2.0])


def test_class_is_instantiated_and_its_short_form_declarations_apply() -> None:
    model = load_model(f"{FIXTURES}:Doubler", name="twice")
    assert model.name == "twice"
    assert model.inputs == (TensorSpec("input0", (3,), "float32"),)
    assert model.output_names == ("doubled",)
    row = model.validate_row(np.array([1, 2, 3]))
    result = as_array(model.predict_batch(as_array(row)[np.newaxis]))
    assert result.dtype == np.float32
    assert result.tolist() == [[2.0, 4.0, 6.0]]


def test_object_with_predict_and_long_form_declarations() -> None:
    model = load_model(f"{FIXTURES}:shifter")
    assert model.inputs == (TensorSpec("x", (2, -1), "float32"),)
    assert model.outputs == (TensorSpec("y", (2, -1), "float32"),)
    result = as_array(model.predict_batch(np.zeros((1, 2, 5), dtype=np.float32)))
    assert np.all(result == 1.0)


def test_dotted_attribute_is_followed() -> None:
    model = load_model(f"{FIXTURES}:Holder.model")
    assert model.name == "model"
    np.testing.assert_array_equal(as_array(model.predict_batch(np.ones(1))), [2.0])


def test_multi_input_model_round_trip() -> None:
    model = load_model(f"{FIXTURES}:SumProduct")
    assert model.multi_input
    rows = [
        as_dict(model.validate_row({"a": np.array([1, 2, 3]), "b": np.array([1.0, 1.0, 1.0])})),
        as_dict(model.validate_row({"b": np.array([2, 2, 2]), "a": np.array([0.5, 1.0, 1.5])})),
    ]
    batch = {name: np.stack([row[name] for row in rows]) for name in ("a", "b")}
    result = as_dict(model.predict_batch(batch))
    assert list(result) == ["sum", "product"]
    np.testing.assert_allclose(result["sum"], [[2.0, 3.0, 4.0], [2.5, 3.0, 3.5]])
    np.testing.assert_allclose(result["product"], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert result["sum"].dtype == np.float32


def test_in_memory_objects_follow_the_same_rules() -> None:
    class Model:
        output_names = ("y",)

        def predict(self, batch: Array) -> Array:
            return batch + 1

    model = model_from_object(Model, name="inline")
    assert model.output_names == ("y",)
    np.testing.assert_array_equal(as_array(model.predict_batch(np.zeros(2))), [1.0, 1.0])


def test_declarations_may_be_computed_by_properties() -> None:
    class Model:
        @property
        def input_shape(self) -> tuple[int, ...]:
            return (2,)

        @property
        def outputs(self) -> None:
            return None

        def predict(self, batch: Array) -> Array:
            return batch

    model = model_from_object(Model, name="computed")
    assert model.inputs == (TensorSpec("input0", (2,), "float32"),)
    assert model.outputs == ()


def test_ufunc_without_a_signature_is_a_batch_function() -> None:
    model = model_from_object(np.negative, name="neg")
    np.testing.assert_array_equal(as_array(model.predict_batch(np.ones(2))), [-1.0, -1.0])


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("tests.models:", "bad model reference"),
        (":double", "bad model reference"),
        ("tests..models:double", "bad model reference"),
        ("tests.models.fixtures_models:dou-ble", "bad model reference"),
        ("no_such_package_xyz.mod:f", "cannot import module 'no_such_package_xyz.mod'.*PYTHONPATH"),
        ("tests.models.fixtures_broken:f", "RuntimeError: this module refuses to import"),
        (f"{FIXTURES}:missing", "'missing' not found"),
        (f"{FIXTURES}:Holder.nothing", "'nothing' not found"),
        (f"{FIXTURES}:NeedsArgs", "calling factory NeedsArgs with no arguments failed"),
        (f"{FIXTURES}:not_a_model", "neither a batch function, a factory"),
        (f"{FIXTURES}:BothForms", "not both"),
    ],
)
def test_bad_references_raise_model_load_error(ref: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(ref)


def _write_model(directory: Path, module: str) -> None:
    (directory / f"{module}.py").write_text(
        "import numpy as np\n\ndef triple(batch):\n    return np.asarray(batch) * 3\n"
    )


def test_a_module_in_the_model_path_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    _write_model(tmp_path, "path_searched_model")
    model = load_model("path_searched_model:triple", search_path=[str(tmp_path)])
    assert as_array(model.predict_batch(np.ones((1, 2)))).tolist() == [[3.0, 3.0]]


def test_a_module_in_the_working_directory_is_found_without_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    monkeypatch.chdir(tmp_path)
    _write_model(tmp_path, "cwd_model")
    model = load_model("cwd_model:triple")
    assert model.name == "triple"
