"""Triton's model-repository extension on the V2 routes: the index, and load and unload
behind the admin token (`batchserve.server.reload` does the work).

A load may name a new model: tritonclient's ``load_model(name, config=json.dumps({"model":
"<reference>"}))`` sends ``{"parameters": {"config": "{\\"model\\": ...}"}}``; the reference
is what ``BATCHSERVE_MODEL`` takes. Without one, the current reference is loaded again. The
served name stays. Errors are in the V2 format (a refused load is 400).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from ...errors import InvalidInput
from .. import reload
from ..inference.v2_models import served_model
from ..responses import JSONResponse
from ..state import ServiceState
from .admin import Admin, ModelStatus
from .deps import get_state, json_object
from .v2 import v2_error, v2_errors

State = Annotated[ServiceState, Depends(get_state)]
router = APIRouter(prefix="/v2/repository", tags=["v2"])
MAX_REFERENCE_CHARS: Final = 4096


class RepositoryEntry(BaseModel):
    """One model version of the repository."""

    name: str
    version: str
    state: str
    reason: str


_STRING_MAP: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "boolean"}]},
}
_LOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "config": {
                                    "type": "string",
                                    "description": 'A JSON object: {"model": "<reference>"},'
                                    " a reference as BATCHSERVE_MODEL takes; absent or"
                                    " without 'model': load the current reference again.",
                                }
                            },
                            "additionalProperties": False,
                        }
                    },
                    "additionalProperties": False,
                },
                "example": {"parameters": {"config": '{"model": "/models/classifier.onnx"}'}},
            }
        },
    }
}
_UNLOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "properties": {
            "parameters": _STRING_MAP}}}},
    }
}  # fmt: skip
_INDEX_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        },
    }
}


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); raises `MalformedRequest`."""
    return await json_object(request) or {}


def _parameters(doc: dict[str, Any], allowed: frozenset[str], hint: str) -> dict[str, Any]:
    unknown = sorted(set(doc) - {"parameters"})
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(map(repr, unknown[:8]))}")
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    extra = sorted(set(parameters) - allowed)
    if extra:
        shown = ", ".join(repr(str(name)[:60]) for name in extra[:8])
        raise InvalidInput(f"unsupported parameter(s) {shown}; {hint}")
    return parameters


def load_reference(doc: dict[str, Any]) -> str | None:
    """The model reference a load body names, or None (load the current one again).

    Raises `InvalidInput` for anything but ``{"parameters": {"config": "<JSON object>"}}``
    whose object holds at most a non-empty ``"model"`` string."""
    hint = 'model files cannot be uploaded; name the model in config: {"model": "<reference>"}'
    config = _parameters(doc, frozenset({"config"}), hint).get("config")
    if config is None:
        return None
    if not isinstance(config, str):
        raise InvalidInput("parameters.config must be a string holding a JSON object")
    try:
        settings = orjson.loads(config)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"parameters.config is not valid JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise InvalidInput('parameters.config must be a JSON object: {"model": "<reference>"}')
    unknown = sorted(set(settings) - {"model"})
    if unknown:
        shown = ", ".join(repr(str(key)[:60]) for key in unknown[:8])
        raise InvalidInput(
            f'parameters.config: unknown field(s) {shown}; only "model" (a model reference)'
            " is understood"
        )
    return check_reference(settings.get("model"))


def check_reference(reference: object) -> str | None:
    """`reference` if it is a usable model reference string (None stays None)."""
    if reference is None:
        return None
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidInput("the model reference must be a non-empty string")
    if len(reference) > MAX_REFERENCE_CHARS:
        raise InvalidInput(f"the model reference is over {MAX_REFERENCE_CHARS} characters")
    return reference.strip()


@router.post(
    "/index",
    summary="Repository index",
    responses={200: {"model": list[RepositoryEntry]}, **v2_errors(400)},
    openapi_extra=_INDEX_BODY,
)
async def index(request: Request, state: State) -> Response:
    """The served model and version: ``READY``, or ``UNAVAILABLE`` (reason ``unloaded``).
    ``{"ready": true}`` lists only ready models."""
    try:
        doc = await _json_object(request)
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput("'ready' must be a boolean")
    except Exception as exc:
        return v2_error(request, exc)
    return JSONResponse(reload.repository_index(state, ready_only=ready))


_ADMIN_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": ModelStatus},
    **v2_errors(400, 401, 403, 404, 503),
}


@router.post(
    "/models/{model_name}/load",
    summary="Load (or reload) the model",
    responses=_ADMIN_DOC,
    openapi_extra=_LOAD_BODY,
)
async def load(request: Request, state: Admin, model_name: str) -> Response:
    """Load the model named in ``parameters.config`` (``{"model": "<reference>"}``), or the
    current one again, beside the served one; then serve it as the next version, under the
    same name, without failing or mixing a request. A model that fails to load or warm up
    is 400 and the served one keeps serving. One load at a time; admin token required."""
    try:
        served_model(state, model_name, None)
        reference = load_reference(await _json_object(request))
        await reload.load(state, reference)
    except Exception as exc:
        return v2_error(request, exc)
    return JSONResponse(reload.model_status(state))


@router.post(
    "/models/{model_name}/unload",
    summary="Unload the model",
    responses=_ADMIN_DOC,
    openapi_extra=_UNLOAD_BODY,
)
async def unload(request: Request, state: Admin, model_name: str) -> Response:
    """Stop serving the model: inference and model readiness are 503 (``model_unavailable``)
    and server readiness 503 until the next load; requests already queued are answered.
    ``parameters.unload_dependents`` is accepted (there are none). Admin token required."""
    try:
        served_model(state, model_name, None)
        hint = "only unload_dependents is understood"
        _parameters(await _json_object(request), frozenset({"unload_dependents"}), hint)
        await reload.unload(state)
    except Exception as exc:
        return v2_error(request, exc)
    return JSONResponse(reload.model_status(state))
