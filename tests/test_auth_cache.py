"""Remembered Basic checks: trusted without the database for a short window, then re-read, so a
password change or a removed user (by any process writing the index) takes effect within it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import delete, update
from tests.conftest import make_settings

from radsight.api.app import create_app
from radsight.api.auth import Authenticator, add_user, hash_password
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
