"""The embedded digits classifier, loaded through the public loader."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from batchserve.errors import InvalidInput, ModelLoadError
from batchserve.models import TensorSpec, load_model
from batchserve.models.digits import DigitsMLP
from tests.models.support import as_array, as_dict, stack_rows

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_model_declares_pixels_in_and_label_and_probabilities_out() -> None:
    model = load_model(None)
    assert model.inputs == (TensorSpec("pixels", (64,), "float32"),)
    assert model.outputs == (
        TensorSpec("label", (), "int64"),
        TensorSpec("probabilities", (10,), "float32"),
    )
    assert not model.allow_non_finite
    assert not model.multi_input


def test_held_out_accuracy_is_at_least_95_percent() -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = sklearn_datasets.load_digits()
    # The split scripts/train_digits.py trains on the complement of.
    _, x_test, _, y_test = model_selection.train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0
    )
    model = load_model(None)
    batch = stack_rows([model.validate_row(row) for row in x_test])
    result = as_dict(model.predict_batch(batch))
    accuracy = float(np.mean(result["label"] == y_test))
    assert accuracy >= 0.95, accuracy


def test_outputs_are_a_label_and_a_probability_distribution_per_row() -> None:
    model = load_model(None)
    rows = np.random.default_rng(0).integers(0, 17, size=(5, 64))
    result = as_dict(model.predict_batch(stack_rows([model.validate_row(r) for r in rows])))
    assert result["label"].shape == (5,)
    assert result["label"].dtype == np.int64
    assert result["probabilities"].shape == (5, 10)
    assert result["probabilities"].dtype == np.float32
    np.testing.assert_allclose(result["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(result["label"], result["probabilities"].argmax(axis=1))


def test_a_short_row_is_refused_before_it_is_queued() -> None:
    with pytest.raises(InvalidInput, match=r"input 'pixels': expected shape \(64,\), got \(63,\)"):
        load_model(None).validate_row(np.zeros(63))


def test_warmup_row_runs() -> None:
    model = load_model(None)
    row = as_array(model.warmup_row())
    result = as_dict(model.predict_batch(row[np.newaxis]))
    assert result["label"].shape == (1,)


def test_the_factory_is_also_reachable_by_reference() -> None:
    model = load_model("batchserve.models.digits:load_digits_mlp")
    assert model.name == "load_digits_mlp"
    assert model.output_names == ("label", "probabilities")


def test_default_model_serves_on_numpy_alone() -> None:
    script = (
        "import sys, numpy as np\n"
        "from batchserve.models import load_model\n"
        "model = load_model(None)\n"
        "model.predict_batch(np.zeros((2, 64), dtype=np.float32))\n"
        "heavy = {'sklearn', 'joblib', 'onnxruntime', 'onnx', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=60)


def test_weights_that_do_not_chain_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        w1=np.zeros((64, 8)),
        b1=np.zeros(8),
        w2=np.zeros((9, 10)),
        b2=np.zeros(10),
        input_scale=np.float32(1),
        classes=np.arange(10),
    )
    buffer.seek(0)
    with pytest.raises(ModelLoadError, match=r"w2 has shape \(9, 10\)"):
        DigitsMLP.from_npz(buffer)


def test_an_archive_without_weights_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, w1=np.zeros((64, 8)))
    buffer.seek(0)
    with pytest.raises(ModelLoadError, match="cannot read digits weights"):
        DigitsMLP.from_npz(buffer)
