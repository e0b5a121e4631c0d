"""The HTTP server of ``radsight serve``: the ASGI application (FastAPI app behind the DICOMweb
fast path) on uvicorn, the same in the main process and in each extra HTTP process."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

import uvicorn

from radsight.api.app import create_app
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


def uvicorn_config(archive: Archive) -> uvicorn.Config:
    settings = archive.settings
    return uvicorn.Config(
        DicomWebFastPath(create_app(archive)),
        host=settings.http_host,
        port=settings.http_port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
