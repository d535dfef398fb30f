"""Write three small example models into a folder, one per kind batchserve loads from files.

    .venv/bin/python scripts/example_models.py models

writes ``models/model.onnx`` (a linear layer built with ``onnx.helper``: 4 float32 inputs,
3 outputs), ``models/model.joblib`` (a scikit-learn ``LogisticRegression`` fitted on a few
rows, saved with joblib) and ``models/scaler.py`` (a ``module:attr`` Python model). It needs
the ``dev`` extra's onnx, onnxruntime and scikit-learn, which serving does not.

Standard output is a JSON object that maps each model's ``BATCHSERVE_MODEL`` reference, as
seen from inside a container with the folder mounted at ``--mount`` (default ``/models``), to
a ``/predict`` request body and the answer onnxruntime, scikit-learn and the Python module
give for it when called directly here. ``scripts/container_test.sh`` serves each model from
the image and compares.

A pickled estimator is only safe to load with the scikit-learn version that saved it (and
loading one runs code from the file); the versions used are printed to standard error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import onnxruntime
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

N_FEATURES = 4
ONNX_OPSET = 13
# IR version 8 is read by every onnxruntime since 1.10, whatever the onnx package writes
# by default.
ONNX_IR_VERSION = 8

SCALER_SOURCE = '''\
"""A batchserve Python model: ``BATCHSERVE_MODEL=scaler:Scaler``, found on BATCHSERVE_MODEL_PATH."""

import numpy as np


class Scaler:
    input_shape = (4,)  # per row
    input_dtype = "float32"

    def predict(self, batch: np.ndarray) -> np.ndarray:  # batch: (B, 4) float32
        return batch * 2.0 + 1.0
'''

# A few rows per class, far enough apart that the fit is the same on every platform.
TRAIN_X = np.array(
    [
        [5.1, 3.5, 1.4, 0.2],
        [4.9, 3.0, 1.4, 0.2],
        [4.7, 3.2, 1.3, 0.2],
        [7.0, 3.2, 4.7, 1.4],
        [6.4, 3.2, 4.5, 1.5],
        [6.9, 3.1, 4.9, 1.5],
        [6.3, 3.3, 6.0, 2.5],
        [5.8, 2.7, 5.1, 1.9],
        [7.1, 3.0, 5.9, 2.1],
    ]
)
TRAIN_Y = np.array(["setosa"] * 3 + ["versicolor"] * 3 + ["virginica"] * 3)
INSTANCES = [
    [5.0, 3.4, 1.5, 0.2],
    [6.7, 3.1, 4.4, 1.4],
    [6.5, 3.0, 5.8, 2.2],
    [0.0, 0.0, 0.0, 0.0],
    [-1.5, 2.25, 10.0, 0.125],
]


def write_onnx(path: Path) -> None:
    """``y = x @ W + b`` with a symbolic batch dimension."""
    weights = np.arange(N_FEATURES * 3, dtype=np.float32).reshape(N_FEATURES, 3) / 10.0 - 0.5
    bias = np.array([0.25, -1.0, 2.0], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def write_joblib(path: Path) -> None:
    estimator = LogisticRegression(max_iter=1000).fit(TRAIN_X, TRAIN_Y)
    joblib.dump(estimator, path)


def onnx_answer(path: Path) -> list[Any]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": np.asarray(INSTANCES, dtype=np.float32)})
    result: list[Any] = y.tolist()
    return result


def joblib_answer(path: Path) -> list[Any]:
    result: list[Any] = joblib.load(path).predict(np.asarray(INSTANCES, dtype=np.float64)).tolist()
    return result


def scaler_answer(folder: Path) -> list[Any]:
    """As batchserve finds it: the folder first on the module search path."""
    sys.path.insert(0, str(folder))
    module = importlib.import_module("scaler")
    batch = np.asarray(INSTANCES, dtype=np.float32)
    result: list[Any] = module.Scaler().predict(batch).tolist()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("folder", type=Path, help="where to write the models (created)")
    parser.add_argument(
        "--mount", default="/models", help="where the folder is mounted in the container"
    )
    args = parser.parse_args()
    sys.dont_write_bytecode = True  # no __pycache__ beside scaler.py
    folder: Path = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    mount = args.mount.rstrip("/")

    write_onnx(folder / "model.onnx")
    write_joblib(folder / "model.joblib")
    (folder / "scaler.py").write_text(SCALER_SOURCE)
    answers = {
        f"{mount}/model.onnx": onnx_answer(folder / "model.onnx"),
        f"{mount}/model.joblib": joblib_answer(folder / "model.joblib"),
        "scaler:Scaler": scaler_answer(folder),
    }
    cases = {
        ref: {"request": {"instances": INSTANCES}, "predictions": predictions}
        for ref, predictions in answers.items()
    }
    print(
        f"wrote {', '.join(sorted(p.name for p in folder.iterdir()))} to {folder} with onnx "
        f"{onnx.__version__}, onnxruntime {onnxruntime.__version__}, scikit-learn "
        f"{sklearn.__version__}, joblib {joblib.__version__}",
        file=sys.stderr,
    )
    print(json.dumps(cases))


if __name__ == "__main__":
    main()
