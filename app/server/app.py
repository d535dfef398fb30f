"""`create_app(settings)`: the FastAPI application around one in-process engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from .. import __version__
from ..config import Settings
from ..errors import BatchServeError, InvalidInput
from ..metrics import Metrics
from ..models import LoadedModel
from .docs import install_docs
from .doors.asgi import ServiceMiddleware
from .errors import to_reply
from .lifecycle import drain_service, start_service
from .responses import JSONResponse
from .routes import admin, health, observe, predict, v2, v2_extensions, v2_repository
from .state import ServiceState

DESCRIPTION = """Dynamic-batching inference server. Concurrent requests are coalesced into one
model call per batch; each caller gets exactly its own rows back.

Errors are `{"error": "...", "code": "..."}` with: 400 malformed, 408 headers or body too
slow, 413 too large, 415 content type, 422 invalid input, 429 queue full (Retry-After), 431
headers too large, 500 model failure, 503 not ready, shutting down or model unloaded, 504
deadline passed.

The `/v2` routes speak the Open Inference Protocol (KServe V2; Triton's binary tensor,
schedule-policy, model-repository, model-configuration and statistics extensions) and follow
its status codes: every bad request is 400 and a full queue is 503 (with Retry-After)."""


def create_app(
    settings: Settings | None = None,
    *,
    metrics: Metrics | None = None,
    model: LoadedModel | None = None,
) -> ServiceMiddleware:
    """Build the ASGI application. Nothing is loaded until the lifespan starts; a `model`
    given here is served instead of loading `settings.model`."""
    settings = settings if settings is not None else Settings()
    state = ServiceState(settings=settings, metrics=metrics or Metrics(), model=model)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await start_service(state)
        try:
            yield
        finally:
            await drain_service(state)
            middleware.service.close()

    api = FastAPI(
        title="batchserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,
        redoc_url=None,
        # A redirect would echo the client's Host header back in Location.
        redirect_slashes=False,
    )
    install_docs(api)
    api.state.service = state
    # The V2 extensions before the V2 router: its catch-all answers every other /v2 path.
    for module in (predict, health, observe, admin, v2_extensions, v2_repository, v2):
        api.include_router(module.router)
    api.add_exception_handler(BatchServeError, _handle_error)
    api.add_exception_handler(RequestValidationError, _handle_validation)
    api.add_exception_handler(HTTPException, _handle_http)
    api.add_exception_handler(Exception, _handle_error)
    middleware = ServiceMiddleware(api, state)
    api.state.inference = middleware.service
    return middleware


def _error_response(exc: Exception, request: Request) -> JSONResponse:
    rid = getattr(request.state, "request_id", "")
    reply = to_reply(exc, rid)
    return JSONResponse(
        {"error": reply.message, "code": reply.code},
        status_code=reply.status,
        headers=dict(reply.headers),
    )


async def _handle_error(request: Request, exc: Exception) -> JSONResponse:
    return _error_response(exc, request)


# Starlette's own refusals (unknown path, wrong method, unreadable body) in the service's
# error format.
_HTTP_CODES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, BatchServeError):
        # FastAPI turns any error while it reads a body into 400 "error parsing the body";
        # the service's own (the body-size limit's 413) is the real answer.
        return _error_response(exc.__cause__, request)
    return JSONResponse(
        {"error": str(exc.detail), "code": _HTTP_CODES.get(exc.status_code, "http_error")},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}"
        for err in exc.errors()
    )
    return _error_response(InvalidInput(details or "invalid request"), request)
