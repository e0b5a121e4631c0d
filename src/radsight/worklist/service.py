"""The reading workflow of each study (``worklist_study``): re-prioritised when AI findings
land or a reader decides on them, claimed, released and signed.

Subscribers (wired by ``radsight.wiring``, never called by the AI side directly):
- ``on_job_recorded``: ``Archive.ai_hooks.job_recorded``, in the transaction that records a
  job's findings, so the priority, the ``ai-result`` event and a critical alert commit with them;
- ``on_finding_decided``: ``Archive.ai_hooks.finding_decided`` (rejected findings leave the AI level).
Arrival (a row per study) is ``arrival.py``.

Writes are conditional UPDATEs (claim, sign, release), so two readers racing for one study
get one winner on SQLite and PostgreSQL alike. None of these functions is called with a
session it should commit except where it says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from radsight.ai import findings
from radsight.ai.registry import urgency_thresholds
from radsight.index.models import AIFinding, AIJob, AIModel, Study, WorklistStudy
from radsight.index.types import iso, utcnow
from radsight.worklist import alerts, events
from radsight.worklist.priority import (
    CRITICAL,
    ORDER_PRIORITIES,
    AIPriority,
    FindingFact,
    Rules,
    ai_priority,
    compute,
)
from radsight.worklist.rows import IN_PROGRESS, READ, UNREAD, new_row

if TYPE_CHECKING:
    from radsight.archive import Archive

log = logging.getLogger(__name__)


class StudyNotInWorklist(LookupError):
    pass


class ClaimConflict(Exception):
    """Another reader holds the study, or it is already read (message says which)."""


class NotClaimHolder(PermissionError):
    pass


class PendingFindings(Exception):
    def __init__(self, pending: list[AIFinding]) -> None:
        self.pending = pending
        names = ", ".join(
            f"{f.id} ({f.label} {f.probability:.2f}, {f.model_name} v{f.model_version})"
            if f.probability is not None
            else f"{f.id} ({f.label}, {f.model_name} v{f.model_version})"
            for f in pending
        )
        super().__init__(f"accept or reject every AI finding before signing; pending: {names}")


def rules_for_archive(archive: Archive) -> Rules:
    return Rules.from_settings(archive.settings)


def get_row(session: Session, study_instance_uid: str) -> WorklistStudy:
    row = session.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == study_instance_uid))
    if row is None:
        raise StudyNotInWorklist(f"study {study_instance_uid} is not in the worklist")
    return row


def _row_or_create(session: Session, study_instance_uid: str, rules: Rules) -> WorklistStudy:
    row = session.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == study_instance_uid))
    if row is not None:
        return row
    created = session.scalar(select(Study.created_at).where(Study.study_instance_uid == study_instance_uid))
    now = utcnow()
    row = WorklistStudy(**new_row(study_instance_uid, order_priority=None, arrived_at=created or now, now=now,
                                  rules=rules))
    session.add(row)
    events.append(session, events.STUDY_ADDED, study_instance_uid)
    session.flush()
    return row


# -- priority ---------------------------------------------------------------------------


def reprioritise(row: WorklistStudy, rules: Rules, ai: AIPriority | None = None, now: datetime | None = None) -> bool:
    """Recompute the row's level/score/reason from its stored inputs; True if the level or reason changed."""
    now = now or utcnow()
    if ai is None and row.ai_level is not None:
        ai = AIPriority(row.ai_level, row.ai_model, row.ai_model_version, row.ai_label, row.ai_score or 0.0, 0)
    p = compute(
        order_priority=row.order_priority,
        ai=ai,
        arrived_at=row.arrived_at or now,
        now=now,
        rules=rules,
        aging=row.status != READ,
    )
    changed = (p.level, p.reason) != (row.priority_level, row.priority_reason)
    row.priority_level, row.priority_score, row.priority_reason = p.level, p.score, p.reason
    row.updated_at = now
    return changed


def study_ai_priority(session: Session, study_instance_uid: str) -> AIPriority | None:
    """The AI level of the study from its findings (newest job per model) and the packages' thresholds."""
    rows = session.scalars(
        select(AIFinding).where(AIFinding.study_instance_uid == study_instance_uid).order_by(AIFinding.id)
    ).all()
    if not rows:
        return None
    models = {r.model_name for r in rows}
    thresholds: dict[tuple[str, str], dict[str, float]] = {}
    for model in session.scalars(select(AIModel).where(AIModel.name.in_(models))):
        for label, levels in urgency_thresholds(model).items():
            thresholds[(model.name, label)] = levels
    facts = [FindingFact(r.id, r.model_name, r.model_version, r.label, r.probability, r.status) for r in rows]
    return ai_priority(facts, thresholds)


