"""How much of batchserve one `POST /predict` runs through: files, functions and threads.

    python bench/request_path.py [--wire json|msgpack] [--list]

Starts the service in this process under uvicorn with the uvicorn door (as `batchserve serve`
does), warms it up, then records every batchserve function called, and on which thread,
while exactly one request is answered and its batch booked. `--list` prints them.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import msgpack
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import batchserve
from batchserve.config import Settings
from batchserve.server.app import create_app
from batchserve.server.doors.uvicorn import protocol_for

SOURCE = str(Path(batchserve.__file__).resolve().parent)
ROW = [float(v % 17) for v in range(64)]


class Recorder:
    """A profile hook that notes batchserve functions called while `on` is set."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self.functions: set[tuple[str, str]] = set()
        self.threads: set[str] = set()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.on.is_set():
            return
        code = frame.f_code
        if code.co_filename.startswith(SOURCE):
            self.functions.add((code.co_filename, code.co_qualname))
            self.threads.add(threading.current_thread().name)


def _request(wire: str) -> tuple[bytes, dict[str, str]]:
    if wire == "json":
        return json.dumps({"instances": [ROW]}).encode(), {"content-type": "application/json"}
    return msgpack.packb({"instances": [ROW]}), {"content-type": "application/msgpack"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wire", choices=["json", "msgpack"], default="json")
    parser.add_argument("--list", action="store_true", help="print every function")
    args = parser.parse_args(argv)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(Settings(port=port))
    config = uvicorn.Config(
        app, port=port, http=protocol_for(app), ws="none", log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    recorder = Recorder()
    body, headers = _request(args.wire)

    def client() -> None:
        url = f"http://127.0.0.1:{port}"
        while not server.started:
            time.sleep(0.05)
        with httpx.Client(base_url=url) as http:
            for _ in range(50):
                http.post("/predict", content=body, headers=headers).raise_for_status()
            time.sleep(0.2)  # the warm-up's follow-up books are done
            recorder.on.set()
            http.post("/predict", content=body, headers=headers).raise_for_status()
            time.sleep(0.2)  # this request's batch is booked by the follow-up thread
            recorder.on.clear()
        server.should_exit = True

    threading.setprofile(recorder)  # the engine's threads start in the lifespan, after this
    sys.setprofile(recorder)
    threading.Thread(target=client, name="client", daemon=True).start()
    server.run()
    sys.setprofile(None)
    files = {path for path, _ in recorder.functions}
    print(
        f"one POST /predict ({args.wire}): {len(files)} files, {len(recorder.functions)}"
        f" functions, {len(recorder.threads)} threads ({', '.join(sorted(recorder.threads))})"
    )
    if args.list:
        for path, name in sorted(recorder.functions):
            print(f"  {Path(path).relative_to(SOURCE)}: {name}")


if __name__ == "__main__":
    main()
