"""``.onnx`` models built in the test with onnx.helper and run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchserve.errors import ModelLoadError
from batchserve.models import TensorSpec, load_model
from tests.models.support import as_array, as_dict, stack_rows

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
helper = onnx.helper
FLOAT = onnx.TensorProto.FLOAT

WEIGHTS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=np.float32)
BIAS = np.array([0.5, -0.5], dtype=np.float32)


def _save(tmp_path: Path, nodes: list[Any], inputs: list[Any], outputs: list[Any]) -> Path:
    initializers = [
        onnx.numpy_helper.from_array(WEIGHTS, "W"),
        onnx.numpy_helper.from_array(BIAS, "b"),
    ]
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # old enough for any onnxruntime the extra allows
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def _linear(tmp_path: Path, *, with_relu: bool = False) -> Path:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", FLOAT, ["batch", 2])]
    if with_relu:
        nodes.append(helper.make_node("Relu", ["y"], ["positive"]))
        outputs.append(helper.make_tensor_value_info("positive", FLOAT, ["batch", 2]))
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["batch", 3])]
    return _save(tmp_path, nodes, inputs, outputs)


def test_linear_graph_declares_its_tensors_without_the_batch_dim(tmp_path: Path) -> None:
    model = load_model(str(_linear(tmp_path)))
    assert model.name == "model"
    assert model.platform == "onnx_onnxv1"
    assert model.inputs == (TensorSpec("x", (3,), "float32"),)
    assert model.outputs == (TensorSpec("y", (2,), "float32"),)


def test_linear_graph_predicts_like_numpy(tmp_path: Path) -> None:
    model = load_model(str(_linear(tmp_path)), name="lin")
    json_rows = [[1, 2, 3], [0.5, -1.0, 2.0]]  # ints and float64, as JSON decodes them
    batch = stack_rows([model.validate_row(np.array(row)) for row in json_rows])
    result = as_array(model.predict_batch(batch))
    np.testing.assert_allclose(result, batch @ WEIGHTS + BIAS, rtol=1e-6)


def test_warmup_row_runs_through_the_session(tmp_path: Path) -> None:
    model = load_model(str(_linear(tmp_path)))
    row = as_array(model.warmup_row())
    assert as_array(model.predict_batch(row[np.newaxis])).shape == (1, 2)


def test_multi_output_graph_returns_a_dict(tmp_path: Path) -> None:
    model = load_model(str(_linear(tmp_path, with_relu=True)))
    assert model.output_names == ("y", "positive")
    result = as_dict(model.predict_batch(np.array([[1.0, 2.0, 3.0]], dtype=np.float32)))
    np.testing.assert_allclose(result["y"], [[4.5, -1.5]])
    np.testing.assert_allclose(result["positive"], [[4.5, 0.0]])


def test_multi_input_graph_takes_a_dict(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["a", "c"], ["sum"])]
    inputs = [
        helper.make_tensor_value_info("a", FLOAT, ["n", 2]),
        helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [None, 2]),
    ]
    outputs = [helper.make_tensor_value_info("sum", FLOAT, ["n", 2])]
    model = load_model(str(_save(tmp_path, nodes, inputs, outputs)))
    assert model.multi_input
    row = as_dict(model.validate_row({"a": np.array([1, 2]), "c": np.array([0.5, 0.5])}))
    batch = {name: value[np.newaxis] for name, value in row.items()}
    np.testing.assert_allclose(as_array(model.predict_batch(batch)), [[1.5, 2.5]])


def test_symbolic_row_dims_become_variable(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["batch", "length"])]
    outputs = [helper.make_tensor_value_info("y", FLOAT, ["batch", "length"])]
    model = load_model(str(_save(tmp_path, nodes, inputs, outputs)))
    assert model.inputs == (TensorSpec("x", (-1,), "float32"),)
    result = as_array(model.predict_batch(np.array([[-1.0, 2.0, -3.0]], dtype=np.float32)))
    np.testing.assert_allclose(result, [[0.0, 2.0, 0.0]])


def test_invalid_onnx_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelLoadError, match=r"cannot load ONNX model '.*broken\.onnx'"):
        load_model(str(path))


def test_scalar_input_without_a_batch_dim_is_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", FLOAT, [])]
    outputs = [helper.make_tensor_value_info("y", FLOAT, [])]
    with pytest.raises(ModelLoadError, match="input 'x' has no batch dimension"):
        load_model(str(_save(tmp_path, nodes, inputs, outputs)))


def test_non_tensor_outputs_are_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("SequenceConstruct", ["x"], ["items"])]
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["batch", 2])]
    sequence = helper.make_tensor_sequence_value_info("items", FLOAT, None)
    with pytest.raises(ModelLoadError, match="output 'items' has type 'seq"):
        load_model(str(_save(tmp_path, nodes, inputs, [sequence])))


# -- fixed batch sizes and variable lengths, served through the engine ------------------------


def _served(make_processor: Any, model: Any) -> Any:
    from batchserve.models.padding import model_collator

    processor = make_processor(initial_batch_size=32)
    processor.start(model.instance_functions(1), collator=model_collator(model))
    return processor


def _fixed_batch_graph(tmp_path: Path, size: int) -> Path:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", FLOAT, [size, 3])]
    outputs = [helper.make_tensor_value_info("y", FLOAT, [size, 2])]
    return _save(tmp_path, nodes, inputs, outputs)


def test_a_graph_with_a_fixed_batch_of_8_serves_any_number_of_rows(
    tmp_path: Path, make_processor: Any
) -> None:
    import onnxruntime

    path = _fixed_batch_graph(tmp_path, 8)
    model = load_model(str(path))
    assert model.execution.allowed_batch_sizes == (8,)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(1).normal(size=(11, 3)).astype(np.float32)
    processor = _served(make_processor, model)
    processor.pause()
    futures = [processor.enqueue_predict(model.validate_row(row)) for row in rows]
    processor.resume()
    for row, future in zip(rows, futures, strict=True):
        alone = np.repeat(row[np.newaxis], 8, axis=0)  # the graph only runs batches of 8
        expected = session.run(["y"], {"x": alone})[0][0]
        np.testing.assert_allclose(future.result(timeout=5), expected, rtol=1e-6)


def _sequence_graph(tmp_path: Path) -> Path:
    """Per row: the sum of its tokens, and each token plus one; padded with 0."""
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "one"], ["shifted"]),
    ]
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["batch", "seq"])]
    outputs = [
        helper.make_tensor_value_info("total", FLOAT, ["batch"]),
        helper.make_tensor_value_info("shifted", FLOAT, ["batch", "seq"]),
    ]
    extra = [
        onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        onnx.numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    graph = helper.make_graph(nodes, "seq", inputs, outputs, extra)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    helper.set_model_props(model, {"batchserve.pad.x": "0", "batchserve.length_buckets": "4,8,16"})
    onnx.checker.check_model(model)
    path = tmp_path / "seq.onnx"
    onnx.save(model, str(path))
    return path


def test_a_variable_length_graph_batches_rows_of_different_lengths_padded(
    tmp_path: Path, make_processor: Any
) -> None:
    import onnxruntime

    path = _sequence_graph(tmp_path)
    model = load_model(str(path))
    assert model.inputs[0].pad == 0
    assert model.execution.length_buckets == (4, 8, 16)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    rows = [rng.normal(size=n).astype(np.float32) for n in (3, 7, 2, 12, 5)]
    processor = _served(make_processor, model)
    processor.pause()
    futures = [processor.enqueue_predict(model.validate_row(row)) for row in rows]
    processor.resume()
    for row, future in zip(rows, futures, strict=True):
        total, shifted = session.run(["total", "shifted"], {"x": row[np.newaxis]})
        result = future.result(timeout=5)
        np.testing.assert_allclose(result["total"], total[0], rtol=1e-5)
        np.testing.assert_allclose(result["shifted"], shifted[0], rtol=1e-6)
    processor.stop(timeout=5)  # its books are complete
    assert processor.get_stats()["batch_count"] < len(rows)  # rows shared batches
