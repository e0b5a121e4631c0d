"""The worklist as the REST API and the live feed show it: filtered, sorted, one dict per study.

Sort: priority level (highest first), then arrival (oldest first), which is the score order
within a level (``priority.py``: score = level base + minutes waiting x rate), served by the
index ``ix_worklist_order``. Study attributes come from the index's ``study`` row (no join
to series or instances).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from radsight.index.models import Study, WorklistAlert, WorklistStudy
from radsight.index.types import iso, utcnow
from radsight.worklist.priority import Rules, level_name, level_number, score
from radsight.worklist.rows import IN_PROGRESS, READ, STATUSES, UNREAD
from radsight.worklist.service import effective_status, lapsed_claim_filter

_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


@dataclass(frozen=True, slots=True)
class Filters:
    status: Sequence[str] = ()
    modality: Sequence[str] = ()
    priority: Sequence[str] = ()
    reader: str | None = None
    q: str | None = None


def _split(values: Iterable[str] | None) -> list[str]:
    return [v.strip() for raw in values or () for v in raw.split(",") if v.strip()]


def parse_filters(
    *,
    status: Iterable[str] | None = None,
    modality: Iterable[str] | None = None,
    priority: Iterable[str] | None = None,
    reader: str | None = None,
    q: str | None = None,
) -> Filters:
    """Filters from query parameters (repeated or comma-separated); ``ValueError`` names a bad value."""
    statuses = _split(status)
    for s in statuses:
        if s not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {s!r}")
    modalities = [m.upper() for m in _split(modality)]
    for m in modalities:
        if not _MODALITY.match(m):
            raise ValueError(f"not a modality: {m!r}")
    priorities = _split(priority)
    for p in priorities:
        level_number(p)
    return Filters(statuses, modalities, priorities, (reader or "").strip() or None, (q or "").strip() or None)


def _where(stmt: Select[WorklistStudy, Study], f: Filters, now: datetime) -> Select[WorklistStudy, Study]:
    if f.status:
        lapsed = lapsed_claim_filter(now)
        conds = []
        if UNREAD in f.status:
            conds += [WorklistStudy.status == UNREAD, lapsed]
        if IN_PROGRESS in f.status:
            conds.append(and_(WorklistStudy.status == IN_PROGRESS, WorklistStudy.claim_expires_at > now))
        if READ in f.status:
            conds.append(WorklistStudy.status == READ)
        stmt = stmt.where(or_(*conds))
    if f.modality:
        # ModalitiesInStudy is stored backslash-separated; compare whole values between '|' marks.
        mods = literal("|") + func.replace(Study.modalities_in_study, "\\", "|") + literal("|")
        stmt = stmt.where(or_(*(mods.like(f"%|{m}|%") for m in f.modality)))
    if f.priority:
        stmt = stmt.where(WorklistStudy.priority_level.in_([level_number(p) for p in f.priority]))
    if f.reader:
        stmt = stmt.where(
            or_(
                and_(WorklistStudy.claimed_by == f.reader, WorklistStudy.status == IN_PROGRESS),
                WorklistStudy.signed_by == f.reader,
            )
        )
    if f.q:
        stmt = stmt.where(
            or_(
                Study.patient_name.icontains(f.q, autoescape=True),
                Study.patient_id.icontains(f.q, autoescape=True),
                Study.accession_number.icontains(f.q, autoescape=True),
                Study.study_description.icontains(f.q, autoescape=True),
                WorklistStudy.study_instance_uid == f.q,
            )
        )
    return stmt




def item_dict(
    row: WorklistStudy, study: Study | None, alert: WorklistAlert | None, rules: Rules, now: datetime
) -> dict[str, Any]:
    status, claimed_by, claimed_at = effective_status(row, now)
    arrived = row.arrived_at or now
    return {
        "StudyInstanceUID": row.study_instance_uid,
        "priority": level_name(row.priority_level),
        "score": score(row.priority_level, arrived, now, rules) if status != READ else row.priority_score,
        "reason": row.priority_reason,
        "status": status,
        "claimed_by": claimed_by,
        "claimed_at": iso(claimed_at),
        "claim_expires_at": iso(row.claim_expires_at) if claimed_by else None,
        "signed_by": row.signed_by,
        "signed_at": iso(row.signed_at),
        "arrived_at": iso(arrived),
        "order_priority": row.order_priority,
        "PatientName": study.patient_name if study else "",
        "PatientID": study.patient_id if study else "",
        "StudyDate": study.study_date if study else "",
        "ModalitiesInStudy": [m for m in (study.modalities_in_study if study else "").split("\\") if m],
        "StudyDescription": study.study_description if study else "",
        "AccessionNumber": study.accession_number if study else "",
        "NumberOfStudyRelatedSeries": study.number_of_series if study else 0,
        "NumberOfStudyRelatedInstances": study.number_of_instances if study else 0,
        "ai": None
        if row.ai_level is None
        else {
            "level": level_name(row.ai_level),
            "model": row.ai_model,
            "model_version": row.ai_model_version,
            "label": row.ai_label,
            "probability": row.ai_score,
        },
        "alert": None
        if alert is None
        else {
            "id": alert.id,
            "level": alert.level,
            "raised_at": iso(alert.raised_at),
            "acknowledged_at": iso(alert.acknowledged_at),
            "acknowledged_by": alert.acknowledged_by,
        },
    }


def _alerts_by_study(session: Session, uids: Sequence[str]) -> dict[str, WorklistAlert]:
    """Per study: its oldest unacknowledged alert, else its newest acknowledged one."""
    chosen: dict[str, WorklistAlert] = {}
    if not uids:
        return chosen
    rows = session.scalars(
        select(WorklistAlert).where(WorklistAlert.study_instance_uid.in_(uids)).order_by(WorklistAlert.id)
    ).all()
    for a in rows:
        current = chosen.get(a.study_instance_uid)
        if current is None or (
            current.acknowledged_at is not None and (a.acknowledged_at is None or a.id > current.id)
        ):
            chosen[a.study_instance_uid] = a
    return chosen


def items_for(
    session: Session, uids: Sequence[str], rules: Rules, now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """The current item of each study in ``uids`` that the worklist holds."""
    now = now or utcnow()
    if not uids:
        return {}
    rows = session.execute(
        select(WorklistStudy, Study)
        .join(Study, Study.study_instance_uid == WorklistStudy.study_instance_uid, isouter=True)
        .where(WorklistStudy.study_instance_uid.in_(list(uids)))
    ).all()
    alerts = _alerts_by_study(session, [r.study_instance_uid for r, _ in rows])
    return {r.study_instance_uid: item_dict(r, st, alerts.get(r.study_instance_uid), rules, now) for r, st in rows}


def worklist(
    session: Session, filters: Filters, rules: Rules, *, limit: int = 100, offset: int = 0, now: datetime | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, the page of items in worklist order)."""
    now = now or utcnow()
    base = select(WorklistStudy, Study).join(
        Study, Study.study_instance_uid == WorklistStudy.study_instance_uid, isouter=True
    )
    base = _where(base, filters, now)
    total = int(session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    rows = session.execute(
        base.order_by(WorklistStudy.priority_level.desc(), WorklistStudy.arrived_at, WorklistStudy.id)
        .limit(limit)
        .offset(offset)
    ).all()
    alerts = _alerts_by_study(session, [r.study_instance_uid for r, _ in rows])
    return total, [item_dict(r, st, alerts.get(r.study_instance_uid), rules, now) for r, st in rows]
