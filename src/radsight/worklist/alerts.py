"""Critical-finding alerts: raised once per study and model label, shown in every open worklist
(an ``alert`` event), acknowledged by a user, and POSTed as JSON to ``alert_webhook_url``.

Delivery state lives in the alert row (``webhook_state`` pending | delivered | failed,
``attempts``, ``next_attempt_at``, ``last_error``), so a restart resumes where it stopped and
several servers on one database never send an attempt twice: a sender first moves
``next_attempt_at`` forward with a conditional UPDATE, and only the winner posts. A non-2xx
answer or a network error is retried after ``alert_retry_base_seconds`` x 2^(attempts-1), at
most ``alert_retry_max_seconds``, until a 2xx. The payload carries the study's UIDs and the
finding, no patient name; logs carry only the alert id.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radsight.index.models import Study, WorklistAlert, WorklistStudy
from radsight.index.types import iso, utcnow
from radsight.worklist import events
from radsight.worklist.priority import AIPriority, level_name

if TYPE_CHECKING:
    from radsight.archive import Archive

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class AlertNotFound(LookupError):
    pass




def alert_dict(a: WorklistAlert) -> dict[str, Any]:
    return {
        "id": a.id,
        "StudyInstanceUID": a.study_instance_uid,
        "level": a.level,
        "reason": a.reason,
        "model": a.model_name,
        "model_version": a.model_version,
        "label": a.label,
        "probability": a.probability,
        "raised_at": iso(a.raised_at),
        "acknowledged_at": iso(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
        "webhook": {
            "state": a.webhook_state,
            "attempts": a.attempts,
            "next_attempt_at": iso(a.next_attempt_at) if a.webhook_state == PENDING else None,
            "last_error": a.last_error or None,
            "delivered_at": iso(a.delivered_at),
        },
    }


def raise_alert(session: Session, row: WorklistStudy, ai: AIPriority) -> WorklistAlert | None:
    """Record an alert for the study's critical finding unless one exists for it (no commit)."""
    existing = session.scalar(
        select(WorklistAlert).where(
            WorklistAlert.study_instance_uid == row.study_instance_uid,
            WorklistAlert.model_name == ai.model,
            WorklistAlert.label == ai.label[:64],
        )
    )
    if existing is not None:
        return None
    now = utcnow()
    alert = WorklistAlert(
        study_instance_uid=row.study_instance_uid,
        level=level_name(ai.level),
        reason=ai.reason[:255],
        model_name=ai.model,
        model_version=ai.model_version,
        label=ai.label[:64],
        probability=ai.probability,
        raised_at=now,
        webhook_state=PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error="",
    )
    try:
        with session.begin_nested():
            session.add(alert)
            session.flush()
    except IntegrityError:  # raised by another worker at the same moment
        return None
    if row.alerted_at is None:
        row.alerted_at = now
    events.append(session, events.ALERT, row.study_instance_uid, {"alert_id": alert.id})
    log.warning("critical-finding alert %d raised", alert.id)
    return alert


def list_alerts(session: Session, *, unacknowledged: bool = False, limit: int = 200) -> list[WorklistAlert]:
    q = select(WorklistAlert).order_by(WorklistAlert.id.desc()).limit(limit)
    if unacknowledged:
        q = q.where(WorklistAlert.acknowledged_at.is_(None))
    return list(session.scalars(q))


def acknowledge(session: Session, alert_id: int, username: str) -> WorklistAlert:
    """Record who acknowledged the alert and when (the first acknowledgement stays). Commits."""
    alert = session.get(WorklistAlert, alert_id)
    if alert is None:
        raise AlertNotFound(f"no alert {alert_id}")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = utcnow()
        alert.acknowledged_by = username[:64]
        events.append(session, events.ALERT_ACKNOWLEDGED, alert.study_instance_uid, {"alert_id": alert.id})
        session.commit()
    return alert


def webhook_payload(session: Session, alert: WorklistAlert) -> dict[str, Any]:
    accession = session.scalar(
        select(Study.accession_number).where(Study.study_instance_uid == alert.study_instance_uid)
    )
    body = alert_dict(alert)
    body.pop("webhook")
    return {"type": "critical-finding", "AccessionNumber": accession or None, **body}


def retry_delay(attempts: int, base: float, cap: float) -> float:
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def deliver_due(archive: Archive, client: httpx.Client | None = None, now: datetime | None = None) -> int:
    """Send every alert whose next attempt is due; returns how many were tried."""
    settings = archive.settings
    url = settings.alert_webhook_url
    if not url:
        return 0
    now = now or utcnow()
    with archive.db.session() as s:
        due = s.execute(
            select(WorklistAlert.id, WorklistAlert.next_attempt_at)
            .where(WorklistAlert.webhook_state == PENDING, WorklistAlert.next_attempt_at <= now)
            .order_by(WorklistAlert.next_attempt_at)
            .limit(50)
        ).all()
    tried = 0
    own = client is None
    http = client or httpx.Client(timeout=settings.alert_webhook_timeout_seconds)
    try:
        for alert_id, when in due:
            if when is not None and _deliver_one(archive, http, url, alert_id, when):
                tried += 1
    finally:
        if own:
            http.close()
    return tried


def _deliver_one(archive: Archive, http: httpx.Client, url: str, alert_id: int, when: datetime) -> bool:
    settings = archive.settings
    now = utcnow()
    # Take this attempt: push the next attempt past the request's time-out; only one sender wins.
    lease = now + timedelta(seconds=settings.alert_webhook_timeout_seconds + 30)
    with archive.db.session() as s:
        won = s.execute(
            update(WorklistAlert)
            .where(
                WorklistAlert.id == alert_id,
                WorklistAlert.webhook_state == PENDING,
                WorklistAlert.next_attempt_at == when,
            )
            .values(next_attempt_at=lease)
        ).rowcount  # type: ignore[attr-defined]
        s.commit()
        if not won:
            return False
        alert = s.get(WorklistAlert, alert_id)
        assert alert is not None
        payload = webhook_payload(s, alert)
    error = ""
    try:
        response = http.post(url, json=payload, timeout=settings.alert_webhook_timeout_seconds)
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    done = utcnow()
    with archive.db.session() as s:
        alert = s.get(WorklistAlert, alert_id)
        assert alert is not None
        alert.attempts += 1
        if error and settings.alert_webhook_max_attempts and alert.attempts >= settings.alert_webhook_max_attempts:
            alert.last_error = error[:1000]
            alert.webhook_state = FAILED
            alert.next_attempt_at = None
            log.error("alert %d: webhook failed %d times; giving up (%s)", alert_id, alert.attempts, error)
        elif error:
            alert.last_error = error[:1000]
            alert.next_attempt_at = done + timedelta(
                seconds=retry_delay(alert.attempts, settings.alert_retry_base_seconds, settings.alert_retry_max_seconds)
            )
            log.warning("alert %d: webhook attempt %d failed (%s); retrying", alert_id, alert.attempts, error)
        else:
            alert.webhook_state = DELIVERED
            alert.delivered_at = done
            alert.next_attempt_at = None
            log.info("alert %d: webhook delivered (attempt %d)", alert_id, alert.attempts)
        s.commit()
    return True
