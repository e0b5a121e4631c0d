"""REST API: AI jobs (run a study on demand, follow its jobs)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from starlette.concurrency import run_in_threadpool

from radsight.ai import jobs
from radsight.ai.engine import ModelNotFound, StudyNotFound, request_run
from radsight.api.deps import ArchiveDep, SessionDep, get_current_user
from radsight.api.schemas import Job, RunRequest, RunResponse

router = APIRouter(prefix="/api", dependencies=[Depends(get_current_user)], tags=["ai"])


@router.post("/studies/{study_instance_uid}/ai/run", status_code=status.HTTP_202_ACCEPTED, response_model=RunResponse)
async def run_study(
    study_instance_uid: str, archive: ArchiveDep, body: RunRequest | None = None
) -> dict[str, Any]:
    """Queue the study's matching models; 202 with the jobs (an identical queued job is reused)."""
    model = body.model if body is not None else None
    try:
        # Routing reads the index and the first file of each series: off the event loop.
        queued = await run_in_threadpool(request_run, archive, study_instance_uid, model_name=model, trigger="api")
    except StudyNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if not queued:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"no installed model matches a series of study {study_instance_uid}"
            + (f" (model {model!r})" if model else ""),
        )
    return {"job_ids": [j.id for j in queued], "jobs": [asdict(jobs.JobView.of(j)) for j in queued]}


@router.get("/studies/{study_instance_uid}/jobs", response_model=list[Job])
def study_jobs(study_instance_uid: str, session: SessionDep) -> list[dict[str, Any]]:
    """The study's AI jobs, oldest first (an unknown study has none: ``[]``)."""
    return [asdict(jobs.JobView.of(j)) for j in jobs.jobs_for_study(session, study_instance_uid)]


@router.get("/jobs/{job_id}", response_model=Job)
def get_job(job_id: int, session: SessionDep) -> dict[str, Any]:
    job = jobs.get_job(session, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return asdict(jobs.JobView.of(job))
