"""The HTTP application: REST API, DICOMweb, WADO-URI, login and the viewer.

``create_app`` only builds the application: it starts nothing and subscribes nothing
(``radsight.server`` and ``radsight.wiring`` do)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from radsight import __version__
from radsight.api import (
    limits,
    routes_admin,
    routes_auth,
    routes_findings,
    routes_jobs,
    routes_models,
    routes_viewer,
    routes_worklist,
)
from radsight.api.auth import Authenticator
from radsight.api.openapi import add_openapi_routes
from radsight.archive import Archive
from radsight.dicomweb import router as dicomweb_router
from radsight.dicomweb import wado_uri_router


def create_app(archive: Archive) -> FastAPI:
    app = FastAPI(title="RadSight", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.archive = archive
    app.state.authenticator = Authenticator()
    app.add_middleware(limits.BodyLimit, settings=archive.settings)  # inside CORS: its 413s get CORS headers
    if archive.settings.cors_origins:
        # Middleware, so that pre-flight OPTIONS requests are answered without credentials;
        # the requests themselves still authenticate (Basic or Bearer header, no cookies).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=archive.settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Accept", "Content-Type", "Range"],
            expose_headers=["Content-Type", "Content-Length", "Content-Location", "Warning"],
            allow_credentials=False,
            max_age=600,
        )
    # DICOMweb first: Starlette tries routes in order for every request, and DICOMweb carries
    # most of them (a STOW-RS client, a viewer's frames); the prefixes do not overlap.
    app.include_router(dicomweb_router)
    app.include_router(wado_uri_router)
    app.include_router(routes_auth.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_models.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_findings.router)
    app.include_router(routes_worklist.router)
    add_openapi_routes(app)  # /openapi.json and /docs, for authenticated users
    # Last: the viewer's catch-all routes must not shadow the API.
    app.include_router(routes_viewer.router)
    return app
