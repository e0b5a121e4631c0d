"""Dependencies routes declare as parameters (FastAPI template style)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from radsight.archive import Archive
from radsight.index.models import User

TOKEN_COOKIE = "radsight_token"


def get_archive(request: Request) -> Archive:
    archive: Archive = request.app.state.archive
    return archive


ArchiveDep = Annotated[Archive, Depends(get_archive)]


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


def get_current_user(request: Request, archive: ArchiveDep) -> User:
    """Accept HTTP Basic, a Bearer token, or the login page's cookie."""
    authn = request.app.state.authenticator
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    with archive.db.session() as s:
        user: User | None = None
        if scheme.lower() == "basic" and credentials:
            try:
                username, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise _unauthorized("malformed Basic credentials") from exc
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


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_admin(user: CurrentUser) -> User:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
