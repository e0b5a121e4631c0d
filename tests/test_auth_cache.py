"""Remembered Basic checks: trusted without the database for a short window, then re-read, so a
password change or a removed user (by any process writing the index) takes effect within it.
Also the one authentication (`security.authenticate`) and authorization (`security.authorize`)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from starlette.requests import HTTPConnection
from tests.conftest import make_settings

from radsight.api.app import create_app
from radsight.api.auth import ROLES, Authenticator, add_user, hash_password, issue_token
from radsight.api.security import (
    TOKEN_COOKIE,
    Action,
    Forbidden,
    NotAuthenticated,
    authenticate,
    authenticate_remembered,
    authorize,
)
from radsight.archive import Archive
from radsight.index.models import User

RECHECK = 1.0  # seconds; room for a slow scrypt on a loaded machine between a check and the lookup


def _set_password(archive: Archive, username: str, password: str) -> None:
    # Straight to the index, as another process (a `radsight` command) would do it.
    with archive.db.engine.begin() as c:
        c.execute(update(User).where(User.username == username).values(password_hash=hash_password(password)))


def test_recent_check_needs_no_database_then_is_read_again(archive: Archive) -> None:
    with archive.db.session() as s:
        add_user(s, "bob", "bob-password", "radiologist")
    authn = Authenticator(recheck_seconds=RECHECK)
    assert authn.recent_basic("bob", "bob-password") is None  # never verified
    assert not authn.recently_verified("bob", "bob-password")
    with archive.db.session() as s:
        assert authn.check_basic(s, "bob", "wrong-password") is None
        assert authn.check_basic(s, "bob", "bob-password") is not None
    user = authn.recent_basic("bob", "bob-password")
    assert user is not None and (user.username, user.role) == ("bob", "radiologist")
    assert authn.recent_basic("bob", "wrong-password") is None
    assert authn.recent_basic("bob", "bob-password") is not user  # each request its own object
    assert authn.recently_verified("bob", "bob-password")
    assert not authn.recently_verified("bob", "wrong-password")
    time.sleep(RECHECK + 0.1)
    assert authn.recent_basic("bob", "bob-password") is None  # the row must be read again
    assert not authn.recently_verified("bob", "bob-password")

    _set_password(archive, "bob", "new-bob-password")
    with archive.db.session() as s:
        assert authn.check_basic(s, "bob", "bob-password") is None  # the old password is refused
        assert authn.check_basic(s, "bob", "new-bob-password") is not None
    assert authn.recent_basic("bob", "bob-password") is None

    with archive.db.engine.begin() as c:
        c.execute(delete(User).where(User.username == "bob"))
    time.sleep(RECHECK + 0.1)
    with archive.db.session() as s:
        assert authn.check_basic(s, "bob", "new-bob-password") is None  # removed user


def test_password_change_and_removal_reach_dicomweb_requests(tmp_path: Path, db_url: str) -> None:
    archive = Archive.open(make_settings(tmp_path / "home", db_url))
    try:
        with archive.db.session() as s:
            add_user(s, "carol", "carol-password", "viewer")
        app = create_app(archive)
        app.state.authenticator = Authenticator(recheck_seconds=RECHECK)
        client = TestClient(app)
        old = httpx.BasicAuth("carol", "carol-password")
        assert client.get("/dicomweb/studies", auth=old).status_code == 200
        assert client.get("/dicomweb/studies", auth=old).status_code == 200  # remembered
        assert client.get("/dicomweb/studies", auth=httpx.BasicAuth("carol", "not-her-password")).status_code == 401

        _set_password(archive, "carol", "carol-new-password")
        time.sleep(RECHECK + 0.1)
        assert client.get("/dicomweb/studies", auth=old).status_code == 401
        new = httpx.BasicAuth("carol", "carol-new-password")
        assert client.get("/dicomweb/studies", auth=new).status_code == 200

        with archive.db.engine.begin() as c:
            c.execute(delete(User).where(User.username == "carol"))
        time.sleep(RECHECK + 0.1)
        assert client.get("/dicomweb/studies", auth=new).status_code == 401
        assert client.get("/wado?requestType=WADO", auth=new).status_code == 401
    finally:
        archive.close()


def _connection(headers: dict[str, str]) -> HTTPConnection:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    return HTTPConnection({"type": "http", "method": "GET", "path": "/api/x", "headers": raw})


def _basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_authenticate_names_the_user_of_any_credentials_or_gives_a_401(archive: Archive) -> None:
    with archive.db.session() as s:
        add_user(s, "dave", "dave-password", "technologist")
        user = s.scalar(select(User).where(User.username == "dave"))
        assert user is not None
        token = issue_token(s, user, 1)
    authn = Authenticator()
    refused = {
        "authentication required": {},
        "wrong user name or password": _basic("dave", "not-his-password"),
        "malformed Basic credentials": {"Authorization": "Basic //4="},
        "invalid or expired token": {"Authorization": "Bearer not-a-token"},
        "session expired; log in again": {"Cookie": f"{TOKEN_COOKIE}=not-a-token"},
    }
    for detail, headers in refused.items():
        with pytest.raises(NotAuthenticated) as info:
            authenticate(_connection(headers), authn, archive)
        assert (info.value.status_code, info.value.detail) == (401, detail)
        assert info.value.headers == {"WWW-Authenticate": 'Basic realm="RadSight", Bearer'}
    basic = _connection(_basic("dave", "dave-password"))
    assert authenticate_remembered(basic, authn) is None  # not verified yet: only authenticate can tell
    for headers in (_basic("dave", "dave-password"), {"Authorization": f"Bearer {token}"},
                    {"Cookie": f"{TOKEN_COOKIE}={token}"}):
        found = authenticate(_connection(headers), authn, archive)
        assert (found.username, found.role) == ("dave", "technologist"), headers
    remembered = authenticate_remembered(basic, authn)
    assert remembered is not None and (remembered.id, remembered.role) == (user.id, "technologist")
    assert authenticate_remembered(_connection({"Authorization": "Basic //4="}), authn) is None


def test_authorize_refuses_administration_to_all_but_admins_and_allows_the_rest() -> None:
    for role in ROLES:
        user = User(id=1, username="u", role=role, password_hash="", created_at=None)
        for action in (Action.READ, Action.WRITE):
            authorize(user, action, "/dicomweb/studies")
        if role == "admin":
            authorize(user, Action.ADMINISTER, "/api/users")
            continue
        with pytest.raises(Forbidden) as info:
            authorize(user, Action.ADMINISTER, "/api/users")
        assert (info.value.status_code, info.value.detail) == (403, "this needs the admin role")
