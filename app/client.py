"""A small typed client for batchserve's `/predict`, sync and async, JSON or msgpack.

    with Client("http://127.0.0.1:8000") as client:
        predictions = client.predict([[0.0] * 64])

    async with AsyncClient("http://127.0.0.1:8000", wire="msgpack") as client:
        predictions = await client.predict(np.zeros((8, 64), np.float32))

With ``wire="msgpack"`` an ndarray travels as one binary tensor (no per-number encoding), and
array predictions come back as ndarrays: every binary or msgpack-numpy tensor map in the
answer, at any depth (say a list of dicts of named outputs), becomes a read-only ndarray.

Every failure raises a `ClientError`: `PredictError` when the server answered with an error
(its status, code and message), `TransportError` when no answer came back (connection refused
or lost, timeout, broken HTTP), with the httpx exception as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal

import httpx
import msgpack
import numpy as np
import orjson

Wire = Literal["json", "msgpack"]
Priority = Literal["high", "normal", "low"]
_MEDIA = {"json": "application/json", "msgpack": "application/msgpack"}
_TENSOR_KINDS: Final = "biufc"  # bool, integers, floats, complex: nothing that needs pickle


class ClientError(Exception):
    """Base of every error the client raises; raised as such for an answer it cannot read."""


class TransportError(ClientError):
    """No answer came back: connection refused or lost, timeout, or broken HTTP."""


class PredictError(ClientError):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str, retry_after: str | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def encode_request(instances: Any, wire: Wire) -> bytes:
    """The `/predict` body for `instances` (an ndarray, or a list of rows)."""
    if wire == "json":
        return orjson.dumps({"instances": instances}, option=orjson.OPT_SERIALIZE_NUMPY)
    if isinstance(instances, np.ndarray) and instances.dtype.kind in "biuf":
        arr = np.ascontiguousarray(instances, dtype=instances.dtype.newbyteorder("<"))
        tensor = {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": arr.tobytes()}
        return msgpack.packb({"instances": tensor})  # type: ignore[no-any-return]
    return msgpack.packb(  # type: ignore[no-any-return]
        {"instances": _plain(instances)}, use_bin_type=True
    )


def decode_response(response: httpx.Response) -> list[Any] | np.ndarray:
    """The predictions of a successful response, tensor maps decoded into ndarrays.

    Raises:
        PredictError: the response is an error.
        ClientError: a success whose body is not a predictions document.
    """
    if response.status_code != 200:
        raise _error(response)
    content_type = response.headers.get("content-type", "")
    try:
        if "msgpack" in content_type:
            doc = msgpack.unpackb(response.content, raw=False, object_hook=_from_tensor_map)
        else:
            doc = orjson.loads(response.content)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise ClientError(f"cannot read the server's answer: {exc}") from exc
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list | np.ndarray):
        raise ClientError("the server's answer holds no 'predictions' list or tensor")
    return predictions


def _from_tensor_map(m: dict[Any, Any]) -> Any:
    """`m` as an ndarray (or numpy scalar) when it is a binary or msgpack-numpy tensor map,
    else `m` itself. Raises `ValueError` for a tensor map that does not decode."""
    if not 3 <= len(m) <= 5:
        return m
    fields = {k.decode("utf-8", "replace") if type(k) is bytes else k: v for k, v in m.items()}
    array: np.ndarray | None = None
    if fields.keys() == {"dtype", "shape", "data"}:
        array = _array(fields["data"], fields["dtype"], fields["shape"])
    elif fields.keys() in ({"nd", "type", "data"}, {"nd", "type", "kind", "shape", "data"}):
        if fields.get("kind", b"") not in (b"", ""):
            raise ValueError("an object or structured msgpack-numpy array (never unpickled)")
        if fields["nd"] is True:
            array = _array(fields["data"], fields["type"], fields["shape"])
        elif fields["nd"] is False:
            scalar = _array(fields["data"], fields["type"], [])
            return m if scalar is None else scalar[()]
    return m if array is None else array


def _array(data: Any, dtype_name: Any, shape: Any) -> np.ndarray | None:
    """A read-only view of `data`; None unless the fields have a tensor map's types."""
    if type(dtype_name) is bytes:
        dtype_name = dtype_name.decode("ascii", "replace")
    if type(data) is not bytes or type(dtype_name) is not str or type(shape) is not list:
        return None
    dtype = np.dtype(dtype_name)
    if dtype.kind not in _TENSOR_KINDS:
        raise ValueError(f"a tensor of unsupported dtype {dtype_name[:20]!r}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _error(response: httpx.Response) -> PredictError:
    try:
        body = orjson.loads(response.content)
        code, message = str(body.get("code", "error")), str(body.get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code, message = "error", response.text[:200]
    return PredictError(response.status_code, code, message, response.headers.get("retry-after"))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@contextmanager
def _transport(timeout_s: float) -> Iterator[None]:
    """Turn httpx's request errors (no answer came back) into `TransportError`."""
    try:
        yield
    except httpx.RequestError as exc:
        raise TransportError(_no_answer(exc, timeout_s)) from exc


def _no_answer(exc: httpx.RequestError, timeout_s: float) -> str:
    try:
        target = f"{exc.request.method} {exc.request.url}"
    except RuntimeError:  # httpx raised it before the request was built
        target = "the request"
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"{target}: cannot connect to the server: {detail}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{target}: no answer within the client timeout of {timeout_s:g} s ({detail})"
    return f"{target}: the exchange failed: {type(exc).__name__}: {detail}"


def _headers(wire: Wire, priority: Priority | None, timeout_s: float | None) -> dict[str, str]:
    headers = {"content-type": _MEDIA[wire], "accept": _MEDIA[wire]}
    if priority is not None:
        headers["x-priority"] = priority
    if timeout_s is not None:
        headers["x-request-timeout-seconds"] = f"{timeout_s:g}"
    return headers


class Client:
    """Blocking client (one connection pool; use as a context manager or call `close`)."""

    def __init__(
        self,
        base_url: str,
        *,
        wire: Wire = "json",
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.wire: Wire = wire
        self._timeout_s = timeout_s
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def predict(
        self,
        instances: Sequence[Any] | np.ndarray,
        *,
        priority: Priority | None = None,
        timeout_s: float | None = None,
    ) -> list[Any] | np.ndarray:
        """Predictions for `instances`, one per row, in order.

        Raises:
            PredictError: the server refused or failed the request.
            TransportError: no answer came back.
            ClientError: the answer could not be read.
        """
        with _transport(self._timeout_s):
            response = self._http.post(
                "/predict",
                content=encode_request(instances, self.wire),
                headers=_headers(self.wire, priority, timeout_s),
            )
        return decode_response(response)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asyncio client (use as an async context manager or await `aclose`)."""

    def __init__(
        self,
        base_url: str,
        *,
        wire: Wire = "json",
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.wire: Wire = wire
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def predict(
        self,
        instances: Sequence[Any] | np.ndarray,
        *,
        priority: Priority | None = None,
        timeout_s: float | None = None,
    ) -> list[Any] | np.ndarray:
        """Predictions for `instances`, one per row, in order.

        Raises:
            PredictError: the server refused or failed the request.
            TransportError: no answer came back.
            ClientError: the answer could not be read.
        """
        with _transport(self._timeout_s):
            response = await self._http.post(
                "/predict",
                content=encode_request(instances, self.wire),
                headers=_headers(self.wire, priority, timeout_s),
            )
        return decode_response(response)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