def refresh_ai(session: Session, row: WorklistStudy, rules: Rules) -> AIPriority | None:
    """Store the study's AI level from its findings and recompute the priority (no commit)."""
    ai = study_ai_priority(session, row.study_instance_uid)
    row.ai_level = None if ai is None else ai.level
    row.ai_score = None if ai is None else ai.probability
    row.ai_reason = "" if ai is None else ai.reason[:255]
    row.ai_model = "" if ai is None else ai.model
    row.ai_model_version = "" if ai is None else ai.model_version
    row.ai_label = "" if ai is None else ai.label[:64]
    reprioritise(row, rules, ai)
    return ai


def on_job_recorded(session: Session, job: AIJob, *, rules: Rules) -> None:
    """After a job's findings are recorded, in the same transaction: new priority, ``ai-result``
    event, and an alert if a finding is critical. Does not commit."""
    row = _row_or_create(session, job.study_instance_uid, rules)
    ai = refresh_ai(session, row, rules)
    now = utcnow()
    if row.ai_result_at is None:
        row.ai_result_at = now
    events.append(
        session,
        events.AI_RESULT,
        row.study_instance_uid,
        {"job_id": job.id, "model": job.model_name, "model_version": job.model_version},
    )
    if ai is not None and ai.level == CRITICAL:
        alerts.raise_alert(session, row, ai)


def on_finding_decided(session: Session, study_instance_uid: str, *, rules: Rules) -> None:
    """A reader accepted or rejected a finding: the AI level may change. Does not commit."""
    row = session.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == study_instance_uid))
    if row is None:
        return
    before = (row.priority_level, row.priority_reason)
    refresh_ai(session, row, rules)
    if (row.priority_level, row.priority_reason) != before:
        events.append(session, events.STUDY_UPDATED, study_instance_uid, {"reason": "finding-decision"})


def set_order_priority(archive: Archive, study_instance_uid: str, order_priority: str | None) -> None:
    if order_priority is not None and order_priority not in ORDER_PRIORITIES:
        raise ValueError(f"order_priority must be one of {', '.join(ORDER_PRIORITIES)} or null")
    rules = rules_for_archive(archive)
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        row.order_priority = order_priority
        row.order_priority_source = "user" if order_priority else ""
        reprioritise(row, rules)
        events.append(s, events.STUDY_UPDATED, study_instance_uid, {"reason": "order-priority"})
        s.commit()


# -- reading: claim, heartbeat, release, sign -------------------------------------------


def _free_for(user: str, now: datetime) -> Any:
    return or_(
        WorklistStudy.claimed_by.is_(None),
        WorklistStudy.claimed_by == user,
        WorklistStudy.claim_expires_at < now,
    )


def _conflict(row: WorklistStudy) -> ClaimConflict:
    if row.status == READ:
        return ClaimConflict(f"read by {row.signed_by} at {iso(row.signed_at)}")
    return ClaimConflict(f"claimed by {row.claimed_by} since {iso(row.claimed_at)}")


