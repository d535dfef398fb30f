"""The model contract, the loader, and the built-in digits model.

``load_model(ref, name)`` turns ``BATCHSERVE_MODEL`` into a `LoadedModel`:

- unset or blank: the embedded digits classifier (pure numpy, served as ``"digits"``);
- ``model.onnx`` (onnxruntime, the ``onnx`` extra: ``pip install '.[onnx]'``), ``model.joblib`` /
  ``model.pkl`` (a scikit-learn estimator's ``predict``, ``[sklearn]``), ``model.pt``
  (TorchScript, ``[torch]``);
- ``package.module:attr``, where ``attr`` is a batch function ``(B, ...) -> (B, ...)``, a
  class or zero-argument function returning a model (called once at load), or an object
  with a ``predict`` batch method.

Batches and rows: a model with zero or one declared input receives one array with the batch
dimension first; a model declaring several inputs receives ``{input name: array}``. It may
return one array, ``{output name: array}``, or a tuple/list in declared output order.

Declaring tensors on a Python model (attributes of the model object, or of the class or
factory it came from; all optional):

- ``inputs`` / ``outputs``: a sequence of `TensorSpec` or of dicts
  ``{"name": str, "shape": tuple[int, ...], "dtype": str}``; ``shape`` is per row (no batch
  dimension), ``-1`` marks a variable dimension, ``dtype`` is a numpy dtype name;
- or the short form: ``input_shape`` (tuple) with ``input_dtype`` (default ``"float32"``)
  and ``input_name`` (default ``"input0"``) for one input, and ``output_names`` (sequence of
  str; each is then described as a float32 vector of any length);
- ``allow_non_finite`` (bool, default False): accept NaN and Inf in inputs.

Declared inputs are enforced on every request row before it is queued
(`LoadedModel.validate_row`; cast rules in `batchserve.models.validation`). Declared output names
are enforced on every batch result; output shapes and dtypes are descriptive. Undeclared
inputs accept any numeric row; undeclared outputs form one output called ``"output0"``.
The same attributes declare a TorchScript module's tensors; ONNX models are described by
their graph and scikit-learn estimators by ``n_features_in_`` (float64 rows) and one output,
``"predictions"``.

Example::

    class Scaler:
        input_shape = (3,)
        output_names = ("scaled",)

        def predict(self, batch):
            return batch * 2.0
"""

from .base import LoadedModel
from .loader import load_model
from .python_ref import model_from_object
from .spec import TensorSpec

__all__ = ["LoadedModel", "TensorSpec", "load_model", "model_from_object"]
