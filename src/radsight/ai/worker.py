"""The in-process worker pool: threads that take jobs from the queue (``jobs.py``) and run them.

Threads (``WorkerPool``) or processes (``ProcessWorkerPool``, setting ``ai_worker_processes``):
ONNX Runtime releases the GIL while it computes, but building SEG/SR with highdicom holds it,
so processes keep HTTP and DIMSE fast during large jobs (tests/test_ai_engine.py times HTTP
requests during inference). ONNX Runtime sessions get ``intra_op_threads(n)`` threads so that
n workers share the machine's cores instead of oversubscribing them, and each pool opens the
installed models' sessions when it starts (``warm_up``), not at the first study.

One job: ``registry.get_package`` -> ``pipeline.run_model`` -> in ONE transaction
``findings.record_findings`` + the ``Archive.ai_hooks.job_recorded`` subscribers +
``jobs.complete``. An exception becomes ``jobs.fail`` (retried with back-off). A stopping
pool leaves its running jobs with an expired lease: the next start (or another worker) runs
them again, and because result UIDs derive from the job id the re-run can only store
duplicates, never a second result set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from radsight.ai import jobs
from radsight.ai.package import ModelPackageError
from radsight.index.models import AIJob
from radsight.index.types import utcnow

if TYPE_CHECKING:
    from radsight.archive import Archive

log = logging.getLogger(__name__)

Execute = Callable[["Archive", AIJob], Any]
ProcessSetup = Callable[["Archive"], object]
"""Run in each worker process on its archive before it takes jobs (the composition root's subscriptions).
A module-level function: it is pickled by name for the spawned process."""
Record = Callable[[Any, AIJob, Any], object]

def intra_op_threads(workers: int, cores: int | None = None) -> int:
    """ONNX Runtime threads per worker so that ``workers`` sessions fill the cores, no more."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def warm_up(archive: Archive) -> None:
    """Before the first job: import the result builders (highdicom) and open every enabled
    model's ONNX session, so that the first study after a start is not seconds slower."""
    from radsight.ai import inference, pipeline  # noqa: F401 (the import is the warm-up)
    from radsight.ai.registry import get_package, list_models

    with archive.db.session() as s:
        names = [m.name for m in list_models(s) if m.enabled]
    for name in names:
        try:
            inference.session_for(get_package(archive, name))
        except Exception as exc:  # a broken package fails its jobs with the reason later
            log.warning("model %s could not be loaded at start-up: %s", name, exc)


class JobVersionMismatch(Exception):
    """The installed model is not the version the job was queued for."""


def execute_job(archive: Archive, job: AIJob) -> Any:
    """Run the job's model on its series and store the results (SEG/SR/parametric map)."""
    from radsight.ai import pipeline, registry

    package = registry.get_package(archive, job.model_name)
    version = package.metadata.version
    if version != job.model_version:
        raise JobVersionMismatch(
            f"model {job.model_name} is now version {version}; the job was queued for {job.model_version}"
        )
    return pipeline.run_model(
        archive,
        package,
        study_instance_uid=job.study_instance_uid,
        series_instance_uid=job.series_instance_uid or "",
        job_id=job.id,
    )


def record_findings(session: Any, job: AIJob, result: Any) -> object:
    from radsight.ai import findings

    return findings.record_findings(session, job, result)


_PERMANENT: tuple[type[BaseException], ...] = (ModelPackageError, JobVersionMismatch, LookupError)


def run_claimed(
    archive: Archive,
    job: AIJob,
    *,
    execute: Execute = execute_job,
    record: Record = record_findings,
    stopping: Callable[[], bool] = lambda: False,
) -> str:
    """Run one claimed job to its next state (done, queued for a retry, failed); returns it."""
    settings = archive.settings
    try:
        result = execute(archive, job)
    except Exception as exc:
        if stopping():
            log.warning("job %d interrupted by shutdown (%s); it will run again", job.id, exc)
            return jobs.RUNNING
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("job %d (%s on %s) failed: %s", job.id, job.model_name, job.series_instance_uid, reason)
        with archive.db.session() as s:
            try:
                state = jobs.fail(
                    s,
                    job,
                    reason,
                    backoff_base=settings.ai_retry_backoff_seconds,
                    permanent=isinstance(exc, _PERMANENT),
                )
                s.commit()
            except jobs.LeaseLost:
                s.rollback()
                log.warning("job %d was taken by another worker; not recording the failure", job.id)
                return jobs.RUNNING
        return state
    with archive.db.session() as s:
        try:
            record(s, job, result)
            archive.ai_hooks.recorded(s, job)  # same transaction (the worklist's priority, event, alert)
            jobs.complete(s, job, result)
            s.commit()
        except jobs.LeaseLost:
            s.rollback()
            log.warning("job %d was taken by another worker; its result is recorded by that run", job.id)
            return jobs.RUNNING
    log.info("job %d (%s %s) done", job.id, job.model_name, job.model_version)
    return jobs.DONE


class WorkerPool:
    """``n`` threads that claim and run jobs until ``stop()``."""

    def __init__(
        self,
        archive: Archive,
        n: int,
        *,
        execute: Execute = execute_job,
        record: Record = record_findings,
        poll_seconds: float = 1.0,
        lease_seconds: float | None = None,
        onnx_threads: int | None = None,
    ) -> None:
        self.archive = archive
        self.n = n
        self.onnx_threads = intra_op_threads(n) if onnx_threads is None else onnx_threads
        self.execute = execute
        self.record = record
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds or archive.settings.ai_lease_seconds
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._pending_wake = False
        self._threads: list[threading.Thread] = []
        self._held: dict[int, str] = {}  # job id -> worker id, for heartbeats and release
        self._held_lock = threading.Lock()
        self.completed = 0
        self.prefix = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:04x}"

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        from radsight.ai import inference

        self._stop.clear()
        self.archive.ai_hooks.job_queued.append(self.wake)
        inference.configure(intra_op_threads=self.onnx_threads)
        if self.n:
            threading.Thread(target=self._warm_up, name="ai-warm-up", daemon=True).start()
        for i in range(self.n):
            t = threading.Thread(target=self._loop, args=(f"{self.prefix}:w{i}",), name=f"ai-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeats, name="ai-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; wait up to ``timeout`` for running jobs, then leave them to a restart."""
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        with contextlib.suppress(ValueError):
            self.archive.ai_hooks.job_queued.remove(self.wake)
        with self._held_lock:
            held = dict(self._held)
        if held:
            # Expire their leases now so a restart takes them at once instead of after a lease.
            with self.archive.db.session() as s:
                for job_id, worker_id in held.items():
                    s.execute(
                        update(AIJob)
                        .where(AIJob.id == job_id, AIJob.state == jobs.RUNNING, AIJob.worker == worker_id)
                        .values(lease_expires_at=utcnow())
                    )
                s.commit()
            log.warning("stopped with %d job(s) running: %s; they will run again", len(held), sorted(held))

    def wake(self) -> None:
        with self._wake:
            self._pending_wake = True
            self._wake.notify_all()

    @property
    def running(self) -> list[int]:
        with self._held_lock:
            return sorted(self._held)

    # -- threads ------------------------------------------------------------------------
    def _warm_up(self) -> None:
        try:
            warm_up(self.archive)
        except Exception:
            log.exception("AI warm-up failed")

    def _loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            try:
                with self.archive.db.session() as s:
                    job = jobs.claim(s, worker_id, self.lease_seconds)
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                with self._wake:
                    if not self._pending_wake:
                        self._wake.wait(self.poll_seconds)
                    self._pending_wake = False
                continue
            with self._held_lock:
                self._held[job.id] = worker_id
            state = jobs.RUNNING
            try:
                log.info("%s took job %d (%s on %s, attempt %d)", worker_id, job.id, job.model_name,
                         job.series_instance_uid, job.attempts)
                state = run_claimed(
                    self.archive, job, execute=self.execute, record=self.record, stopping=self._stop.is_set
                )
                if state == jobs.DONE:
                    self.completed += 1
            except Exception:
                log.exception("job %d: unexpected error in the worker", job.id)
            finally:
                if state != jobs.RUNNING or not self._stop.is_set():
                    with self._held_lock:
                        self._held.pop(job.id, None)

    def _holds(self, job_id: int) -> bool:
        with self._held_lock:
            return job_id in self._held

    def _heartbeats(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._held_lock:
                held = dict(self._held)
            for job_id, worker_id in held.items():
                try:
                    with self.archive.db.session() as s:
                        if not jobs.heartbeat(s, job_id, worker_id, self.lease_seconds) and self._holds(job_id):
                            # (a job that finished since the copy above is no longer RUNNING: not lost)
                            log.warning("job %d: lease lost to another worker", job_id)
                except Exception:
                    log.exception("heartbeat for job %d failed", job_id)


def _process_main(
    settings_data: dict[str, Any], stop: Any, wake: Any, poll_seconds: float, threads: int, server_pid: int,
    setup: ProcessSetup | None,
) -> None:
    """A worker process: its own archive connection and a one-thread pool, until ``stop`` is set."""
    from radsight.archive import Archive
    from radsight.config import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    archive = Archive.open(Settings(**settings_data), migrate=False)
    if setup is not None:
        setup(archive)
    pool = WorkerPool(archive, 1, poll_seconds=poll_seconds, onnx_threads=threads)
    pool.start()
    try:
        while not stop.is_set():
            if os.getppid() != server_pid:  # the server died (SIGKILL): do not run on as an orphan
                log.warning("the server process is gone; AI worker %d stops", os.getpid())
                break
            if wake.wait(0.5):
                wake.clear()
                pool.wake()
    finally:
        pool.stop(timeout=1.0)
        archive.close()


class ProcessWorkerPool:
    """``n`` worker processes, each running the same claim loop as ``WorkerPool`` (one thread).

    For when the GIL matters: ONNX Runtime releases it, but building and encoding SEG/SR with
    highdicom/pydicom is Python and holds it (measured: most of a 112-slice job), which slows
    HTTP and DIMSE in the server process. A process holds only what it claimed in the database,
    exactly like a remote (Celery) worker would.
    """

    def __init__(
        self, archive: Archive, n: int, *, poll_seconds: float = 1.0, setup: ProcessSetup | None = None
    ) -> None:
        import multiprocessing

        self.archive = archive
        self.n = n
        self.poll_seconds = poll_seconds
        self.setup = setup
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._stop = self._ctx.Event()
        self._wake = self._ctx.Event()
        self._procs: list[Any] = []

    def start(self) -> None:
        self._stop.clear()
        self.archive.ai_hooks.job_queued.append(self.wake)
        data = self.archive.settings.model_dump()
        args = (data, self._stop, self._wake, self.poll_seconds, intra_op_threads(self.n), os.getpid(), self.setup)
        for i in range(self.n):
            p = self._ctx.Process(
                target=_process_main, args=args,
                name=f"ai-worker-{i}", daemon=True,
            )
            p.start()
            self._procs.append(p)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the processes to stop; one still busy after ``timeout`` is killed and its jobs released."""
        self._stop.set()
        with contextlib.suppress(ValueError):
            self.archive.ai_hooks.job_queued.remove(self.wake)
        killed: list[int] = []
        for p in self._procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(5)
                killed.append(p.pid)
        self._procs = []
        if killed:
            host = socket.gethostname()
            with self.archive.db.session() as s:
                for pid in killed:
                    s.execute(
                        update(AIJob)
                        .where(AIJob.state == jobs.RUNNING, AIJob.worker.like(f"{host}:{pid}:%"))
                        .values(lease_expires_at=utcnow())
                    )
                s.commit()
            log.warning("killed busy AI worker process(es) %s; their jobs will run again", killed)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]
