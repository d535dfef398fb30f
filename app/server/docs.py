"""The interactive API docs, `/docs` (Swagger UI) and `/redoc`, with every asset they load
served by this process, so they work on a host without internet.

The JavaScript, CSS and icon come from the `fastapi-offline` package, which ships current
Swagger UI and ReDoc builds. Only its data files are used, not its code: the names below
(`fastapi_offline/static/` and the four files in `ASSETS`) are that package's layout, not a
documented interface. tests/server/test_docs.py fails when one moves, and pyproject.toml pins
the package to the major version the tests ran on.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse

DOCS_URL: Final = "/docs"
REDOC_URL: Final = "/redoc"
ASSETS_URL: Final = "/docs/assets"

ASSETS: Final[dict[str, str]] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
"""Every file the pages load, with the content type it is served with."""

_PACKAGE: Final = "fastapi_offline"


def asset_dir() -> Path:
    """The directory holding `ASSETS`.

    Raises:
        RuntimeError: the installed `fastapi-offline` lacks one of them (a layout change).
    """
    directory = Path(str(importlib.resources.files(_PACKAGE) / "static"))
    missing = sorted(name for name in ASSETS if not (directory / name).is_file())
    if missing:
        raise RuntimeError(
            f"the installed {_PACKAGE} package has no {', '.join(missing)} in {directory}; "
            "reinstall batchserve's dependencies (pip install -e .)"
        )
    return directory


def install_docs(api: FastAPI) -> None:
    """Add `GET /docs`, `GET /redoc` and `GET /docs/assets/{name}` to `api`, none of them in
    the OpenAPI document. The pages name only this server's URLs (under the ASGI root path),
    so a browser loads nothing from another host. Create `api` with ``docs_url=None,
    redoc_url=None`` so FastAPI adds no CDN-based pages of its own.

    Raises:
        ValueError: `api` serves no OpenAPI document.
        RuntimeError: from `asset_dir`, when the assets are not installed.
    """
    if api.openapi_url is None:
        raise ValueError("the docs pages need the OpenAPI document; api.openapi_url is None")
    openapi_path = api.openapi_url
    directory = asset_dir()

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @api.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + openapi_path,
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{base}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
        )

    @api.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + openapi_path,
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @api.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        # Only the listed names: a request never chooses a path on disk.
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "no such docs asset")
        return FileResponse(directory / name, media_type=media_type)
