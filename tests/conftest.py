"""Shared fixtures: real archives on SQLite and on the PostgreSQL server on localhost,
and a real ``radsight serve`` (HTTP + DICOM listener) on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from radsight.archive import Archive
from radsight.config import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RADSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
PG_ADMIN_URL = os.environ.get("RADSIGHT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("RADSIGHT_TEST_BACKENDS", "sqlite,postgres").split(",") if b]

# Debian's Chromium for the browser tests, with the flags this closed network needs.
CHROMIUM = os.environ.get("RADSIGHT_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-secret-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set RADSIGHT_SHARED_DATA)")
    return SHARED_DATA


def _pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"radsight_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        yield from _pg_database()
    else:
        yield f"sqlite:///{tmp_path / 'index.sqlite'}"


def make_settings(home: Path, db_url: str, **kw: object) -> Settings:
    kw.setdefault("ai_builtin_models", False)  # tests install the models they need; see test_ai_builtin.py
    # Worker threads start in milliseconds; the process pool (serve's default) has its own tests.
    kw.setdefault("ai_worker_processes", False)
    return Settings(home=home, database_url=db_url, **kw)  # type: ignore[arg-type]


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    a = Archive.open(make_settings(tmp_path / "home", db_url))
    yield a
    a.close()


@dataclass
class RunningServer:
    archive: Archive
    base_url: str
    dicom_port: int
    ae_title: str
    username: str = ADMIN_USER
    password: str = ADMIN_PASSWORD
    ai_engine: object | None = None
    worklist_listener: Any = None  # wiring.subscribe's listener (WorklistTasks flushes it)
    asgi: Any = None  # the DicomWebFastPath around the application (inside the security headers)

    @property
    def dicomweb(self) -> str:
        return f"{self.base_url}/dicomweb"

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, auth=(self.username, self.password), timeout=60, **kw)


@contextlib.contextmanager
def verified_for_a_minute(server: RunningServer) -> Iterator[None]:
    """Basic credentials, once verified, trusted for a minute instead of a second (a fresh
    Authenticator with that recheck): tests that the fast path takes a request send it right after
    a verified call, and on a loaded machine "right after" can be more than a second."""
    from radsight.api.auth import Authenticator

    state = server.asgi.app.state
    before = state.authenticator
    state.authenticator = Authenticator(recheck_seconds=60.0)
    try:
        yield
    finally:
        state.authenticator = before


def start_server(
    home: Path, db_url: str, *, ai: bool = False, **settings: object
) -> tuple[RunningServer, object, threading.Thread]:
    """``ai=True`` also starts the AI engine (stability trigger + workers), as ``radsight serve`` does."""
    import uvicorn

    from radsight import wiring
    from radsight.api.auth import add_user
    from radsight.dimse.scp import DicomServer
    from radsight.http_server import uvicorn_config

    http_port, dicom_port = free_port(), free_port()
    s = make_settings(home, db_url, http_port=http_port, dicom_port=dicom_port, ae_title="RADSIGHT",
                      allow_any_calling_ae=True, **settings)
    archive = Archive.open(s)
    with archive.db.session() as sess:
        add_user(sess, ADMIN_USER, ADMIN_PASSWORD, "admin")
    listener = wiring.subscribe(archive)  # as radsight serve does (radsight.server)
    engine = None
    if ai:
        from radsight.ai.engine import AIEngine

        engine = AIEngine(archive, process_setup=wiring.subscribe_ai)
        engine.start()
    dicom = DicomServer(archive)
    dicom.start("127.0.0.1", dicom_port)
    # As radsight serve runs it: security headers, STOW-RS and WADO-RS on their fast path.
    config = uvicorn_config(archive, log_level="warning")
    asgi = config.app.app  # the DicomWebFastPath inside the security headers
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    running = RunningServer(archive, f"http://127.0.0.1:{http_port}", dicom_port, "RADSIGHT", ai_engine=engine,
                            worklist_listener=listener, asgi=asgi)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        if engine is not None:
            engine.stop()
        dicom.stop()
        archive.close()

    return running, stop, thread


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A running RadSight, shared by the tests of one module (use unique UIDs per test)."""
    home = tmp_path_factory.mktemp("server")
    if request.param == "postgres":
        gen = _pg_database()
        url = next(gen)
    else:
        gen = None
        url = f"sqlite:///{home / 'index.sqlite'}"
    running, stop, _ = start_server(home / "home", url)
    try:
        yield running
    finally:
        stop()  # type: ignore[operator]
        if gen is not None:
            gen.close()
