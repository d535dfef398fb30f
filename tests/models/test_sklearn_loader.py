"""``.joblib`` / ``.pkl`` scikit-learn estimators saved by the test."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchserve.errors import InvalidInput, ModelLoadError
from batchserve.models import TensorSpec, load_model
from batchserve.models.spec import Array
from tests.models.support import as_array, stack_rows

joblib = pytest.importorskip("joblib")
linear_model = pytest.importorskip("sklearn.linear_model")


def _training_data(n_features: int = 4) -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, n_features))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _save(estimator: Any, path: Path) -> Path:
    if path.suffix == ".pkl":  # a plain pickle, not written by joblib: joblib reads both
        path.write_bytes(pickle.dumps(estimator))
    else:
        joblib.dump(estimator, path)
    return path


@pytest.mark.parametrize("suffix", [".joblib", ".pkl"])
def test_logistic_regression_serves_predict(tmp_path: Path, suffix: str) -> None:
    x, y = _training_data()
    estimator = linear_model.LogisticRegression().fit(x, y)
    model = load_model(str(_save(estimator, tmp_path / f"clf{suffix}")))
    assert model.name == "clf"
    assert model.platform == "sklearn_joblib"
    assert model.inputs == (TensorSpec("input0", (4,), "float64"),)
    assert model.outputs == (TensorSpec("predictions", (), "int64"),)
    batch = stack_rows([model.validate_row(row.astype(np.float32)) for row in x])
    assert batch.dtype == np.float64
    result = as_array(model.predict_batch(batch))
    np.testing.assert_array_equal(result, estimator.predict(x.astype(np.float32)))


def test_rows_with_the_wrong_feature_count_never_reach_the_estimator(tmp_path: Path) -> None:
    estimator = linear_model.LogisticRegression().fit(*_training_data())
    model = load_model(str(_save(estimator, tmp_path / "clf.joblib")))
    with pytest.raises(InvalidInput, match=r"input 'input0': expected shape \(4,\), got \(3,\)"):
        model.validate_row(np.zeros(3))


def test_regressor_predictions_are_described_as_float64(tmp_path: Path) -> None:
    x, _ = _training_data(n_features=2)
    estimator = linear_model.LinearRegression().fit(x, x.sum(axis=1))
    model = load_model(str(_save(estimator, tmp_path / "reg.joblib")))
    assert model.outputs == (TensorSpec("predictions", (), "float64"),)
    np.testing.assert_allclose(as_array(model.predict_batch(x[:3])), x[:3].sum(axis=1))


def test_string_class_labels_are_described_as_objects(tmp_path: Path) -> None:
    x, y = _training_data()
    estimator = linear_model.LogisticRegression().fit(x, np.where(y == 1, "yes", "no"))
    model = load_model(str(_save(estimator, tmp_path / "labels.pkl")))
    assert model.outputs == (TensorSpec("predictions", (), "object"),)
    result = as_array(model.predict_batch(x[:2]))
    assert set(result.tolist()) <= {"yes", "no"}


def test_pickle_without_predict_is_refused(tmp_path: Path) -> None:
    path = _save({"weights": [1, 2]}, tmp_path / "not_a_model.pkl")
    with pytest.raises(ModelLoadError, match="holds a dict, which has no predict method"):
        load_model(str(path))


def test_corrupt_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.joblib"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"cannot load estimator '.*corrupt\.joblib'"):
        load_model(str(path))
