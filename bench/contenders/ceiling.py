"""The leanest server the stack allows: a bare ASGI app on uvicorn, no framework, no model.

It reads the body, decodes the same JSON with orjson into a float32 numpy array, and answers
with a constant-size ``{"predictions": (B, 16) zeros}`` encoded by orjson. Whatever it reaches
is the HTTP layer's limit on this machine; no server doing real work can beat it. Started as
``python -m bench.contenders.ceiling --port PORT`` (access log off, log level warning).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import numpy as np
import orjson
import uvicorn

from bench.workloads import OUT_WIDTH

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HEADERS = [(b"content-type", b"application/json")]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Answer every HTTP request as ``/predict`` would be answered, minus the model."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    batch = np.asarray(orjson.loads(b"".join(chunks))["instances"], dtype=np.float32)
    answer = np.zeros((len(batch), OUT_WIDTH), dtype=np.float32)
    body = orjson.dumps({"predictions": answer}, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the ceiling app on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workload", default="", help="ignored: the ceiling runs no model")
    args = parser.parse_args(argv)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
