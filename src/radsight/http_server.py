"""The HTTP server of ``radsight serve``: the ASGI application (the security headers around the
DICOMweb fast path around the FastAPI app) on uvicorn, the same in the main process, in each
extra HTTP process and in the tests' servers (``tests/conftest.py``)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

import uvicorn

from radsight.api.app import create_app
from radsight.api.headers import SecurityHeaders, pages_policy
from radsight.api.routes_viewer import ASSETS_DIR
from radsight.archive import Archive
from radsight.dicomweb.fastpath import DicomWebFastPath


class UvicornServer(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it after shutting down, so the process would
    die of SIGTERM (exit 143). A SIGTERM is the service manager's normal stop: after our
    clean shutdown the process exits 0. SIGINT keeps uvicorn's behaviour."""

    on_exit: Callable[[], object] | None = None  # also told at once (the other HTTP processes)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.on_exit is not None:
            self.on_exit()
        if sig == signal.SIGTERM:
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def asgi_application(archive: Archive) -> SecurityHeaders:
    """What uvicorn runs: every response, the fast path's too, passes the security headers;
    ``.app`` is the :class:`DicomWebFastPath`."""
    return SecurityHeaders(DicomWebFastPath(create_app(archive)), pages_policy(ASSETS_DIR))


def uvicorn_config(archive: Archive, *, log_level: str = "info") -> uvicorn.Config:
    settings = archive.settings
    return uvicorn.Config(
        asgi_application(archive),
        host=settings.http_host,
        port=settings.http_port,
        log_level=log_level,
        server_header=False,  # no software name and version to a probe
        access_log=False,
        timeout_graceful_shutdown=10,
    )
