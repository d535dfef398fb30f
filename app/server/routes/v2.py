"""The V2 (Open Inference Protocol / KServe V2) REST routes, Triton-compatible.

Health answers with the status code (200 / 503) and a small JSON body. The version segment
of model routes is optional; the served model starts at version ``"1"`` and every load adds
one (`batchserve.server.reload`). Errors are ``{"error", "code"}`` with the V2 column of
`batchserve.server.errors`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from ...errors import ModelNotFound, ModelUnavailable, NotReady
from ..doors.asgi import REQUEST_ID_KEY, route_exchange
from ..errors import Column, to_reply
from ..inference.v2_models import find_model, model_metadata, server_metadata
from ..responses import JSONResponse
from ..state import ServiceState
from . import v2_openapi as openapi
from .deps import ErrorBody, get_state

State = Annotated[ServiceState, Depends(get_state)]
ERRORS: Final = {
    400: "Malformed request, or a tensor that does not fit the model",
    401: "No admin token given",
    403: "Wrong admin token, or admin disabled",
    404: "Unknown model or version",
    500: "The model failed for this request",
    503: "Not ready, shutting down, or queue full (see Retry-After)",
    504: "The deadline passed before the model answered",
}


def v2_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the given error statuses of a V2 route."""
    return {c: {"model": ErrorBody, "description": ERRORS[c]} for c in codes}


router = APIRouter(prefix="/v2", tags=["v2"])


class TensorMetadata(BaseModel):
    """A model tensor; ``-1`` marks a variable dimension (the first is the batch)."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """The served model's description."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Live(BaseModel):
    """Liveness."""

    live: bool


class Ready(BaseModel):
    """Readiness."""

    ready: bool


class ModelReady(BaseModel):
    """Readiness of one model."""

    name: str
    ready: bool


def v2_error(request: Request, exc: Exception) -> Response:
    """The V2 error answer for `exc`."""
    err = to_reply(exc, getattr(request.state, REQUEST_ID_KEY, ""), Column.V2)
    return Response(err.body, err.status, dict(err.headers), media_type="application/json")


@router.get("", summary="Server metadata", response_model=ServerMetadata)
def metadata() -> JSONResponse:
    """Name ``batchserve``, its version, and the extensions it implements."""
    return JSONResponse(server_metadata())


@router.get("/health/live", summary="Server liveness", responses={200: {"model": Live}})
def live(state: State) -> JSONResponse:
    """200 while the engine can make progress; 503 when its worker died or a batch is stuck."""
    processor = state.processor
    alive = processor is None or processor.check_health().live
    return JSONResponse({"live": alive}, status_code=200 if alive else 503)


@router.get("/health/ready", summary="Server readiness", responses={200: {"model": Ready}})
def ready(state: State) -> JSONResponse:
    """200 when the model is loaded and the server takes traffic; 503 otherwise."""
    return JSONResponse({"ready": state.ready}, status_code=200 if state.ready else 503)


def _model_ready(request: Request, state: ServiceState, name: str, version: str | None) -> Response:
    try:
        find_model(state, name, version)
    except (NotReady, ModelUnavailable):
        return JSONResponse({"name": name, "ready": False}, status_code=503)
    except ModelNotFound as exc:
        return v2_error(request, exc)
    ok = state.ready
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


_READY_DOC: Final[dict[int | str, dict[str, Any]]] = {200: {"model": ModelReady}, **v2_errors(404)}


@router.get("/models/{model_name}/ready", summary="Model readiness", responses=_READY_DOC)
def model_ready(request: Request, state: State, model_name: str) -> Response:
    """200 when the model is ready, 503 while loading, draining or unloaded, 404 for another
    name."""
    return _model_ready(request, state, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    summary="Model version readiness",
    responses=_READY_DOC,
)
def version_ready(request: Request, state: State, model_name: str, model_version: str) -> Response:
    """As model readiness; only the served version exists."""
    return _model_ready(request, state, model_name, model_version)


def _model_metadata(
    request: Request, state: ServiceState, name: str, version: str | None
) -> Response:
    try:
        model = find_model(state, name, version)
    except Exception as exc:
        return v2_error(request, exc)
    return JSONResponse(model_metadata(model, str(state.version)))


_META_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": ModelMetadata},
    **v2_errors(404, 503),
}


@router.get("/models/{model_name}", summary="Model metadata", responses=_META_DOC)
def model(request: Request, state: State, model_name: str) -> Response:
    """Inputs and outputs with V2 datatypes; shapes start with ``-1``, the batch."""
    return _model_metadata(request, state, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}",
    summary="Model version metadata",
    responses=_META_DOC,
)
def model_version(request: Request, state: State, model_name: str, model_version: str) -> Response:
    """As model metadata; only the served version exists."""
    return _model_metadata(request, state, model_name, model_version)


async def _infer(request: Request, name: str, version: str) -> Response:
    return await route_exchange(request, request.app.state.inference.v2, (name, version))


_INFER: Final[dict[str, Any]] = {
    "response_class": Response,
    "responses": v2_errors(400, 404, 500, 503, 504),
    "openapi_extra": openapi.INFER,
}


@router.post("/models/{model_name}/infer", summary="Inference", **_INFER)
async def infer(request: Request, model_name: str) -> Response:
    """Run the request's batch through the engine, batched with other requests' rows."""
    return await _infer(request, model_name, "")


@router.post(
    "/models/{model_name}/versions/{model_version}/infer", summary="Inference (version)", **_INFER
)
async def infer_version(request: Request, model_name: str, model_version: str) -> Response:
    """As inference; only the served version exists."""
    return await _infer(request, model_name, model_version)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
def unknown(path: str) -> JSONResponse:
    """Any other V2 path (shared memory, tracing, logging): 404 in the V2 error format, so
    protocol clients report it as such."""
    body = {"error": f"/v2/{path[:100]} is not an endpoint of this server", "code": "not_found"}
    return JSONResponse(body, status_code=404)
