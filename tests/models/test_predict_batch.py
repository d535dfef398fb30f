"""LoadedModel.predict_batch, output shaping, and warm-up rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from batchserve.errors import InvalidInput, ModelError, OutputMismatch
from batchserve.models import LoadedModel, TensorSpec
from batchserve.models.spec import BatchFn
from tests.models.support import as_array, as_dict


def _model(
    predict_fn: BatchFn,
    inputs: tuple[TensorSpec, ...] = (),
    outputs: tuple[TensorSpec, ...] = (),
) -> LoadedModel:
    return LoadedModel(
        name="m", platform="test", predict_fn=predict_fn, inputs=inputs, outputs=outputs
    )


def _outputs(*names: str) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name, (), "float64") for name in names)


BATCH = np.arange(4.0)


def test_undeclared_model_returns_one_array_called_output0() -> None:
    model = _model(lambda batch: as_array(batch) * 2)
    assert model.output_names == ("output0",)
    np.testing.assert_array_equal(as_array(model.predict_batch(BATCH)), BATCH * 2)


def test_list_results_become_arrays() -> None:
    model = _model(lambda batch: [float(v) for v in as_array(batch)])
    result = as_array(model.predict_batch(BATCH))
    assert result.tolist() == BATCH.tolist()


def test_single_declared_output_is_unwrapped_from_a_dict() -> None:
    model = _model(lambda batch: {"y": batch}, outputs=_outputs("y"))
    assert isinstance(model.predict_batch(BATCH), np.ndarray)


def test_multiple_outputs_come_back_as_a_dict_in_declared_order() -> None:
    model = _model(lambda batch: (batch, -as_array(batch)), outputs=_outputs("pos", "neg"))
    result = as_dict(model.predict_batch(BATCH))
    assert list(result) == ["pos", "neg"]
    np.testing.assert_array_equal(result["neg"], -BATCH)


def test_undeclared_outputs_keep_whatever_names_the_model_returns() -> None:
    model = _model(lambda batch: {"p": batch, "q": batch})
    result = as_dict(model.predict_batch(BATCH))
    assert sorted(result) == ["p", "q"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pos": BATCH}, r"returned outputs \['pos'\], declared \['pos', 'neg'\]"),
        ({"pos": BATCH, "neg": BATCH, "x": BATCH}, "returned outputs"),
        (BATCH, "return a dict or a tuple of 2 arrays"),
        ((BATCH,), "return a dict or a tuple of 2 arrays"),
    ],
)
def test_outputs_must_match_the_declared_names(raw: Any, message: str) -> None:
    model = _model(lambda batch: raw, outputs=_outputs("pos", "neg"))
    with pytest.raises(OutputMismatch, match=message):
        model.predict_batch(BATCH)


@pytest.mark.parametrize(("raw", "got"), [(BATCH[:3], "3 rows"), (np.float64(1.0), "a scalar")])
def test_outputs_must_have_one_row_per_input_row(raw: Any, got: str) -> None:
    model = _model(lambda batch: raw)
    with pytest.raises(OutputMismatch, match=f"returned {got} for a batch of 4"):
        model.predict_batch(BATCH)


def test_a_failing_model_raises_model_error_with_the_cause() -> None:
    def explode(batch: Any) -> Any:
        raise ZeroDivisionError("boom")

    with pytest.raises(ModelError, match="model 'm' failed: ZeroDivisionError: boom") as info:
        _model(explode).predict_batch(BATCH)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_typed_errors_from_the_model_pass_through_unchanged() -> None:
    def refuse(batch: Any) -> Any:
        raise InvalidInput("bad pixels")

    with pytest.raises(InvalidInput, match=r"^bad pixels$"):
        _model(refuse).predict_batch(BATCH)


def test_named_inputs_with_different_row_counts_are_refused() -> None:
    model = _model(lambda batch: as_dict(batch)["a"])
    with pytest.raises(InvalidInput, match="different row counts"):
        model.predict_batch({"a": np.zeros(2), "b": np.zeros(3)})


def test_a_batch_without_a_batch_dimension_is_refused() -> None:
    model = _model(lambda batch: batch)
    with pytest.raises(InvalidInput, match="leading batch dimension"):
        model.predict_batch(np.float64(1.0))  # type: ignore[arg-type]


def test_warmup_row_is_a_valid_zero_row() -> None:
    spec = TensorSpec("x", (-1, 3), "int32")
    model = _model(lambda batch: batch, inputs=(spec,))
    row = as_array(model.warmup_row())
    assert row.shape == (1, 3)
    assert row.dtype == np.int32
    assert not row.any()
    model.validate_row(row)


def test_warmup_row_of_a_multi_input_model_names_every_input() -> None:
    inputs = (TensorSpec("a", (2,), "float32"), TensorSpec("s", (), "object"))
    model = _model(lambda batch: as_dict(batch)["a"], inputs=inputs)
    assert model.multi_input
    row = as_dict(model.warmup_row())
    assert sorted(row) == ["a", "s"]
    assert row["s"].item() == ""
    validated = as_dict(model.validate_row(row))
    batch = {k: np.stack([v]) for k, v in validated.items()}
    assert as_array(model.predict_batch(batch)).shape == (1, 2)


def test_undeclared_model_has_no_warmup_row() -> None:
    model = _model(lambda batch: batch)
    assert model.warmup_row() is None
    assert not model.multi_input
