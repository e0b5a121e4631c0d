"""More HTTP processes for ``radsight serve``: the same application on the same listening socket.

Why: handling a request (multipart parsing, pydicom, SQLAlchemy, JSON) is Python and holds the
GIL, so one process uses one core however many requests wait (measured: STOW-RS in one process
tops out at about one core of server CPU; see docs/benchmarks.md). ``http_workers`` processes
share the socket the main process listens on; the kernel hands each new connection to whichever
process accepts it first, as in uvicorn's and gunicorn's worker models.

The main process keeps what must run once: the DICOM listener, the AI engine (stability trigger
and worker pool) and the worklist's background tasks; it serves HTTP too. An extra process runs
only uvicorn with the application and its own archive connection. What crosses processes:

- the arrival of each non-result instance (study and series UIDs only) for the AI stability
  trigger, and the "a job was queued" wake-up of the AI workers: one queue to the main process;
- everything else is in the database already (index, worklist rows and events, users, tokens,
  AI jobs), which is also how several machines would share one archive.

An extra process that dies is started again. It dies with the main process (``PR_SET_PDEATHSIG``):
an orphan would keep the port and the spool. The arrival queue is memory only, like the trigger's
own map: after a crash, ``StabilityMonitor.recover`` watches the recently updated series again.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radsight.archive import Archive

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG, _PR_SET_NAME = 1, 15  # <linux/prctl.h>
PROCESS_NAME = b"radsight-http"  # what ps -o comm and top show for an extra HTTP process
_STOP = ("stop",)
# Exit codes of a process that was told to stop (a Ctrl-C reaches the whole process group):
# not restarted. Anything else (killed by the OOM killer, a crash) is.
_STOPPED_ON_PURPOSE = (0, -signal.SIGINT, -signal.SIGTERM)


def worker_count(configured: int) -> int:
    """Extra HTTP processes for ``http_workers`` (0: one process per usable core, at most 4)."""
    if configured > 0:
        return configured - 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4)) - 1


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the main process dies, however it dies, and name
    it ``radsight-http`` for ps and top.

    No well-kept Python library exposes prctl; two calls through ctypes are all that is needed.
    A SIGKILL, not a graceful stop: a crash of the server must not leave a process that still
    accepts connections (and answers) on its port.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(PROCESS_NAME))
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os._exit(1)


def _worker_main(settings_data: dict[str, Any], sock: socket.socket, messages: Any, parent_pid: int) -> None:
    """One extra HTTP process: the application on ``sock`` until SIGTERM/SIGINT."""
    _die_with_parent(parent_pid)
    from radsight import wiring
    from radsight.archive import Archive
    from radsight.config import Settings
    from radsight.http_server import UvicornServer, uvicorn_config
    from radsight.worklist.tasks import WorklistTasks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    archive = Archive.open(Settings(**settings_data), migrate=False)
    wiring.forward_to_main(archive, messages.put)
    listener = wiring.subscribe(archive)
    # This process's own "study touched" marks; the main process does the housekeeping.
    worklist_tasks = WorklistTasks(archive, listener, housekeeping=False)
    worklist_tasks.start()
    server = UvicornServer(uvicorn_config(archive))
    try:
        server.run(sockets=[sock])
    finally:
        worklist_tasks.stop(2)
        archive.close()


class HttpWorkers:
    """``n`` extra HTTP processes on ``sock``, supervised from the main process.

    ``on_arrival(study_uid, series_uid)`` and ``on_wake()`` run on this object's thread for
    the messages the processes send.
    """

    def __init__(
        self,
        archive: Archive,
        n: int,
        sock: socket.socket,
        *,
        on_arrival: Callable[[str, str], object] | None = None,
        on_wake: Callable[[], object] | None = None,
    ) -> None:
        import multiprocessing

        self.archive = archive
        self.n = n
        self.sock = sock
        self.on_arrival = on_arrival
        self.on_wake = on_wake
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._messages: Any = self._ctx.Queue()
        self._procs: list[Any] = []
        self._stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _spawn(self, i: int) -> Any:
        p = self._ctx.Process(
            target=_worker_main,
            args=(self.archive.settings.model_dump(), self.sock, self._messages, os.getpid()),
            name=f"http-worker-{i}",
            daemon=False,  # it has to shut its own uvicorn down; stop() waits for it
        )
        p.start()
        return p

    def start(self) -> None:
        with self._lock:
            self._procs = [self._spawn(i) for i in range(self.n)]
        self._thread = threading.Thread(target=self._run, name="http-workers", daemon=True)
        self._thread.start()
        log.info("HTTP: %d more process(es) on the same port: %s", self.n, self.pids)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def _run(self) -> None:
        last_check = time.monotonic()
        while True:
            try:
                msg = self._messages.get(timeout=0.5)
            except queue.Empty:
                msg = None
            except (EOFError, OSError):
                return
            if msg == _STOP:
                return
            if msg is not None:
                self._dispatch(msg)
            now = time.monotonic()
            if now - last_check >= 1.0:
                last_check = now
                self._restart_dead()

    def _dispatch(self, msg: tuple[str, ...]) -> None:
        try:
            if msg[0] == "arrival" and self.on_arrival is not None:
                self.on_arrival(msg[1], msg[2])
            elif msg[0] == "wake" and self.on_wake is not None:
                self.on_wake()
        except Exception:
            log.exception("handling %s from an HTTP process failed", msg[0])

    def _restart_dead(self) -> None:
        with self._lock:
            if self._stopping:
                return
            died = False
            for i, p in enumerate(self._procs):
                if not p.is_alive() and p.exitcode not in _STOPPED_ON_PURPOSE:
                    log.error("HTTP process %s ended (exit code %s); starting another", p.pid, p.exitcode)
                    p.join(0)
                    self._procs[i] = self._spawn(i)
                    died = True
        if died:
            # What it was receiving when it died was never acknowledged: its spool folder (its
            # lock went with it) would otherwise wait for the next restart, with up to a whole
            # upload in it.
            removed = self.archive.storage.clean_spool()
            if removed:
                log.warning("removed %d incomplete upload(s) of the HTTP process that died", removed)

    def begin_stop(self) -> None:
        """SIGTERM each process (uvicorn's graceful stop: open requests finish); no waiting."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        for p in procs:
            if p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        """``begin_stop`` (again: a process restarted meanwhile gets it too), then wait."""
        self.begin_stop()
        procs = list(self._procs)
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.warning("HTTP process %s did not stop in %.0f s; killed", p.pid, timeout)
                p.kill()
                p.join(5)
        if self._thread is not None:
            self._messages.put(_STOP)  # after the processes: what they sent before is handled first
            self._thread.join(5)
            self._thread = None
        self._messages.close()
