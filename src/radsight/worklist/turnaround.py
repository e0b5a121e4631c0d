"""Turnaround: per study arrival, AI result, alert, first opened and signed times, and the
distribution of arrival-to-sign (and arrival-to-open, arrival-to-AI) minutes per priority.

Priority here is the level the study had when it was read (aging included)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radsight.index.models import WorklistStudy
from radsight.index.types import iso
from radsight.worklist.priority import LEVELS, level_name


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), or None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    a, b = start, end
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() / 60.0, 3)




def _summary(values: list[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {"n": len(values), "median": r(percentile(values, 0.5)), "p90": r(percentile(values, 0.9))}


def turnaround(session: Session, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Studies that arrived in [since, until): rows oldest first, and a summary per priority."""
    q = select(WorklistStudy).order_by(WorklistStudy.arrived_at, WorklistStudy.id)
    if since is not None:
        q = q.where(WorklistStudy.arrived_at >= since)
    if until is not None:
        q = q.where(WorklistStudy.arrived_at < until)
    rows = session.scalars(q).all()
    studies: list[dict[str, Any]] = []
    spans: dict[str, dict[str, list[float]]] = {
        name: {"arrival_to_sign": [], "arrival_to_open": [], "arrival_to_ai": []} for name in LEVELS
    }
    for r in rows:
        level = level_name(r.priority_level)
        times = {
            "arrival_to_ai": _minutes(r.arrived_at, r.ai_result_at),
            "arrival_to_alert": _minutes(r.arrived_at, r.alerted_at),
            "arrival_to_open": _minutes(r.arrived_at, r.first_opened_at),
            "arrival_to_sign": _minutes(r.arrived_at, r.signed_at),
        }
        studies.append(
            {
                "StudyInstanceUID": r.study_instance_uid,
                "priority": level,
                "order_priority": r.order_priority,
                "status": r.status,
                "arrived_at": iso(r.arrived_at),
                "ai_result_at": iso(r.ai_result_at),
                "alerted_at": iso(r.alerted_at),
                "first_opened_at": iso(r.first_opened_at),
                "signed_at": iso(r.signed_at),
                "signed_by": r.signed_by,
                "minutes": times,
            }
        )
        for key in ("arrival_to_sign", "arrival_to_open", "arrival_to_ai"):
            v = times[key]
            if v is not None:
                spans[level][key].append(v)
    summary = {
        level: {
            "studies": sum(1 for s in studies if s["priority"] == level),
            **{key: _summary(values) for key, values in spans[level].items()},
        }
        for level in reversed(LEVELS)
    }
    return {
        "since": iso(since),
        "until": iso(until),
        "unit": "minutes",
        "summary": summary,
        "studies": studies,
    }
