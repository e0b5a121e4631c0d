"""REST API: AI findings of a study, and the reader's decision on each (accept / reject)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status

from radsight.ai import findings
from radsight.api.deps import ArchiveDep, CurrentUser, SessionDep, get_current_user
from radsight.api.schemas import DecisionRequest, Finding

router = APIRouter(prefix="/api", dependencies=[Depends(get_current_user)], tags=["ai"])


@router.get("/studies/{study_instance_uid}/findings", response_model=list[Finding])
def study_findings(study_instance_uid: str, session: SessionDep) -> list[dict[str, Any]]:
    """The study's findings, oldest first; rejected ones included (marked rejected). ``[]`` if none."""
    return findings.findings_for_study(session, study_instance_uid)


@router.post("/findings/{finding_id}/decision", response_model=Finding)
def decide_finding(
    finding_id: int, body: DecisionRequest, session: SessionDep, user: CurrentUser, archive: ArchiveDep
) -> dict[str, Any]:
    """Accept, reject or reset a finding; the user and the time are stored with it."""
    try:
        row = findings.decide(session, archive.ai_hooks, finding_id, body.status, user.username)
        session.commit()
    except findings.FindingNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return findings.finding_view(session, row)
