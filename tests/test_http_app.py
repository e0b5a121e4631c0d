"""The HTTP application as a whole: authentication everywhere, CORS only where configured."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from tests.conftest import make_settings

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
