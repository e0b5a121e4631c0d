"""Caps on the size of request bodies: a body over its route's cap is refused with 413 before it
is read past the cap.

Each request's cap comes from its path (:func:`body_cap`), read from the settings per request:

- STOW-RS (``POST /dicomweb/studies[/{study}]``) and model uploads (``POST /api/models``) carry
  DICOM and model packages of up to ``max_upload_bytes``; their handlers stream the body and
  enforce that cap themselves (STOW-RS keeps the instances received before it), so they pass here;
- the unauthenticated login requests (``/login``, ``/api/auth/token``): ``max_login_body_bytes``;
- every other request: ``max_request_body_bytes`` (JSON and form bodies of the REST API).

A declared ``Content-Length`` over the cap is answered at once, without reading the body or
calling the application; a chunked body is counted as it arrives, and the read that passes the
cap raises :class:`BodyTooLarge`, a 413 that FastAPI's routes answer like any HTTPException.

Starlette's ``RequestBodyLimitMiddleware`` (and FastAPI's ``max_body_size``) do the same
counting, but with one cap fixed when the application or its routes are declared and a detail
that names neither the cap nor the setting; the caps here differ per route and come from the
archive's settings at run time.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radsight.config import Settings

# Streamed by their handlers, which enforce ``max_upload_bytes``.
_UPLOADS = re.compile(r"/dicomweb/studies(/[^/]+)?|/api/models")
_LOGIN = frozenset({"/login", "/api/auth/token"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the request body exceeds {limit} bytes, the limit of this route (setting {setting})",
        )


def body_cap(settings: Settings, method: str, path: str) -> tuple[int, str] | None:
    """(cap in bytes, the setting's name) of a request, None where the handler enforces its own."""
    if method == "POST" and _UPLOADS.fullmatch(path):
        return None
    if path in _LOGIN:
        return settings.max_login_body_bytes, "max_login_body_bytes"
    return settings.max_request_body_bytes, "max_request_body_bytes"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """Pure ASGI middleware enforcing :func:`body_cap` (``app.add_middleware(BodyLimit, settings=...)``)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        cap = body_cap(self.settings, scope["method"], path)
        if cap is None:
            await self.app(scope, receive, send)
            return
        limit, setting = cap
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refusal(BodyTooLarge(limit, setting))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # read outside a route's exception handling
            if started:
                raise
            await _refusal(exc)(scope, receive, send)


def _refusal(exc: BodyTooLarge) -> JSONResponse:
    # The rest of the body stays unread: the connection closes after the answer.
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers={"Connection": "close"})
