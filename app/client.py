"""A small typed client for batchserve's `/predict`, sync and async, JSON or msgpack.

    with Client("http://127.0.0.1:8000") as client:
        predictions = client.predict([[0.0] * 64])

    async with AsyncClient("http://127.0.0.1:8000", wire="msgpack") as client:
        predictions = await client.predict(np.zeros((8, 64), np.float32))

With ``wire="msgpack"`` an ndarray travels as one binary tensor (no per-number encoding), and
array predictions come back as ndarrays. Errors raise `PredictError` with the server's status,
code and message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
import msgpack
import numpy as np
import orjson

Wire = Literal["json", "msgpack"]
Priority = Literal["high", "normal", "low"]
_MEDIA = {"json": "application/json", "msgpack": "application/msgpack"}


class PredictError(Exception):
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
    """The predictions of a successful response; raises `PredictError` otherwise."""
    if response.status_code != 200:
        raise _error(response)
    content_type = response.headers.get("content-type", "")
    if "msgpack" in content_type:
        doc = msgpack.unpackb(response.content, raw=False)
    else:
        doc = orjson.loads(response.content)
    predictions = doc["predictions"]
    if isinstance(predictions, dict) and {"dtype", "shape", "data"} <= predictions.keys():
        dtype = np.dtype(predictions["dtype"])
        return np.frombuffer(predictions["data"], dtype=dtype).reshape(predictions["shape"])
    return list(predictions)


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


def _headers(wire: Wire, priority: Priority | None, timeout_s: float | None) -> dict[str, str]:
    headers = {"content-type": _MEDIA[wire], "accept": _MEDIA[wire]}
    if priority is not None:
        headers["x-priority"] = priority
    if timeout_s is not None:
        headers["x-request-timeout-seconds"] = f"{timeout_s:g}"
    return headers


class Client:
    """Blocking client (one connection pool; use as a context manager or call `close`)."""

    def __init__(self, base_url: str, *, wire: Wire = "json", timeout_s: float = 60.0) -> None:
        self.wire: Wire = wire
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def predict(
        self,
        instances: Sequence[Any] | np.ndarray,
        *,
        priority: Priority | None = None,
        timeout_s: float | None = None,
    ) -> list[Any] | np.ndarray:
        """Predictions for `instances`, one per row, in order."""
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
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def predict(
        self,
        instances: Sequence[Any] | np.ndarray,
        *,
        priority: Priority | None = None,
        timeout_s: float | None = None,
    ) -> list[Any] | np.ndarray:
        """Predictions for `instances`, one per row, in order."""
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
