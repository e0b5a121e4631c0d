"""Dependencies routes declare as parameters (FastAPI template style)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from radsight.api.auth import Authenticator
from radsight.api.security import TOKEN_COOKIE as TOKEN_COOKIE
from radsight.api.security import (
    Action,
    Principal,
    authenticate,
    authenticate_remembered,
    authorize,
    authorize_request,
)
from radsight.archive import Archive
from radsight.index.models import User


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


def get_current_user(request: Request, archive: ArchiveDep) -> User:
    """The request's user (:func:`security.authenticate`), allowed what the request does
    (:func:`security.authorize_request`). Synchronous: FastAPI runs it in the thread pool, as it
    may read the database."""
    user = authenticate(request, request.app.state.authenticator, archive)
    authorize_request(user, request.scope)
    return user


async def get_current_user_async(request: Request, archive: ArchiveDep) -> Principal:
    """:func:`get_current_user` for the DICOMweb routes, which clients call many times a second.

    Async, so that Basic credentials checked less than a second ago (a dictionary lookup) cost the
    request no database access, no hop to a worker thread and no User object; every other check
    runs in the thread pool. The same two calls as the DICOMweb fast path makes.
    """
    authenticator: Authenticator = request.app.state.authenticator
    user: Principal | None = authenticate_remembered(request, authenticator)
    if user is None:
        user = await run_in_threadpool(authenticate, request, authenticator, archive)
    authorize_request(user, request.scope)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_admin(request: Request, user: CurrentUser) -> User:
    """The user, who must be allowed to administer (:func:`security.authorize`)."""
    authorize(user, Action.ADMINISTER, request.scope["path"])
    return user


AdminUser = Annotated[User, Depends(require_admin)]
