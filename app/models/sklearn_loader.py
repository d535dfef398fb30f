"""``.joblib`` / ``.pkl`` scikit-learn estimators (extra: ``batchserve[sklearn]``).

Loading a pickle runs code from the file: only serve files you trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .base import LoadedModel
from .runtime import import_runtime, require_file
from .spec import TensorSpec

SKLEARN_PLATFORM = "sklearn_joblib"
SKLEARN_INPUT_NAME = "input0"
SKLEARN_OUTPUT_NAME = "predictions"


def load_sklearn(path: str | Path, name: str) -> LoadedModel:
    """Load a fitted estimator with joblib and serve its ``predict`` (not ``predict_proba``).

    The input is declared as float64 rows of ``n_features_in_`` values when the estimator
    has that attribute, otherwise left undeclared. The output ``"predictions"`` is described
    from ``classes_`` for a classifier, as float64 otherwise. Raises `ModelLoadError` if
    joblib or scikit-learn is missing, the file is missing or unreadable, or the object has
    no ``predict``.
    """
    file = require_file(path)
    joblib = import_runtime("joblib", "sklearn", f"loading {file.suffix} models")
    import_runtime("sklearn", "sklearn", f"loading {file.suffix} models")
    try:
        estimator = joblib.load(file)
    except Exception as exc:
        raise ModelLoadError(f"cannot load estimator {str(file)!r}: {exc}") from exc
    if not callable(getattr(estimator, "predict", None)):
        raise ModelLoadError(
            f"{str(file)!r} holds a {type(estimator).__name__}, which has no predict method"
        )
    return LoadedModel(
        name=name,
        platform=SKLEARN_PLATFORM,
        predict_fn=estimator.predict,
        inputs=_inputs(estimator),
        outputs=(_output(estimator),),
    )


def _inputs(estimator: Any) -> tuple[TensorSpec, ...]:
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer):
        return ()
    return (TensorSpec(SKLEARN_INPUT_NAME, (int(n_features),), "float64"),)


def _output(estimator: Any) -> TensorSpec:
    """Best effort: a description for metadata, never enforced on what ``predict`` returns."""
    classes = getattr(estimator, "classes_", None)
    if isinstance(classes, np.ndarray) and classes.ndim == 1:
        dtype = "object" if classes.dtype.kind in "USO" else classes.dtype.name
        return TensorSpec(SKLEARN_OUTPUT_NAME, (), dtype)
    n_outputs = getattr(estimator, "n_outputs_", 1)
    shape = (int(n_outputs),) if isinstance(n_outputs, int) and n_outputs > 1 else ()
    return TensorSpec(SKLEARN_OUTPUT_NAME, shape, "float64")
