"""Who sends an HTTP request (:func:`authenticate`) and whether they may do what it asks
(:func:`authorize`): the one authentication and the one authorization of RadSight's HTTP
requests. The FastAPI dependencies (:mod:`radsight.api.deps`) and the DICOMweb fast path
(:mod:`radsight.dicomweb.fastpath`) call these functions and nothing else for either.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Protocol

from fastapi import HTTPException, status
from starlette.requests import HTTPConnection
from starlette.types import Scope

from radsight.api.auth import Authenticator, VerifiedUser
from radsight.archive import Archive
from radsight.index.models import User

TOKEN_COOKIE = "radsight_token"


class NotAuthenticated(HTTPException):
    """401: no credentials, or credentials that name no user; asks for Basic or Bearer."""

    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_401_UNAUTHORIZED, detail, {"WWW-Authenticate": 'Basic realm="RadSight", Bearer'})


class Forbidden(HTTPException):
    """403: an authenticated user who may not do what the request asks."""

    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, detail)


class Principal(Protocol):
    """What authorization knows of a user: a :class:`User` row, or a :class:`VerifiedUser` (the
    Authenticator's record of a recent check of its credentials, used without building a User)."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


# -- authentication ------------------------------------------------------------------------


def basic_credentials(credentials: str) -> tuple[str, str]:
    """(user name, password) of a Basic ``Authorization`` value; 401 when it is not base64 UTF-8."""
    try:
        username, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NotAuthenticated("malformed Basic credentials") from exc
    return username, password


def _authorization(scope: Scope) -> tuple[str, str]:
    """(scheme in lower case, credentials) of the request's ``Authorization`` header."""
    header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    scheme, _, credentials = header.decode("latin-1").partition(" ")
    return scheme.lower(), credentials


def authenticate_remembered(conn: HTTPConnection, authenticator: Authenticator) -> VerifiedUser | None:
    """The first step of :func:`authenticate`, the one that never blocks: the user of Basic
    credentials verified less than a second ago (``Authenticator.recent``: no database, no
    scrypt). None means that only :func:`authenticate` can tell (in a worker thread)."""
    scheme, credentials = _authorization(conn.scope)
    if scheme != "basic" or not credentials:
        return None
    try:
        username, password = basic_credentials(credentials)
    except NotAuthenticated:
        return None  # authenticate says so
    return authenticator.recent(username, password)


def authenticate(conn: HTTPConnection, authenticator: Authenticator, archive: Archive) -> User:
    """The user a request's credentials name: HTTP Basic, a Bearer token or the login page's cookie.

    Raises :class:`NotAuthenticated` when there are none or they name no user. Blocking (it may read
    the database and run scrypt): async code calls :func:`authenticate_remembered` first and this
    one in a worker thread only when that gives None.
    """
    remembered = authenticate_remembered(conn, authenticator)
    if remembered is not None:
        return remembered.user()
    scheme, credentials = _authorization(conn.scope)
    with archive.db.session() as s:
        user: User | None = None
        if scheme == "basic" and credentials:
            user = authenticator.check_basic(s, *basic_credentials(credentials))
            if user is None:
                raise NotAuthenticated("wrong user name or password")
        elif scheme == "bearer" and credentials:
            user = authenticator.check_token(s, credentials.strip())
            if user is None:
                raise NotAuthenticated("invalid or expired token")
        elif TOKEN_COOKIE in conn.cookies:
            user = authenticator.check_token(s, conn.cookies[TOKEN_COOKIE])
            if user is None:
                raise NotAuthenticated("session expired; log in again")
        if user is None:
            raise NotAuthenticated("authentication required")
        s.expunge(user)
        return user


# -- authorization -------------------------------------------------------------------------


class Action(StrEnum):
    """What a request does, as authorization sees it."""

    READ = "read"  # search and retrieve: QIDO-RS, WADO-RS, WADO-URI, GET /api/...
    WRITE = "write"  # store and change: STOW-RS, POST/PUT/DELETE /api/...
    ADMINISTER = "administer"  # users, remote AEs, models, routing rules


_METHOD_ACTIONS = {"GET": Action.READ, "HEAD": Action.READ, "OPTIONS": Action.READ}

# The roles that may do an action; an action not named here is open to every authenticated user.
ROLES_ALLOWED: dict[Action, frozenset[str]] = {Action.ADMINISTER: frozenset({"admin"})}


def authorize(user: Principal, action: Action, resource: str) -> None:
    """Raise :class:`Forbidden` unless ``user`` may do ``action`` on ``resource`` (a request path).

    The one authorization point: every authenticated request passes here with its method's action
    (:func:`authorize_request`, from the FastAPI dependencies and the DICOMweb fast path alike), and
    the administration routes once more with ``ADMINISTER`` (``deps.require_admin``). Role checks,
    access groups and the access audit are added here and only here, never in a route or in the
    fast path.
    """
    allowed = ROLES_ALLOWED.get(action)
    if allowed is not None and user.role not in allowed:
        raise Forbidden("this needs the admin role" if action is Action.ADMINISTER else
                        f"the {user.role} role may not {action} {resource}")


def authorize_request(user: Principal, scope: Scope) -> None:
    """:func:`authorize` for an HTTP request: its method's action on its path."""
    authorize(user, _METHOD_ACTIONS.get(scope["method"], Action.WRITE), scope["path"])
