"""The docs pages load nothing from another host, and the OpenAPI document they show offers
the admin token as a bearer scheme on the admin operations."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest

from batchserve.config import Settings
from batchserve.server.app import create_app
from tests.server.support import LifespanRunner, serving

PAGES = ("/docs", "/redoc")
ASSETS = {
    "/docs/assets/swagger-ui-bundle.js": ("text/javascript", b"SwaggerUIBundle"),
    "/docs/assets/swagger-ui.css": ("text/css", b".swagger-ui"),
    "/docs/assets/redoc.standalone.js": ("text/javascript", b"Redoc"),
    "/docs/assets/favicon.png": ("image/png", b"\x89PNG"),
}


class _Links(HTMLParser):
    """Every URL a page makes the browser load or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(v for k, v in attrs if k in ("src", "href", "spec-url") and v)


def links_of(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].partition(";")[0].strip()


@pytest.mark.parametrize("page", PAGES)
async def test_docs_page_loads_every_asset_from_this_server(page: str) -> None:
    async with serving() as (_, client):
        response = await client.get(page)
        assets = {url: await client.get(url) for url in links_of(response.text)}
    assert response.status_code == 200
    assert media_type(response) == "text/html"
    assert "http://" not in response.text
    assert "https://" not in response.text
    assert any(url.endswith(".js") for url in assets)
    for url, asset in assets.items():
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert asset.status_code == 200, url


async def test_docs_assets_are_served_with_their_content_types() -> None:
    async with serving() as (_, client):
        responses = {url: await client.get(url) for url in ASSETS}
    for url, (expected_type, marker) in ASSETS.items():
        response = responses[url]
        assert response.status_code == 200, url
        assert media_type(response) == expected_type, url
        assert marker in response.content[:2_000_000], url


async def test_swagger_ui_and_redoc_read_this_services_openapi_document() -> None:
    async with serving() as (_, client):
        swagger = (await client.get("/docs")).text
        redoc = (await client.get("/redoc")).text
        schema = await client.get("/openapi.json")
    assert "url: '/openapi.json'" in swagger
    assert "/openapi.json" in links_of(redoc)
    assert schema.status_code == 200


async def test_docs_pages_follow_the_root_path_of_a_proxy_prefix() -> None:
    app = create_app(Settings())
    lifespan = LifespanRunner(app)
    await lifespan.startup()
    transport = httpx.ASGITransport(app=app, root_path="/batchserve")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = await client.get("/batchserve/docs")
            urls = links_of(page.text)
            assets = [await client.get(url) for url in urls]
    finally:
        await lifespan.shutdown()
    assert page.status_code == 200
    assert "url: '/batchserve/openapi.json'" in page.text
    assert urls
    assert all(url.startswith("/batchserve/docs/assets/") for url in urls), urls
    assert [a.status_code for a in assets] == [200] * len(urls)


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/index.html",
        "/docs/assets/swagger-ui.js",
        "/docs/assets/core.py",
        "/docs/assets/..%2Fcore.py",
        "/docs/assets/%2e%2e%2f__init__.py",
    ],
)
async def test_docs_assets_serve_only_the_listed_files(path: str) -> None:
    async with serving() as (_, client):
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_docs_pages_are_not_operations_of_the_api() -> None:
    async with serving() as (_, client):
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


async def test_openapi_offers_the_admin_token_as_a_bearer_scheme_on_admin_operations() -> None:
    async with serving() as (_, client):
        schema = (await client.get("/openapi.json")).json()
    ((name, scheme),) = schema["components"]["securitySchemes"].items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    admin_operations = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            if path.startswith(("/admin/", "/v2/repository/models/")):
                admin_operations += 1
                assert operation["security"] == [{name: []}], where
                assert {"401", "403"} <= operation["responses"].keys(), where
            else:
                assert "security" not in operation, where
    assert admin_operations == 7  # pause, resume, batch size (2), model; load, unload


async def test_openapi_documents_the_batch_size_body_and_its_refusals() -> None:
    async with serving() as (_, client):
        schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/admin/batch-size"]["put"]
    body = operation["requestBody"]
    assert body["required"] is True
    body_schema = body["content"]["application/json"]["schema"]
    assert body_schema["required"] == ["batch_size"]
    assert set(body_schema["properties"]) == {"batch_size"}
    assert body_schema["additionalProperties"] is False
    assert {"400", "401", "403", "422"} <= operation["responses"].keys()


async def test_openapi_documents_the_model_management_and_statistics_routes() -> None:
    async with serving() as (_, client):
        paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        "/admin/model": ("post", {"400", "401", "403", "422", "503"}),
        "/v2/repository/index": ("post", {"400"}),
        "/v2/repository/models/{model_name}/load": ("post", {"400", "401", "403", "404", "503"}),
        "/v2/repository/models/{model_name}/unload": ("post", {"400", "401", "403", "404"}),
        "/v2/models/stats": ("get", {"404", "503"}),
        "/v2/models/{model_name}/stats": ("get", {"404", "503"}),
        "/v2/models/{model_name}/versions/{model_version}/stats": ("get", {"404"}),
        "/v2/models/{model_name}/config": ("get", {"404", "503"}),
        "/v2/models/{model_name}/versions/{model_version}/config": ("get", {"404"}),
    }
    for path, (method, errors) in expected.items():
        operation = paths[path][method]
        assert errors <= operation["responses"].keys(), path
        assert operation["summary"], path
    load = paths["/v2/repository/models/{model_name}/load"]["post"]
    assert "config" in str(load["requestBody"])
    model = paths["/admin/model"]["post"]["requestBody"]["content"]["application/json"]
    assert set(model["schema"]["properties"]) == {"model"}
