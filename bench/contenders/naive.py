"""The server a user writes first: FastAPI, a pydantic body model, one model call per request.

No batching: each request becomes a ``(1, width)`` array and one model call, made by a sync
route (FastAPI runs it on its threadpool). Started by the benchmark as
``python -m bench.contenders.naive --workload NAME --port PORT`` and run by ``uvicorn.run``
with its defaults (access log on), as the FastAPI tutorial does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from bench.workloads import get_workload


class PredictRequest(BaseModel):
    """The ``/predict`` body: one list of numbers per instance."""

    instances: list[list[float]]


def to_predictions(output: Any) -> list[Any]:
    """Model output as JSON-ready rows (arrays, or dicts of arrays such as digits')."""
    if isinstance(output, dict):
        columns = {name: np.asarray(value).tolist() for name, value in output.items()}
        count = len(next(iter(columns.values())))
        return [{name: column[i] for name, column in columns.items()} for i in range(count)]
    return list(np.asarray(output).tolist())


def create_app(workload: str) -> FastAPI:
    """The naive app serving ``workload``'s model."""
    model = get_workload(workload).factory()
    app = FastAPI()

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        batch = np.asarray(request.instances, dtype=np.float32)
        return {"predictions": to_predictions(model.predict(batch))}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the naive app on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.workload), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
