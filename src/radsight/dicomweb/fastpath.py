"""The ASGI application ``radsight serve`` runs: DICOMweb's busiest requests dispatched without
FastAPI's per-request layers (middlewares, routing over every route, dependency solving), which
cost more than the handling of a STOW-RS instance or a WADO-RS series does (docs/benchmarks.md);
everything else goes through FastAPI.

A dispatcher, not a second implementation: for each request it takes it calls exactly the
functions the routes and their dependency call, in the same order, and nothing else:

1. :func:`security.authenticate_remembered`, the non-blocking step of the one authentication;
   a request it cannot authenticate (no, other, wrong or not recently verified credentials)
   goes to the routes, whose dependency completes the authentication and gives the 401;
2. :func:`security.authorize_request`, the one authorization: refused here, refused there;
3. :func:`stow.store` for ``POST /dicomweb/studies[/{study}]``, :func:`wado.retrieve` for
   ``GET /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]]`` without a query
   string. A retrieval that fails (404, 406, a decoding failure) is left to the route, which
   answers it (a GET has no body, so nothing was consumed).

Requests with an ``Origin`` header go to the routes, for the CORS middleware's headers. Whatever
is added later (roles, audit, access groups) goes into those functions, never here; the
security headers are added around both (``http_server.asgi_application``).
``tests/test_stow.py`` and ``tests/test_wado.py`` send the same requests both ways and compare
the answers.
"""

from __future__ import annotations

import asyncio
import functools

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from radsight.api.security import authenticate_remembered, authorize_request
from radsight.archive import Archive
from radsight.dicomweb import stow, wado

_PREFIX = stow.SERVICE_PATH + "/studies"


class DicomWebFastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.answered = 0  # requests answered here (for tests and diagnostics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        user = authenticate_remembered(request, self.app.state.authenticator)
        if user is None:
            await self.app(scope, receive, send)
            return
        method, uids = target
        archive: Archive = self.app.state.archive
        response: Response | None
        try:
            authorize_request(user, scope)
            if method == "POST":
                response = await stow.store(request, archive, uids[0] if uids else None)
            else:
                response = await self._retrieve(request, archive, uids)
        except HTTPException as exc:
            response = await http_exception_handler(request, exc)
        if response is None:  # the route answers it (and any error) as FastAPI would
            await self.app(scope, receive, send)
            return
        self.answered += 1
        await response(scope, receive, send)

    @staticmethod
    async def _retrieve(request: Request, archive: Archive, uids: list[str]) -> Response | None:
        """:func:`wado.retrieve` in the event loop's executor (it blocks); None if it failed."""
        try:
            retrieve = functools.partial(wado.retrieve, request, archive, *uids)
            return await asyncio.get_running_loop().run_in_executor(None, retrieve)
        except Exception:
            return None


def _target(scope: Scope) -> tuple[str, list[str]] | None:
    """("POST", [] or [study]) for STOW-RS, ("GET", [study[, series[, instance]]]) for a WADO-RS
    retrieval, None for any other request."""
    if scope["type"] != "http":
        return None
    method = scope["method"]
    if method not in ("GET", "POST"):
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if not path.startswith(_PREFIX) or any(name == b"origin" for name, _ in scope["headers"]):
        return None
    rest = path[len(_PREFIX):]
    if not rest:
        return ("POST", []) if method == "POST" else None
    segments = rest[1:].split("/")
    if rest[0] != "/" or not all(segments):
        return None
    if method == "POST":
        return ("POST", segments) if len(segments) == 1 else None
    if scope.get("query_string"):
        return None
    # study | study/series/{series} | study/series/{series}/instances/{instance}
    if len(segments) in (1, 3, 5) and segments[1:2] in ([], ["series"]) and segments[3:4] in ([], ["instances"]):
        return "GET", segments[0::2]
    return None
