"""Findings rows (ai_finding): what a job found, and the reader's decision on each.

Decisions never delete: a rejected finding stays, marked rejected, with who and when.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from radsight.ai.hooks import AIHooks
from radsight.ai.result_types import PipelineResult
from radsight.index.models import AIFinding, AIJob, Instance, Series
from radsight.index.types import iso, utcnow

Decision = Literal["accepted", "rejected", "pending"]
DECISIONS: tuple[str, ...] = ("accepted", "rejected", "pending")


class FindingNotFound(LookupError):
    pass


def record_findings(session: Session, job: AIJob, result: PipelineResult) -> list[AIFinding]:
    """Replace the job's findings with ``result``'s (idempotent for a retried job). Does not commit."""
    session.execute(delete(AIFinding).where(AIFinding.job_pk == job.id))
    now = utcnow()
    rows: list[AIFinding] = []
    for f in result.findings:
        row = AIFinding(
            job_pk=job.id,
            study_instance_uid=job.study_instance_uid,
            series_instance_uid=str(f.location.get("series_instance_uid") or job.series_instance_uid or ""),
            model_name=job.model_name,
            model_version=job.model_version,
            label=f.label[:64],
            probability=None if f.probability is None else float(f.probability),
            positive=bool(f.positive),
            measurements_json=json.dumps(f.measurements),
            location_json=json.dumps(f.location),
            seg_sop_instance_uid=result.seg_sop_instance_uid,
            sr_sop_instance_uid=result.sr_sop_instance_uid,
            # A segmentation label's finding points to its own label's map.
            pmap_sop_instance_uid=f.pmap_sop_instance_uid or result.pmap_sop_instance_uid,
            status="pending",
            created_at=now,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def result_series(session: Session, sop_uids: set[str]) -> dict[str, str]:
    """SOP Instance UID -> Series Instance UID for the result instances the archive holds."""
    if not sop_uids:
        return {}
    rows = session.execute(
        select(Instance.sop_instance_uid, Series.series_instance_uid)
        .join(Series, Instance.series_pk == Series.id)
        .where(Instance.sop_instance_uid.in_(sop_uids))
    ).all()
    return {sop: series for sop, series in rows}


def finding_dict(row: AIFinding, series: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "job_id": row.job_pk,
        "study_instance_uid": row.study_instance_uid,
        "series_instance_uid": row.series_instance_uid,
        "model": row.model_name,
        "model_version": row.model_version,
        "label": row.label,
        "probability": row.probability,
        "positive": row.positive,
        "measurements": json.loads(row.measurements_json or "[]"),
        "location": json.loads(row.location_json or "{}"),
        "status": row.status,
        "decided_by": row.decided_by or None,
        "decided_at": iso(row.decided_at),
        "created_at": iso(row.created_at),
        "seg_sop_instance_uid": row.seg_sop_instance_uid or None,
        "seg_series_instance_uid": series.get(row.seg_sop_instance_uid),
        "sr_sop_instance_uid": row.sr_sop_instance_uid or None,
        "sr_series_instance_uid": series.get(row.sr_sop_instance_uid),
        "pmap_sop_instance_uid": row.pmap_sop_instance_uid or None,
        "pmap_series_instance_uid": series.get(row.pmap_sop_instance_uid),
    }


def findings_for_study(session: Session, study_instance_uid: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AIFinding).where(AIFinding.study_instance_uid == study_instance_uid).order_by(AIFinding.id)
    ).all()
    sops = {u for r in rows for u in (r.seg_sop_instance_uid, r.sr_sop_instance_uid, r.pmap_sop_instance_uid) if u}
    series = result_series(session, sops)
    return [finding_dict(r, series) for r in rows]


def finding_view(session: Session, row: AIFinding) -> dict[str, Any]:
    """One finding as the REST API returns it."""
    sops = {u for u in (row.seg_sop_instance_uid, row.sr_sop_instance_uid, row.pmap_sop_instance_uid) if u}
    return finding_dict(row, result_series(session, sops))


def decide(session: Session, hooks: AIHooks, finding_id: int, status: Decision, username: str) -> AIFinding:
    """Record a reader's decision (who and when) and tell ``hooks.finding_decided`` in the same
    transaction (a rejection may lower the study's priority). The caller commits."""
    if status not in DECISIONS:
        raise ValueError(f"status must be one of {', '.join(DECISIONS)}, not {status!r}")
    row = session.get(AIFinding, finding_id)
    if row is None:
        raise FindingNotFound(f"no finding {finding_id}")
    row.status = status
    row.decided_by = username[:64]
    row.decided_at = utcnow()
    session.flush()
    hooks.decided(session, row.study_instance_uid)
    return row
