"""``.pt`` TorchScript modules scripted and saved by the test."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchserve.errors import ModelLoadError
from batchserve.models import TensorSpec, load_model
from tests.models.support import as_array, as_dict

torch = pytest.importorskip("torch")


def _save(module: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        # Scripting is deprecated upstream; the loader under test still reads TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


def _linear() -> Any:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


class _Declared(torch.nn.Module):  # type: ignore[misc, name-defined]
    """Carries the declaration attributes; TorchScript keeps them in the archive."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = _linear()
        self.input_shape = [3]
        self.input_dtype = "float32"
        self.output_names = ["scores", "best"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[name-defined]
        scores = self.linear(x)
        return scores, scores.argmax(dim=1)


def test_linear_module_predicts_like_torch(tmp_path: Path) -> None:
    linear = _linear()
    model = load_model(str(_save(linear, tmp_path / "linear.pt")))
    assert model.name == "linear"
    assert model.platform == "pytorch_torchscript"
    assert model.inputs == ()
    assert model.output_names == ("output0",)
    batch = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])  # float64, as JSON decodes it
    result = as_array(model.predict_batch(batch))
    assert result.dtype == np.float32
    with torch.inference_mode():
        expected = linear(torch.from_numpy(batch.astype(np.float32))).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_read_only_batches_are_accepted(tmp_path: Path) -> None:
    model = load_model(str(_save(_linear(), tmp_path / "linear.pt")))
    batch = np.ones((2, 3), dtype=np.float32)
    batch.flags.writeable = False
    assert as_array(model.predict_batch(batch)).shape == (2, 2)


def test_module_attributes_declare_inputs_and_outputs(tmp_path: Path) -> None:
    model = load_model(str(_save(_Declared(), tmp_path / "declared.pt")))
    assert model.inputs == (TensorSpec("input0", (3,), "float32"),)
    assert model.output_names == ("scores", "best")
    row = model.validate_row(np.array([1, 2, 3]))
    result = as_dict(model.predict_batch(as_array(row)[np.newaxis]))
    assert result["scores"].shape == (1, 2)
    assert result["best"].tolist() == [int(np.argmax(result["scores"][0]))]


def test_non_torchscript_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_linear().state_dict(), str(path))
    with pytest.raises(ModelLoadError, match=r"cannot load TorchScript module '.*weights\.pt'"):
        load_model(str(path))