def _take(s: Session, study_instance_uid: str, user: str, now: datetime, **values: Any) -> None:
    """Conditional UPDATE of an unread study free for ``user`` (the race's one winner), noting when
    it was first opened; ``ClaimConflict`` naming the holder (or the signer) otherwise."""
    result = s.execute(
        update(WorklistStudy)
        .execution_options(synchronize_session=False)
        .where(
            WorklistStudy.study_instance_uid == study_instance_uid,
            WorklistStudy.status != READ,
            _free_for(user, now),
        )
        .values(updated_at=now, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        s.rollback()
        s.expire_all()
        raise _conflict(get_row(s, study_instance_uid))
    s.execute(
        update(WorklistStudy)
        .execution_options(synchronize_session=False)
        .where(WorklistStudy.study_instance_uid == study_instance_uid, WorklistStudy.first_opened_at.is_(None))
        .values(first_opened_at=now)
    )


def claim(archive: Archive, study_instance_uid: str, user: str) -> None:
    """Take (or renew) the study for ``user``; ``ClaimConflict`` if another reader holds it or it is read."""
    now = utcnow()
    expires = now + timedelta(minutes=archive.settings.claim_timeout_minutes)
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        held_before = (
            row.status == IN_PROGRESS and row.claimed_by == user and (row.claim_expires_at or now) > now
        )
        claimed_at = row.claimed_at if held_before else now
        _take(
            s,
            study_instance_uid,
            user,
            now,
            status=IN_PROGRESS,
            claimed_by=user,
            claimed_at=claimed_at,
            claim_expires_at=expires,
        )
        if not held_before:
            events.append(s, events.STATUS_CHANGED, study_instance_uid, {"status": IN_PROGRESS})
        s.commit()


def heartbeat(archive: Archive, study_instance_uid: str, user: str) -> None:
    """Extend ``user``'s claim; ``ClaimConflict`` if it lapsed and another reader took the study."""
    claim(archive, study_instance_uid, user)


def release(archive: Archive, study_instance_uid: str, user: str, *, admin: bool = False) -> None:
    """Give the study back (unread). Only its holder, or an admin, may release a live claim."""
    now = utcnow()
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        if row.status != IN_PROGRESS:
            return
        live = (row.claim_expires_at or now) > now
        if live and row.claimed_by != user and not admin:
            raise NotClaimHolder(
                f"claimed by {row.claimed_by} since {iso(row.claimed_at)}; only they or an admin may release it"
            )
        s.execute(
            update(WorklistStudy)
            .execution_options(synchronize_session=False)
            .where(WorklistStudy.id == row.id, WorklistStudy.status == IN_PROGRESS)
            .values(status=UNREAD, claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now)
        )
        events.append(s, events.STATUS_CHANGED, study_instance_uid, {"status": UNREAD})
        s.commit()


@dataclass(frozen=True, slots=True)
class DecisionInput:
    finding_id: int
    status: str


def sign(archive: Archive, study_instance_uid: str, user: str, decisions: Sequence[DecisionInput] = ()) -> None:
    """Store the decisions and sign the study off (read), in one transaction: nothing is stored
    if it is refused. ``PendingFindings`` if an AI finding of the study is still pending;
    ``ClaimConflict`` if another reader holds it or it is read."""
    now = utcnow()
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        if row.status == READ or (
            row.status == IN_PROGRESS and row.claimed_by != user and (row.claim_expires_at or now) > now
        ):
            raise _conflict(row)
        ids = {d.finding_id for d in decisions}
        if ids:
            own = set(
                s.scalars(
                    select(AIFinding.id).where(
                        AIFinding.id.in_(ids), AIFinding.study_instance_uid == study_instance_uid
                    )
                )
            )
            foreign = sorted(ids - own)
            if foreign:
                raise findings.FindingNotFound(f"finding(s) {foreign} are not findings of this study")
        for d in decisions:
            findings.decide(s, archive.ai_hooks, d.finding_id, d.status, user)  # type: ignore[arg-type]
        pending = list(
            s.scalars(
                select(AIFinding)
                .where(AIFinding.study_instance_uid == study_instance_uid, AIFinding.status == "pending")
                .order_by(AIFinding.id)
            )
        )
        if pending:
            raise PendingFindings(pending)
        _take(
            s,
            study_instance_uid,
            user,
            now,
            status=READ,
            signed_by=user,
            signed_at=now,
            claimed_by=None,
            claim_expires_at=None,
        )
        events.append(s, events.STATUS_CHANGED, study_instance_uid, {"status": READ})
        s.commit()


# -- time-driven changes ------------------------------------------------------------------


def sweep(archive: Archive, now: datetime | None = None) -> dict[str, int]:
    """Release lapsed claims and apply the aging rules; one event per changed study. Commits."""
    now = now or utcnow()
    rules = rules_for_archive(archive)
    expired = aged = 0
    with archive.db.session() as s:
        lapsed = s.scalars(
            select(WorklistStudy.study_instance_uid).where(
                WorklistStudy.status == IN_PROGRESS, WorklistStudy.claim_expires_at < now
            )
        ).all()
        for uid in lapsed:
            n = s.execute(
                update(WorklistStudy)
                .execution_options(synchronize_session=False)
                .where(
                    WorklistStudy.study_instance_uid == uid,
                    WorklistStudy.status == IN_PROGRESS,
                    WorklistStudy.claim_expires_at < now,
                )
                .values(status=UNREAD, claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if n:
                expired += 1
                events.append(s, events.STATUS_CHANGED, uid, {"status": UNREAD, "reason": "claim-expired"})
        for step in rules.aging:
            due = s.scalars(
                select(WorklistStudy).where(
                    WorklistStudy.status != READ,
                    WorklistStudy.priority_level == step.from_level,
                    WorklistStudy.arrived_at < now - timedelta(minutes=step.after_minutes),
                )
            ).all()
            for row in due:
                if reprioritise(row, rules, now=now):
                    aged += 1
                    events.append(s, events.STUDY_UPDATED, row.study_instance_uid, {"reason": "aging"})
        s.commit()
    return {"claims_expired": expired, "aged": aged}


def effective_status(row: WorklistStudy, now: datetime) -> tuple[str, str | None, datetime | None]:
    """(status, claimed_by, claimed_at) with a lapsed claim shown as unread before the sweep runs."""
    if row.status == IN_PROGRESS and (row.claim_expires_at or now) <= now:
        return UNREAD, None, None
    return row.status, row.claimed_by, row.claimed_at


def lapsed_claim_filter(now: datetime) -> Any:
    return and_(WorklistStudy.status == IN_PROGRESS, WorklistStudy.claim_expires_at <= now)
