"""The HTTP application as a whole: authentication everywhere, CORS only where configured."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_settings

from radsight.api import security
from radsight.api.app import create_app
from radsight.api.auth import add_user
from radsight.archive import Archive

OHIF = "http://ohif.example:3000"


def _client(tmp_path: Path, db_url: str, **settings: object) -> tuple[TestClient, Archive]:
    archive = Archive.open(make_settings(tmp_path / "home", db_url, **settings))
    with archive.db.session() as s:
        add_user(s, "alice", "alice-password", "admin")
    return TestClient(create_app(archive)), archive


def test_cors_preflight_and_headers_for_configured_origins_only(tmp_path: Path, db_url: str) -> None:
    client, archive = _client(tmp_path, db_url, cors_origins=[OHIF])
    pre = client.options("/dicomweb/studies", headers={
        "Origin": OHIF, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,accept"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == OHIF
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = client.get("/dicomweb/studies", headers={"Origin": OHIF}, auth=httpx.BasicAuth("alice", "alice-password"))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == OHIF
    # Another origin gets no CORS grant, and credentials are still required for the request itself.
    other = client.get("/dicomweb/studies", headers={"Origin": "http://evil.example"})
    assert other.status_code == 401 and "access-control-allow-origin" not in other.headers
    archive.close()


def test_no_cors_by_default_and_no_unauthenticated_routes(tmp_path: Path, db_url: str) -> None:
    client, archive = _client(tmp_path, db_url)
    pre = client.options("/dicomweb/studies", headers={"Origin": OHIF, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers
    open_routes = {"/health", "/login"}
    for route in client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", set()) or set()
        if "GET" not in methods or "{" in path or path in open_routes or path.startswith("/assets"):
            continue
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (401, 303, 307), f"{path} answered {r.status_code} without credentials"
    assert client.get("/health").status_code == 200
    archive.close()


def test_every_authenticated_route_asks_authorize(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """REST API, DICOMweb, WADO-URI and the viewer pages all pass through security.authorize: a rule
    added there (viewers may not read) reaches each of them, and the admin routes need the admin role."""
    client, archive = _client(tmp_path, db_url)
    with archive.db.session() as s:
        add_user(s, "victor", "victor-password", "viewer")
    viewer, admin = httpx.BasicAuth("victor", "victor-password"), httpx.BasicAuth("alice", "alice-password")
    paths = ["/api/me", "/api/worklist", "/api/models", "/dicomweb/studies", "/wado?requestType=WADO", "/viewer"]

    def refused(path: str, auth: httpx.BasicAuth) -> bool:
        r = client.get(path, auth=auth, follow_redirects=False)
        if path == "/viewer":  # a page sends whoever it refuses to the login page
            return r.status_code == 303
        return r.status_code == 403 and "viewer role may not read" in r.json()["detail"]

    assert not any(refused(p, viewer) for p in paths)
    r = client.post("/api/users", auth=viewer, json={"username": "x", "password": "x-password", "role": "viewer"})
    assert (r.status_code, r.json()["detail"]) == (403, "this needs the admin role")
    monkeypatch.setitem(security.ROLES_ALLOWED, security.Action.READ, frozenset({"admin"}))
    for path in paths:
        assert refused(path, viewer), path
        assert not refused(path, admin), path
    archive.close()
