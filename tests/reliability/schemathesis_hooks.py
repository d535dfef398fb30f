"""Schemathesis hooks of the bad-input scenario, loaded by `st run` through the
``SCHEMATHESIS_HOOKS`` variable: the service's msgpack bodies, both ways."""

from __future__ import annotations

from typing import Any

import msgpack
import schemathesis


def _plain(value: Any) -> Any:
    """Generated values as msgpack can carry them (``format: binary`` strings as bytes)."""
    if isinstance(value, str) and isinstance(getattr(value, "data", None), bytes):
        return value.data  # type: ignore[attr-defined]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@schemathesis.serializer("application/msgpack")
def _pack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    packed: bytes = msgpack.packb(_plain(value), use_bin_type=True)
    return packed


@schemathesis.deserializer("application/msgpack")
def _unpack(ctx: schemathesis.DeserializationContext, response: Any) -> Any:
    return msgpack.unpackb(response.content, raw=False)
