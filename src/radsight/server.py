"""``radsight serve``: HTTP (uvicorn), the DICOM listener, the AI engine and the worklist tasks.

One main process runs all of them; ``http_workers`` adds HTTP processes on the same port
(``radsight.http_workers``)."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from radsight.api.app import create_app
from radsight.archive import Archive
from radsight.dicomweb.fastpath import DicomWebFastPath
from radsight.dimse.scp import DicomServer
from radsight.http_workers import HttpWorkers, worker_count

log = logging.getLogger(__name__)


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


def uvicorn_config(app: FastAPI, archive: Archive) -> uvicorn.Config:
    settings = archive.settings
    return uvicorn.Config(
        DicomWebFastPath(app),  # STOW-RS and WADO-RS retrieval without FastAPI's per-request layers
        host=settings.http_host,
        port=settings.http_port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def serve(archive: Archive) -> None:
    """Run until SIGINT/SIGTERM (uvicorn installs the handlers), then stop everything cleanly.

    The AI engine stops first: no new jobs are claimed; a job still running after a short grace
    is left (lease expired) to run again after the restart. Its results are stored under UIDs
    derived from the job id and its findings only with the job's completion, so a stop never
    leaves half a result set behind.
    """
    from radsight.ai.engine import AIEngine
    from radsight.worklist.tasks import WorklistTasks

    settings = archive.settings
    # Until uvicorn installs its handlers, a SIGTERM/SIGINT (a service manager stopping us while
    # we start: the DICOM port answers before HTTP) is remembered and stops the server as soon
    # as it runs, instead of killing the process mid-start.
    server: UvicornServer | None = None
    stop_requested: list[int] = []

    def _early_stop(sig: int, _frame: FrameType | None) -> None:
        stop_requested.append(sig)
        if server is not None:
            server.should_exit = True

    previous = {s: signal.signal(s, _early_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    engine = AIEngine(archive) if settings.ai_enabled else None
    dicom = DicomServer(archive)
    dicom.start(settings.http_host, settings.dicom_port)
    log.info("DICOM listener %s on port %d", settings.ae_title, settings.dicom_port)
    app = create_app(archive)
    # Webhook delivery, lapsed claims and aging; its state is in the database (radsight.worklist).
    worklist_tasks = WorklistTasks(archive)
    config = uvicorn_config(app, archive)
    sock: socket.socket | None = None
    http_workers: HttpWorkers | None = None
    try:
        # Bound here, so that the other HTTP processes share it; a port in use ends the start
        # (uvicorn logs it and exits with status 3) through the clean stop below.
        sock = config.bind_socket()
        if engine is not None:
            engine.start()
        worklist_tasks.start()
        extra = worker_count(settings.http_workers)
        if extra and not stop_requested:
            from radsight.ai.worker import wake_all

            stability = engine.stability if engine is not None else None
            http_workers = HttpWorkers(
                archive, extra, sock,
                on_arrival=stability.note_arrival if stability is not None else None,
                on_wake=wake_all,
            )
            http_workers.start()
        server = UvicornServer(config)
        if http_workers is not None:  # they stop while this process finishes its own requests
            server.on_exit = http_workers.begin_stop
        if not stop_requested:  # a signal from here on sets server.should_exit (see _early_stop)
            server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if http_workers is not None:
            http_workers.stop()
        if sock is not None:
            sock.close()
        worklist_tasks.stop()
        if engine is not None:
            engine.stop()
        dicom.stop()
        archive.close()
        log.info("stopped")
