"""The durable AI job queue: rows of ``ai_job`` in the index database.

The database is the only source of truth, so any process that can reach it can be a worker:
the in-process pool (``worker.py``) today, Celery workers on other machines later. A worker
only ever does::

    job = claim(session, worker_id, lease_seconds)   # atomic; None when nothing is due
    ... heartbeat(session, job.id, worker_id, lease_seconds) while it works ...
    with session.begin(): record_findings(...); complete(session, job, result)
    # or, on an exception:
    fail(session, job, reason)

A Celery task would be ``claim`` + the same body; the broker would only carry wake-ups, never
the job's state. Rules that make this safe with many workers:

- ``claim`` is atomic: PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite (one writer at a
  time) a conditional ``UPDATE ... WHERE id = ? AND <still claimable>`` whose row count says who won.
- A claim is a lease (``lease_expires_at``, renewed by ``heartbeat``). A running job whose lease
  expired belongs to a worker that died; the next ``claim`` takes it again.
- ``complete`` and ``fail`` only change a job this worker still holds (state ``running`` and
  ``worker`` = its id); otherwise ``LeaseLost`` is raised and the caller's transaction (with the
  findings) rolls back: a job has at most one recorded result.
- Results carry UIDs derived from the job id, so a re-run after a lost lease stores duplicates
  of what the first run stored, never a second result set.

``queue`` commits its jobs and wakes the workers; ``enqueue``, ``complete`` and ``fail`` leave
the commit to the caller (to join a wider transaction); ``claim`` and ``heartbeat`` commit
themselves (a claim must be visible at once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.orm import Session

from radsight.index.models import AIJob, AIModel, Series
from radsight.index.types import iso, utcnow

if TYPE_CHECKING:
    from radsight.archive import Archive

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)
TRIGGERS = ("stable", "manual", "api")
MAX_BACKOFF_SECONDS = 3600.0


class LeaseLost(Exception):
    """The job is no longer held by this worker (its lease expired and another worker took it)."""


class JobResult(Protocol):
    """What ``complete`` records of a pipeline result (``radsight.ai.pipeline.PipelineResult``)."""

    seg_sop_instance_uid: str
    sr_sop_instance_uid: str
    pmap_sop_instance_uid: str
    result_series_uids: list[str]


def _claimable(now: datetime) -> Any:
    return or_(
        and_(AIJob.state == QUEUED, AIJob.next_run_at <= now),
        and_(AIJob.state == RUNNING, AIJob.lease_expires_at < now),
    )


# -- producers ------------------------------------------------------------------------


def enqueue(
    session: Session,
    *,
    study_instance_uid: str,
    series_instance_uid: str | None,
    model: AIModel,
    trigger: str = "stable",
    max_attempts: int = 3,
    now: datetime | None = None,
) -> AIJob:
    """Queue ``model`` on a series, or return the job that already covers it.

    Returned instead of a new job: a queued job for the same series + model + version; a running
    one that started after the series' last instance arrived. For ``trigger='stable'`` also a
    done or failed job that started after the last arrival (nothing new to look at; a failed
    model is not retried forever by restarts). ``manual`` / ``api`` runs a finished job again.
    The caller commits.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r} (one of {', '.join(TRIGGERS)})")
    now = now or utcnow()
    same = (
        AIJob.study_instance_uid == study_instance_uid,
        AIJob.series_instance_uid == series_instance_uid,
        AIJob.model_name == model.name,
        AIJob.model_version == model.version,
    )
    # Serialise enqueues of one series + model until the caller commits: two producers (the
    # stability thread, a REST call, another process) never both find "no job" and insert two.
    if session.get_bind().dialect.name == "sqlite":
        # A write statement (matching nothing) takes SQLite's one write lock before we read.
        session.execute(update(AIJob).where(AIJob.id == -1).values(state=AIJob.state))
    else:
        key = int.from_bytes(
            hashlib.sha256(f"{series_instance_uid or study_instance_uid}|{model.name}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    series_updated: datetime | None = None
    if series_instance_uid is not None:
        series_updated = session.scalar(
            select(Series.updated_at).where(Series.series_instance_uid == series_instance_uid)
        )
    rows = select(AIJob).where(*same).order_by(AIJob.id.desc()).execution_options(populate_existing=True)
    for job in session.scalars(rows):
        started = job.started_at
        saw_everything = started is not None and (series_updated is None or started >= series_updated)
        if job.state == QUEUED:
            return job
        if job.state == RUNNING and saw_everything:
            return job
        if trigger == "stable" and job.state in (DONE, FAILED) and saw_everything:
            return job
        if job.state in (DONE, FAILED):
            break  # the newest finished job decides; older ones are history
    job = AIJob(
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        model_name=model.name,
        model_version=model.version,
        model_sha256=model.sha256,
        trigger=trigger,
        state=QUEUED,
        attempts=0,
        max_attempts=max_attempts,
        next_run_at=now,
        worker="",
        error="",
        created_at=now,
    )
    session.add(job)
    session.flush()
    return job


def queue(
    archive: Archive, study_instance_uid: str, plan: Sequence[tuple[str, AIModel]], *, trigger: str
) -> list[AIJob]:
    """``enqueue`` each (series, model) of ``plan`` in one transaction, commit, then tell
    ``archive.ai_hooks.job_queued`` (the workers wake at once instead of at their next poll)."""
    if not plan:
        return []
    with archive.db.session() as s:
        queued = [
            enqueue(
                s,
                study_instance_uid=study_instance_uid,
                series_instance_uid=series_uid,
                model=model,
                trigger=trigger,
                max_attempts=archive.settings.ai_job_max_attempts,
            )
            for series_uid, model in plan
        ]
        s.commit()
    archive.ai_hooks.queued()
    return queued


# -- workers --------------------------------------------------------------------------


def claim(
    session: Session,
    worker_id: str,
    lease_seconds: float,
    *,
    job_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> AIJob | None:
    """Atomically take the next due job (queued, or running with an expired lease) and commit.

    Returns a detached snapshot of the job as claimed (pass it to ``complete`` / ``fail``).

    ``job_ids`` restricts the choice (``radsight ai run --wait`` runs only its own jobs).
    A job taken back from a dead worker whose attempts are used up is failed instead.
    """
    now = now or utcnow()
    session.commit()  # start from a fresh snapshot; nothing of the caller's may be pending
    _fail_exhausted_leases(session, now)
    lease = now + timedelta(seconds=lease_seconds)
    where = [_claimable(now), AIJob.attempts < AIJob.max_attempts]
    if job_ids is not None:
        if not job_ids:
            return None
        where.append(AIJob.id.in_(list(job_ids)))
    order = (AIJob.next_run_at, AIJob.id)
    values = dict(
        state=RUNNING,
        attempts=AIJob.attempts + 1,
        worker=worker_id[:128],
        lease_expires_at=lease,
        started_at=now,
        finished_at=None,
    )
    if session.get_bind().dialect.name == "postgresql":
        job_id = session.scalar(
            select(AIJob.id).where(*where).order_by(*order).limit(1).with_for_update(skip_locked=True)
        )
        if job_id is None:
            session.commit()
            return None
        session.execute(update(AIJob).where(AIJob.id == job_id).values(**values))
        session.commit()
        return _snapshot(session, job_id)
    # SQLite: the read runs outside a write transaction; the UPDATE re-checks the condition, so
    # of two workers that chose the same row exactly one changes it (rowcount 1).
    for _ in range(20):
        job_id = session.scalar(select(AIJob.id).where(*where).order_by(*order).limit(1))
        session.commit()
        if job_id is None:
            return None
        result = session.execute(
            update(AIJob)
            .where(AIJob.id == job_id, *where)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return _snapshot(session, job_id)
    return None


def _snapshot(session: Session, job_id: int) -> AIJob:
    """The claimed job, detached: the worker's own copy (its ``worker`` is the claim's identity)."""
    job = session.get_one(AIJob, job_id, populate_existing=True)
    session.expunge(job)
    return job


def _fail_exhausted_leases(session: Session, now: datetime) -> None:
    """Jobs whose worker died on the last allowed attempt: failed, with the reason."""
    result = session.execute(
        update(AIJob)
        .where(AIJob.state == RUNNING, AIJob.lease_expires_at < now, AIJob.attempts >= AIJob.max_attempts)
        .values(
            state=FAILED,
            error="the worker was lost (lease expired) on the last allowed attempt",
            lease_expires_at=None,
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        session.commit()
    else:
        session.rollback()


def heartbeat(
    session: Session, job_id: int, worker_id: str, lease_seconds: float, *, now: datetime | None = None
) -> bool:
    """Extend the lease of a job this worker holds; False if it lost the job. Commits."""
    now = now or utcnow()
    result = session.execute(
        update(AIJob)
        .where(AIJob.id == job_id, AIJob.state == RUNNING, AIJob.worker == worker_id[:128])
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _still_held(job: AIJob) -> Any:
    return and_(AIJob.id == job.id, AIJob.state == RUNNING, AIJob.worker == job.worker)


def result_dict(result: JobResult) -> dict[str, Any]:
    return {
        "seg_sop_instance_uid": result.seg_sop_instance_uid or "",
        "sr_sop_instance_uid": result.sr_sop_instance_uid or "",
        "pmap_sop_instance_uid": result.pmap_sop_instance_uid or "",
        "result_series_uids": list(result.result_series_uids or []),
    }


def complete(session: Session, job: AIJob, result: JobResult, *, now: datetime | None = None) -> None:
    """Mark the job done with its result UIDs, in the caller's transaction (with the findings).

    Raises ``LeaseLost`` if another worker has taken the job meanwhile: roll back, record nothing.
    """
    now = now or utcnow()
    outcome = session.execute(
        update(AIJob)
        .where(_still_held(job))
        .values(
            state=DONE,
            error="",
            result_json=json.dumps(result_dict(result)),
            lease_expires_at=None,
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if outcome.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"job {job.id} is no longer held by {job.worker}")
    _refresh_later(session, job)


def _refresh_later(session: Session, job: AIJob) -> None:
    """The UPDATE bypassed the ORM: reload the job's attributes on next access."""
    session.flush()
    if job in session:
        session.expire(job)


def backoff_seconds(attempts: int, base: float) -> float:
    """Wait before the next try after ``attempts`` runs: base, 2 base, 4 base... (capped)."""
    return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


def fail(
    session: Session,
    job: AIJob,
    error: str,
    *,
    backoff_base: float = 10.0,
    permanent: bool = False,
    now: datetime | None = None,
) -> str:
    """Record a failed run: queued again after a back-off while attempts remain, else ``failed``.

    ``permanent`` fails at once (e.g. the model package is gone). Returns the new state; the
    caller commits. Raises ``LeaseLost`` if the job is no longer this worker's.
    """
    now = now or utcnow()
    error = error[:4000]
    if permanent or job.attempts >= job.max_attempts:
        values: dict[str, Any] = dict(state=FAILED, error=error, lease_expires_at=None, finished_at=now)
    else:
        delay = backoff_seconds(job.attempts, backoff_base)
        values = dict(
            state=QUEUED,
            error=error,
            lease_expires_at=None,
            worker="",
            next_run_at=now + timedelta(seconds=delay),
        )
    outcome = session.execute(
        update(AIJob).where(_still_held(job)).values(**values).execution_options(synchronize_session=False)
    )
    if outcome.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"job {job.id} is no longer held by {job.worker}")
    _refresh_later(session, job)
    return str(values["state"])


# -- readers --------------------------------------------------------------------------


def get_job(session: Session, job_id: int) -> AIJob | None:
    return session.get(AIJob, job_id, populate_existing=True)


def jobs_for_study(session: Session, study_instance_uid: str) -> list[AIJob]:
    return list(session.scalars(select(AIJob).where(AIJob.study_instance_uid == study_instance_uid).order_by(AIJob.id)))


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as the REST API and the CLI show it."""

    id: int
    study_instance_uid: str
    series_instance_uid: str | None
    model: str
    version: str
    trigger: str
    state: str
    attempts: int
    max_attempts: int
    error: str
    worker: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    next_run_at: str | None
    result: dict[str, Any] | None

    @classmethod
    def of(cls, job: AIJob) -> JobView:
        return cls(
            id=job.id,
            study_instance_uid=job.study_instance_uid,
            series_instance_uid=job.series_instance_uid,
            model=job.model_name,
            version=job.model_version,
            trigger=job.trigger,
            state=job.state,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error=job.error,
            worker=job.worker,
            created_at=iso(job.created_at),
            started_at=iso(job.started_at),
            finished_at=iso(job.finished_at),
            next_run_at=iso(job.next_run_at) if job.state == QUEUED else None,
            result=json.loads(job.result_json) if job.result_json else None,
        )
