"""V2 tensor datatypes <-> numpy dtypes.

| V2 datatype | numpy | bytes per element |
|---|---|---|
| BOOL | bool_ | 1 |
| UINT8 / UINT16 / UINT32 / UINT64 | uint8 ... uint64 | 1 / 2 / 4 / 8 |
| INT8 / INT16 / INT32 / INT64 | int8 ... int64 | 1 / 2 / 4 / 8 |
| FP16 / FP32 / FP64 | float16 / float32 / float64 | 2 / 4 / 8 |
| BYTES | object holding ``bytes`` (a model may declare str, bytes or object) | 4 + length |

BF16 has no numpy dtype and is refused. Numpy kinds outside the table (complex, void,
datetime) have no V2 datatype.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from ...errors import InvalidInput

BYTES: Final = "BYTES"

NUMERIC: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_BY_DTYPE: Final = {dtype: name for name, dtype in NUMERIC.items()}
_TEXT_KINDS: Final = "OSU"


def to_numpy(datatype: object, where: str) -> np.dtype[Any]:
    """The numpy dtype of a request's ``datatype`` (object for BYTES).

    Raises `InvalidInput` for BF16 and for names the protocol does not define (case-sensitive).
    """
    if datatype == BYTES:
        return np.dtype(object)
    dtype = NUMERIC.get(datatype) if isinstance(datatype, str) else None
    if dtype is not None:
        return dtype
    if datatype == "BF16":
        raise InvalidInput(f"{where}: datatype BF16 is not supported; send FP32 or FP16")
    shown = repr(datatype)[:40]
    raise InvalidInput(
        f"{where}: unknown datatype {shown}; use one of {', '.join(NUMERIC)}, {BYTES}"
    )


def datatype_of(dtype: np.dtype[Any]) -> str | None:
    """The V2 datatype of a numpy dtype (any byte order), or None when it has none."""
    if dtype.kind in _TEXT_KINDS:
        return BYTES
    return _BY_DTYPE.get(dtype.newbyteorder("="))


def describe(dtype: np.dtype[Any]) -> str:
    """The V2 datatype for metadata, falling back to the numpy name when V2 has none."""
    return datatype_of(dtype) or dtype.name
