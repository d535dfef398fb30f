"""Admin routes: pause, resume, the target batch size and loading a model, behind a bearer
token."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...batching import BatchProcessor
from ...errors import Forbidden, InvalidInput, MalformedRequest, NotReady, Unauthorized
from .. import reload
from ..state import ServiceState
from .deps import error_responses, get_state, json_object

State = Annotated[ServiceState, Depends(get_state)]

# Documents the scheme in OpenAPI (the docs page's Authorize button); require_admin decides.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The value of BATCHSERVE_ADMIN_TOKEN, sent as `Authorization: Bearer <token>`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def require_admin(state: State, credentials: Credentials) -> ServiceState:
    """Let the call through only with `Authorization: Bearer <BATCHSERVE_ADMIN_TOKEN>`.

    Raises `Forbidden` when no token is configured or the token is wrong, `Unauthorized`
    when the header is missing or not a bearer token. The comparison is constant-time; no
    message ever repeats what the client sent."""
    token = state.settings.admin_token
    if token is None:
        raise Forbidden("admin routes are disabled; set BATCHSERVE_ADMIN_TOKEN to enable them")
    if credentials is None:
        raise Unauthorized("admin routes need 'Authorization: Bearer <token>'")
    expected = token.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected):
        raise Forbidden("invalid admin token")
    return state


Admin = Annotated[ServiceState, Depends(require_admin)]
router = APIRouter(prefix="/admin", tags=["admin"], responses=error_responses(401, 403, 503))


class EngineState(BaseModel):
    """The engine's dispatch state after an admin call."""

    paused: bool
    queue_size: int


class BatchSize(BaseModel):
    """The target batch size (items)."""

    batch_size: int = Field(ge=1)
    min_batch_size: int | None = None
    max_batch_size: int | None = None


class BatchSizeUpdate(BaseModel):
    """The body of `PUT /admin/batch-size`: the new target (items). The bounds are settings."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(ge=1)


async def read_batch_size_update(request: Request) -> BatchSizeUpdate:
    """The request's body as a `BatchSizeUpdate`.

    Raises `MalformedRequest` when it is not a JSON object, `InvalidInput` naming each bad or
    unknown field otherwise."""
    doc = await json_object(request, '{"batch_size": 8}')
    if doc is None:
        raise MalformedRequest('body must be a JSON object such as {"batch_size": 8}')
    try:
        return BatchSizeUpdate.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    # The same form as the app's validation errors; messages only, never the input values.
    return "; ".join(
        ".".join(("body", *(str(part) for part in err["loc"]))) + f": {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )


# FastAPI documents a body only for a body parameter; this one is read by the dependency
# above, after the token check, so the schema is given here.
_UPDATE_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": BatchSizeUpdate.model_json_schema()}},
    }
}
Update = Annotated[BatchSizeUpdate, Depends(read_batch_size_update)]


class ModelLoad(BaseModel):
    """The body of `POST /admin/model`: the model to serve next (absent: the current
    reference again)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A reference as BATCHSERVE_MODEL takes: 'package.module:attr' or a"
        " .onnx/.joblib/.pkl/.pt file.",
    )


class ModelStatus(BaseModel):
    """The served model after a load or unload."""

    name: str
    version: str
    platform: str
    state: str = Field(description="READY, or UNAVAILABLE once unloaded.")


async def read_model_load(request: Request) -> ModelLoad:
    """The request's body as a `ModelLoad` (an empty body loads the current reference).

    Raises `MalformedRequest` when it is not a JSON object, `InvalidInput` otherwise."""
    doc = await json_object(request, '{"model": "pkg.mod:attr"}')
    if doc is None:
        return ModelLoad()
    try:
        return ModelLoad.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from exc


_LOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": ModelLoad.model_json_schema()}},
    }
}
Load = Annotated[ModelLoad, Depends(read_model_load)]


def _processor(state: ServiceState) -> BatchProcessor[Any, Any]:
    processor = state.processor
    if processor is None:
        raise NotReady("the model is still loading")
    return processor


def _engine_state(processor: BatchProcessor[Any, Any]) -> EngineState:
    return EngineState(paused=processor.is_paused, queue_size=len(processor))


@router.post("/pause", summary="Stop dispatching batches; queued requests wait")
def pause(state: Admin) -> EngineState:
    """Queued and new requests wait (their deadlines still apply) until `/admin/resume`."""
    processor = _processor(state)
    processor.pause()
    state.metrics.set_paused(True)
    return _engine_state(processor)


@router.post("/resume", summary="Resume dispatching batches")
def resume(state: Admin) -> EngineState:
    """Waiting requests are dispatched again, highest priority first."""
    processor = _processor(state)
    processor.resume()
    state.metrics.set_paused(False)
    return _engine_state(processor)


@router.get("/batch-size", summary="The current target batch size")
def get_batch_size(state: Admin) -> BatchSize:
    """The target the engine fills batches up to, with its bounds."""
    processor = _processor(state)
    cfg = processor.config
    return BatchSize(
        batch_size=processor.current_batch_size,
        min_batch_size=cfg.min_batch_size,
        max_batch_size=cfg.max_batch_size,
    )


@router.put(
    "/batch-size",
    summary="Set the target batch size",
    responses=error_responses(400, 413, 422),
    openapi_extra=_UPDATE_BODY,
)
def put_batch_size(state: Admin, body: Update) -> BatchSize:
    """Sets the target (within [min_batch_size, max_batch_size]; 422 otherwise). The body is
    `{"batch_size": N}`: not JSON, or not an object, is 400; a bad value or any other field is
    422. Under the ADAPTIVE strategy the controller continues from the new value."""
    try:
        _processor(state).update_batch_size(body.batch_size)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return get_batch_size(state)


@router.post(
    "/model",
    summary="Load a model (or the current one again) without dropping a request",
    responses=error_responses(400, 413, 422),
    openapi_extra=_LOAD_BODY,
)
async def load_model(state: Admin, body: Load) -> ModelStatus:
    """Loads `{"model": "<reference>"}` (empty body: the current reference again) beside the
    served model, warms it up, then serves it as the next version under the same name: no
    request fails, none is answered by both models. A model that fails to load or warm up is
    422 and the served one keeps serving. One load at a time."""
    reference = None if body.model is None else body.model.strip()
    if reference == "":
        raise InvalidInput("body.model: the model reference must not be blank")
    await reload.load(state, reference)
    return ModelStatus(**reload.model_status(state))
