"""``radsight serve``: the composition root. It starts and stops, in order, everything one
archive runs: the DICOM listener, the AI engine, the worklist tasks, the HTTP processes; and
it makes every subscription through ``radsight.wiring``.

One main process runs all of them; ``http_workers`` adds HTTP processes on the same port
(``radsight.http_workers``), and ``ai_worker_processes`` AI worker processes (``radsight.ai.worker``).
"""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType

from radsight import wiring
from radsight.ai.engine import AIEngine
from radsight.archive import Archive
from radsight.dimse.scp import DicomServer
from radsight.http_server import UvicornServer, uvicorn_config
from radsight.http_workers import HttpWorkers, worker_count
from radsight.worklist.tasks import WorklistTasks

log = logging.getLogger(__name__)


def serve(archive: Archive) -> None:
    """Run until SIGINT/SIGTERM (uvicorn installs the handlers), then stop everything cleanly.

    The AI engine stops first: no new jobs are claimed; a job still running after a short grace
    is left (lease expired) to run again after the restart. Its results are stored under UIDs
    derived from the job id and its findings only with the job's completion, so a stop never
    leaves half a result set behind.
    """
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
    listener = wiring.subscribe(archive)
    engine = AIEngine(archive, process_setup=wiring.subscribe_ai) if settings.ai_enabled else None
    dicom = DicomServer(archive)
    dicom.start(settings.http_host, settings.dicom_port)
    log.info("DICOM listener %s on port %d", settings.ae_title, settings.dicom_port)
    # Webhook delivery, lapsed claims and aging; their state is in the database (radsight.worklist).
    worklist_tasks = WorklistTasks(archive, listener)
    config = uvicorn_config(archive)
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
            http_workers = HttpWorkers(
                archive, extra, sock,
                on_arrival=engine.stability.note_arrival if engine is not None else None,
                on_wake=archive.ai_hooks.queued,
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
