"""Dependencies routes declare as parameters (FastAPI template style)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from radsight.archive import Archive
from radsight.index.models import User

TOKEN_COOKIE = "radsight_token"


def get_archive(request: Request) -> Archive:
    archive: Archive = request.app.state.archive
    return archive


async def _archive(request: Request) -> Archive:
    # Async: FastAPI runs a plain ``def`` dependency in the thread pool, a hop to a worker thread
    # and back for one attribute lookup on every request.
    return get_archive(request)


ArchiveDep = Annotated[Archive, Depends(_archive)]


def get_session(archive: ArchiveDep) -> Iterator[Session]:
    with archive.db.session() as s:
        yield s


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": 'Basic realm="RadSight", Bearer'},
    )


def basic_credentials(credentials: str) -> tuple[str, str]:
    try:
        username, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _unauthorized("malformed Basic credentials") from exc
    return username, password


def get_current_user(request: Request, archive: ArchiveDep) -> User:
    """Accept HTTP Basic, a Bearer token, or the login page's cookie (a synchronous dependency: FastAPI
    runs it in the thread pool, as it reads the database)."""
    authn = request.app.state.authenticator
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    with archive.db.session() as s:
        user: User | None = None
        if scheme.lower() == "basic" and credentials:
            username, password = basic_credentials(credentials)
            user = authn.check_basic(s, username, password)
            if user is None:
                raise _unauthorized("wrong user name or password")
        elif scheme.lower() == "bearer" and credentials:
            user = authn.check_token(s, credentials.strip())
            if user is None:
                raise _unauthorized("invalid or expired token")
        elif TOKEN_COOKIE in request.cookies:
            user = authn.check_token(s, request.cookies[TOKEN_COOKIE])
            if user is None:
                raise _unauthorized("session expired; log in again")
        if user is None:
            raise _unauthorized("authentication required")
        s.expunge(user)
        return user


async def get_current_user_async(request: Request, archive: ArchiveDep) -> User:
    """:func:`get_current_user` for the DICOMweb routes, which clients call many times a second.

    Async, so that Basic credentials checked less than a second ago (``Authenticator.recent_basic``:
    a dictionary lookup) cost the request no database access and no hop to a worker thread;
    every other check runs in the thread pool as a synchronous dependency would.
    """
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and credentials:
        user: User | None = request.app.state.authenticator.recent_basic(*basic_credentials(credentials))
        if user is not None:
            return user
    return await run_in_threadpool(get_current_user, request, archive)


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_admin(user: CurrentUser) -> User:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
