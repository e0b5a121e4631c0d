"""Who sends an HTTP request (:func:`authenticate`) and whether they may do what it asks
(:func:`authorize`): the one authentication and the one authorization of RadSight's HTTP
requests. The FastAPI dependencies (:mod:`radsight.api.deps`) and the DICOMweb fast path
(:mod:`radsight.dicomweb.fastpath`) call these functions and nothing else for either.

Cross-site request forgery: a change (any method but GET, HEAD, OPTIONS) authenticated by what a
browser sends by itself, the login cookie or Basic credentials it has cached, must come from this
site (:func:`check_origin`, from :func:`authenticate`); the login form carries a token that must
match its cookie (:func:`check_form_token`). Bearer tokens are never sent by a browser unasked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from fastapi import HTTPException, status
from starlette.requests import HTTPConnection
from starlette.types import Scope

from radsight.api.auth import Authenticator, VerifiedUser
from radsight.archive import Archive
from radsight.config import Settings
from radsight.index.models import User

TOKEN_COOKIE = "radsight_token"
LOGIN_FORM_COOKIE = "radsight_login"  # the login form's token (double submit)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    scrypt). None means that only :func:`authenticate` can tell (in a worker thread); so for a
    change that names where it comes from, whose origin :func:`authenticate` checks."""
    if conn.scope["method"] not in SAFE_METHODS and _source(conn.scope) is not None:
        return None
    return _remembered(conn, authenticator)


def _remembered(conn: HTTPConnection, authenticator: Authenticator) -> VerifiedUser | None:
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
    scheme, credentials = _authorization(conn.scope)
    by_cookie = not (scheme in ("basic", "bearer") and credentials) and TOKEN_COOKIE in conn.cookies
    if by_cookie or scheme == "basic":
        check_origin(conn, archive.settings, required=by_cookie)
    remembered = _remembered(conn, authenticator)
    if remembered is not None:
        return remembered.user()
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


# -- cross-site requests -------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)


def _source(scope: Scope) -> str | None:
    """The origin a request says it comes from: its ``Origin`` header (``null`` included), else
    the origin of its ``Referer``; None when it has neither."""
    origin = _header(scope, b"origin")
    if origin is not None:
        return _origin(origin) or origin.strip()
    referer = _header(scope, b"referer")
    return None if referer is None else _origin(referer) or "null"


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower case, the scheme's default port left out."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")


def trusted_origins(scope: Scope, settings: Settings) -> set[str]:
    """This site as the request reached it (its scheme and ``Host``), the configured public URL's
    origin and the configured CORS origins."""
    own = _origin(f"{scope.get('scheme', 'http')}://{_header(scope, b'host') or ''}")
    configured = [str(settings.public_url)] if settings.public_url else []
    return {o for o in (own, *(_origin(u) for u in configured + settings.cors_origins)) if o}


def check_origin(conn: HTTPConnection, settings: Settings, *, required: bool) -> None:
    """Raise :class:`Forbidden` for a change (a method other than GET, HEAD, OPTIONS) that comes
    from another site (by its ``Origin``, else its ``Referer``): what a cross-site request forgery
    sends. ``required``: a change that names no origin at all is refused too (browsers name it on
    every POST; only a non-browser client leaves it out, and that one has no need of a cookie)."""
    scope = conn.scope
    if scope["method"] in SAFE_METHODS:
        return
    source = _source(scope)
    if source is None:
        if required:
            raise Forbidden("a change authenticated by the login cookie must name its Origin (or Referer): "
                            "refused as a possible cross-site request forgery")
        return
    if source not in trusted_origins(scope, settings):
        raise Forbidden(f"a change sent from {source}, not from this site: refused as a possible cross-site "
                        "request forgery (a client on another site needs its origin in cors_origins)")


def new_form_token() -> str:
    """A token for the login form: the page carries it in a hidden field and in the
    :data:`LOGIN_FORM_COOKIE` cookie, and :func:`check_form_token` wants both the same."""
    return secrets.token_urlsafe(32)


def check_form_token(conn: HTTPConnection, submitted: str) -> None:
    """Raise :class:`Forbidden` unless the form's token is the one in its cookie: only a page of
    this site can set that cookie, so a form posted from another site cannot match it."""
    expected = conn.cookies.get(LOGIN_FORM_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise Forbidden("the login form was not sent from this site's login page, or it expired: log in again")


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
