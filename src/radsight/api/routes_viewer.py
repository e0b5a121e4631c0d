"""The web viewer and worklist: built front-end assets served at ``/``.

``viewer/`` (TypeScript, Vite) is built by ``make setup`` into ``api/static/viewer`` inside the
package, so a wheel carries it and needs no Node. Pages: ``/`` (worklist),
``/viewer?StudyInstanceUIDs=<uid>`` (the URL form OHIF uses) and ``/dashboard`` (turnaround).
Like every route, they need a logged-in user: an unauthenticated visit to a page goes through
``/login`` and comes back to the same URL; assets answer 401.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response

from radsight.api.deps import get_archive, get_current_user

ASSETS_DIR = Path(__file__).parent / "static" / "viewer"

router = APIRouter(include_in_schema=False)

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def _authenticated(request: Request) -> bool:
    try:
        get_current_user(request, get_archive(request))
    except HTTPException:
        return False
    return True


def _page(request: Request, name: str) -> Response:
    if not _authenticated(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=status.HTTP_303_SEE_OTHER)
    path = ASSETS_DIR / name
    if not path.is_file():
        return Response(
            "The viewer is not built: run `make setup` (npm ci && npm run build in viewer/).",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            media_type="text/plain",
        )
    # Pages name hashed assets: never cache the page itself, so a new build is picked up.
    return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/")
def worklist(request: Request) -> Response:
    """The study worklist."""
    return _page(request, "index.html")


@router.get("/viewer")
def viewer(request: Request) -> Response:
    """The viewer for ``?StudyInstanceUIDs=<uid>[,<uid>...]``."""
    return _page(request, "viewer.html")


@router.get("/dashboard")
def dashboard(request: Request) -> Response:
    """Turnaround dashboard: arrival-to-sign time by priority (``GET /api/turnaround``)."""
    return _page(request, "dashboard.html")


def built_file(directory: Path, name: str, request: Request, cache_control: str) -> Response:
    """A file directly in ``directory`` of the built front end (its ``.gz`` to a gzip-capable client),
    to an authenticated user: 401 otherwise, 404 for any other name."""
    if not _authenticated(request):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required")
    path = directory / name
    # Only plain files directly in the folder: no traversal.
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
    headers = {"Cache-Control": cache_control}
    gz = path.with_name(name + ".gz")
    if gz.is_file() and "gzip" in request.headers.get("accept-encoding", ""):
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        return FileResponse(gz, media_type=media_type, headers=headers)
    return FileResponse(path, headers=headers)


@router.get("/assets/{name}")
def asset(name: str, request: Request) -> Response:
    """Hashed build outputs (scripts, styles, web workers, WebAssembly codecs)."""
    return built_file(ASSETS_DIR / "assets", name, request, "private, max-age=31536000, immutable")
