"""load_model: which loader a reference picks, and the errors shared by all file loaders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from batchserve.errors import ModelLoadError
from batchserve.models import load_model


@pytest.mark.parametrize("ref", [None, "", "   "])
def test_no_configuration_serves_the_embedded_digits_model(ref: str | None) -> None:
    model = load_model(ref)
    assert model.name == "digits"
    assert model.platform == "batchserve_numpy"


def test_name_overrides_the_served_name() -> None:
    assert load_model(None, name="mnist-lite").name == "mnist-lite"


def test_blank_name_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="must not be blank"):
        load_model(None, name=" ")


@pytest.mark.parametrize("suffix", [".onnx", ".joblib", ".pkl", ".pt", ".ONNX"])
def test_missing_model_file_is_reported(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"absent{suffix}"
    with pytest.raises(ModelLoadError, match=f"model file '.*absent\\{suffix}' not found"):
        load_model(str(path))


def test_directory_with_a_model_suffix_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(str(folder))


def test_existing_file_with_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(ModelLoadError, match=r"unsupported model file .*'\.joblib', '\.onnx'"):
        load_model(str(path))


@pytest.mark.parametrize("ref", ["nonsense", "some/dir/model", "model.h5"])
def test_unrecognised_reference_is_refused(ref: str) -> None:
    with pytest.raises(ModelLoadError, match=r"expected 'package\.module:attr' or a path"):
        load_model(ref)


@pytest.mark.parametrize(
    ("suffix", "runtime", "extra"),
    [
        (".onnx", "onnxruntime", "onnx"),
        (".joblib", "joblib", "sklearn"),
        (".pkl", "sklearn", "sklearn"),
        (".pt", "torch", "torch"),
    ],
)
def test_missing_runtime_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, runtime: str, extra: str
) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"never parsed: the runtime import fails first")
    monkeypatch.setitem(sys.modules, runtime, None)  # makes `import <runtime>` fail
    with pytest.raises(ModelLoadError, match=rf"needs {runtime}") as caught:
        load_model(str(path))
    assert f"pip install '.[{extra}]'" in str(caught.value)
    assert f"--build-arg EXTRAS={extra}" in str(caught.value)
