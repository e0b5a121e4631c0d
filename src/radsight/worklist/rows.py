"""A study's worklist row as first written: the one place its initial values are decided.

Every path that creates a row (the ingest transaction, a study that arrived while no listener
ran, an AI result for a study without a row) takes its values from ``new_row``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from radsight.worklist.priority import Rules, compute

UNREAD, IN_PROGRESS, READ = "unread", "in_progress", "read"
STATUSES: tuple[str, ...] = (UNREAD, IN_PROGRESS, READ)


def new_row(
    study_instance_uid: str, *, order_priority: str | None, arrived_at: datetime, now: datetime, rules: Rules
) -> dict[str, Any]:
    """The column values of a new, unread study's row (priority from its order priority and waiting time)."""
    p = compute(order_priority=order_priority, ai=None, arrived_at=arrived_at, now=now, rules=rules)
    return {
        "study_instance_uid": study_instance_uid,
        "order_priority": order_priority,
        "order_priority_source": "dicom" if order_priority else "",
        "ai_reason": "",
        "ai_model": "",
        "ai_model_version": "",
        "ai_label": "",
        "priority_level": p.level,
        "priority_score": p.score,
        "priority_reason": p.reason,
        "status": UNREAD,
        "arrived_at": arrived_at,
        "updated_at": now,
    }
