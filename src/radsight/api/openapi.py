"""The REST API's OpenAPI document and its Swagger UI, for authenticated users only.

``/openapi.json`` describes the ``/api`` routes (DICOMweb follows PS3.18 and the pages are HTML:
neither is part of this contract); ``/docs`` is Swagger UI with its scripts served from the built
viewer (``swagger-ui-dist``, copied by ``npm run build``), so it works without the internet.

``scripts/openapi.py FILE`` writes the document (``viewer/openapi.json``, from which
``viewer/src/api/schema.d.ts`` is generated: ``npm run openapi`` in ``viewer/``).
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response

from radsight.api.deps import TOKEN_COOKIE, get_current_user
from radsight.api.headers import CSP, page_policy
from radsight.api.routes_viewer import ASSETS_DIR, built_file

API_PREFIX = "/api/"
SWAGGER_DIR = ASSETS_DIR / "swagger-ui"
SWAGGER_URL = "/docs/assets"
SUMMARY = "RadSight REST API: worklist, AI models, jobs and findings, administration"
# Any of the three authenticates a request (``deps.get_current_user``).
SECURITY_SCHEMES = {
    "basic": {"type": "http", "scheme": "basic"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "A token from POST /api/auth/token"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": TOKEN_COOKIE, "description": "Set by the login page"},
}


def _referenced(node: Any) -> set[str]:
    """Names of the component schemas that ``node`` refers to (``$ref``), directly."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.rsplit("/", 1)[1]} if isinstance(ref, str) else set()
        return found.union(*(_referenced(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_referenced(v) for v in node))
    return set()


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the app's ``/api`` routes (built once, then kept on the app)."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, summary=SUMMARY, routes=app.routes)
        doc["paths"] = {p: ops for p, ops in doc["paths"].items() if p.startswith(API_PREFIX)}
        schemas = doc.get("components", {}).get("schemas", {})
        keep, todo = set(), _referenced(doc["paths"])
        while todo:  # the schemas the kept paths use, and those they use in turn
            keep |= todo
            todo = _referenced([schemas[n] for n in todo]) - keep
        components = {"schemas": {n: s for n, s in schemas.items() if n in keep}, "securitySchemes": SECURITY_SCHEMES}
        doc["components"] = components
        doc["security"] = [{name: []} for name in SECURITY_SCHEMES]
        app.openapi_schema = doc
    return app.openapi_schema


def add_openapi_routes(app: FastAPI) -> None:
    """``/openapi.json``, ``/docs`` and Swagger UI's files, each for an authenticated user;
    ``app.openapi()`` returns the same document (FastAPI's documented way to customise it)."""
    app.openapi = functools.partial(openapi_document, app)  # type: ignore[method-assign]
    auth = [Depends(get_current_user)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=auth)
    def openapi_json() -> JSONResponse:
        return JSONResponse(openapi_document(app))

    @app.get("/docs", include_in_schema=False, dependencies=auth)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_URL}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_URL}/favicon-32x32.png",
            # No request to the public validator service: the document stays on this network.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers[CSP] = page_policy(bytes(page.body).decode("utf-8"))  # its inline script, by hash
        return page

    @app.get(SWAGGER_URL + "/{name}", include_in_schema=False)
    def swagger_asset(name: str, request: Request) -> Response:
        return built_file(SWAGGER_DIR, name, request, "private, max-age=86400")
