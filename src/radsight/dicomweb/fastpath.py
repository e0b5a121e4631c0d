"""The ASGI application ``radsight serve`` runs: DICOMweb's busiest requests answered outside
FastAPI's per-request layers, everything else through FastAPI.

Why: with one instance per request, FastAPI's per-request layers (exception and body-limit
middlewares, routing over every route, dependency solving) held the GIL longer than the STOW-RS
handler itself (``py-spy record --gil`` of ``radsight serve`` under the benchmark: ~60% of the
event loop's time was framework code around ``store_instances``), and they added ~1 ms to each
WADO-RS retrieval of a series (time to first byte 4.2 vs 3.1 ms for a 3 MB series, measured
against this path). This path runs the routes' own functions with the same results, and takes
only requests whose handling here is exactly the FastAPI route's:

- STOW-RS ``POST /dicomweb/studies[/{study}]`` (``stow._receive``, ``stow._response``), with a
  service root already known for the request's base URL (``stow._service_root``);
- WADO-RS retrieval ``GET /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]]``
  without a query string (``wado.find_instances``, ``wado.retrieve_response``); any error
  (404, 406, a decoding failure) is left to the route, which answers it (a GET has no body,
  so nothing was consumed);
- Basic credentials verified less than a second ago (``Authenticator.recently_verified``, the
  check the routes' own dependency makes first); any other authentication, a wrong password
  included, goes to the route, which gives the proper 401;
- no ``Origin`` header: cross-origin requests get the CORS middleware's headers there.

``tests/test_stow.py`` and ``tests/test_wado.py`` send the same requests both ways and compare
the answers. Whatever is added to these routes' dependencies later (role checks, the access
audit) must be added here too, or these requests sent to the routes.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from radsight.api.deps import basic_credentials
from radsight.archive import Archive
from radsight.dicomweb import stow, wado

_PREFIX = "/dicomweb/studies"


class DicomWebFastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.answered = 0  # requests answered here (for tests and diagnostics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _target(scope)
        if target is None or not self._verified(scope):
            await self.app(scope, receive, send)
            return
        method, uids = target
        archive: Archive = self.app.state.archive
        request = Request(scope, receive)
        response: Response
        if method == "POST":
            if stow._root_key(scope) not in stow._ROOTS:
                await self.app(scope, receive, send)
                return
            study = uids[0] if uids else None
            try:
                response = stow._response(request, await stow._receive(request, archive, study), study)
            except stow._BadRequest as exc:
                response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        else:
            def retrieve() -> Response:
                return wado.retrieve_response(archive, request, wado.find_instances(archive, *uids))

            try:
                response = await asyncio.get_running_loop().run_in_executor(None, retrieve)
            except Exception:  # the route answers it (and any error) as FastAPI would
                await self.app(scope, receive, send)
                return
        self.answered += 1
        await response(scope, receive, send)

    def _verified(self, scope: Scope) -> bool:
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, credentials = header.decode("latin-1").partition(" ")
        if scheme.lower() != "basic" or not credentials:
            return False
        with contextlib.suppress(HTTPException):
            return bool(self.app.state.authenticator.recently_verified(*basic_credentials(credentials)))
        return False


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
