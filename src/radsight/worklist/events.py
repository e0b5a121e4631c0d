"""The worklist's append-only event log (``worklist_event``).

Every change a worklist shows (a study arrived, an AI result, a claim, a sign-off, an alert)
appends one row in the transaction that makes the change, so an event exists exactly when
its change is committed, whichever process made it (server, AI worker process, another
machine on the same PostgreSQL). The live feed (``live.py``) reads rows by id: a client
resumes with ``Last-Event-ID``. Rows hold no patient data; the feed renders the study's
current item when it sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select
from sqlalchemy.orm import Session

from radsight.index.models import WorklistEvent
from radsight.index.types import utcnow

STUDY_ADDED = "study-added"
STUDY_UPDATED = "study-updated"
AI_RESULT = "ai-result"
STATUS_CHANGED = "status-changed"
ALERT = "alert"
ALERT_ACKNOWLEDGED = "alert-acknowledged"
TYPES: tuple[str, ...] = (STUDY_ADDED, STUDY_UPDATED, AI_RESULT, STATUS_CHANGED, ALERT, ALERT_ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    study_instance_uid: str
    payload: dict[str, Any]
    created_at: datetime


def append(session: Session, type_: str, study_instance_uid: str, payload: dict[str, Any] | None = None) -> None:
    """Add an event to the session's transaction (the caller commits with the change)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown worklist event type {type_!r}")
    session.add(
        WorklistEvent(
            type=type_,
            study_instance_uid=study_instance_uid,
            payload_json=json.dumps(payload or {}),
            created_at=utcnow(),
        )
    )


def append_row(conn: Connection, type_: str, study_instance_uid: str, payload: dict[str, Any] | None = None) -> None:
    """``append`` for a Core connection's transaction (the ingest path uses Core, not the ORM)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown worklist event type {type_!r}")
    table: Table = WorklistEvent.__table__  # type: ignore[assignment]
    conn.execute(insert(table), {
        "type": type_, "study_instance_uid": study_instance_uid, "payload_json": json.dumps(payload or {}),
        "created_at": utcnow(),
    })


def read_since(session: Session, since_id: int, limit: int = 500) -> list[Event]:
    rows = session.scalars(
        select(WorklistEvent).where(WorklistEvent.id > since_id).order_by(WorklistEvent.id).limit(limit)
    ).all()
    return [Event(r.id, r.type, r.study_instance_uid, json.loads(r.payload_json or "{}"), r.created_at) for r in rows]


def latest_id(session: Session) -> int:
    return int(session.scalar(select(func.max(WorklistEvent.id))) or 0)


def prune(session: Session, older_than: timedelta) -> int:
    """Remove events older than ``older_than`` (a client that far behind reloads the list). Commits."""
    cutoff = utcnow() - older_than
    # Keep the newest row whatever its age: SQLite reuses the largest rowid once it is deleted.
    newest = latest_id(session)
    n = session.execute(
        delete(WorklistEvent).where(WorklistEvent.created_at < cutoff, WorklistEvent.id < newest)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(n or 0)
