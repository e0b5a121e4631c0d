"""A study's reading priority: order priority, AI findings and waiting time.

Rules (all configurable in ``Settings``, see ``Rules.from_settings``):

- Levels, highest first: **critical** (2) > **urgent** (1) > **routine** (0).
- Order priority, from DICOM Requested Procedure Priority (0040,1003) or the retired Study
  Priority ID (0032,000C), or set by a user: ``STAT`` -> ``worklist_stat_level`` (default
  **urgent**: a STAT order asks for speed, it is not a finding; critical is kept for AI findings,
  which raise an alert), ``URGENT`` (DICOM ``HIGH``) -> urgent, ``ROUTINE`` (``MEDIUM``, ``LOW``)
  -> routine.
- AI: each model package's label declares probability thresholds per level
  (``Label.urgency``, e.g. ``{"critical": 0.9, "urgent": 0.7}``); a finding reaches the highest
  level whose threshold its probability meets. The study takes its highest finding (ties: the
  higher probability). Findings a reader rejected drop out.
- The level is the highest of these. Aging: ``worklist_aging`` rules raise an unread study
  waiting longer than ``after_minutes`` since arrival from one level to the next (default:
  routine -> urgent after 240 min), so nothing starves.
- Score = level base (routine 0, urgent 10000, critical 20000) + minutes waiting x
  ``worklist_aging_points_per_minute``. Within a level the score orders by waiting time, so the
  worklist sorts by (level, arrival), which an index serves, and reports the score at read time.
- The reason names what decided the level, e.g. "Critical: Pneumonia 0.97, cxr-pneumonia v1.0.0".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ROUTINE, URGENT, CRITICAL = 0, 1, 2
LEVELS: tuple[str, ...] = ("routine", "urgent", "critical")  # index = level number
LEVEL_BASE = 10000.0
ORDER_PRIORITIES: tuple[str, ...] = ("STAT", "URGENT", "ROUTINE")
# DICOM Requested Procedure Priority (0040,1003) and Study Priority ID (0032,000C) values.
_DICOM_ORDER = {
    "STAT": "STAT",
    "URGENT": "URGENT",
    "HIGH": "URGENT",
    "ROUTINE": "ROUTINE",
    "MEDIUM": "ROUTINE",
    "MED": "ROUTINE",
    "LOW": "ROUTINE",
}


def level_number(name: str) -> int:
    try:
        return LEVELS.index(name)
    except ValueError:
        raise ValueError(f"priority must be one of {', '.join(LEVELS)}, not {name!r}") from None


def level_name(level: int) -> str:
    return LEVELS[max(ROUTINE, min(CRITICAL, level))]


def order_priority_from_dicom(value: str | None) -> str | None:
    """``STAT`` / ``URGENT`` / ``ROUTINE`` for a DICOM priority value, or None if absent or unknown."""
    if not value:
        return None
    return _DICOM_ORDER.get(str(value).strip().upper())


@dataclass(frozen=True, slots=True)
class AgingStep:
    from_level: int
    to_level: int
    after_minutes: float


@dataclass(frozen=True, slots=True)
class Rules:
    stat_level: int = URGENT
    points_per_minute: float = 1.0
    aging: tuple[AgingStep, ...] = (AgingStep(ROUTINE, URGENT, 240.0),)

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        return cls(
            stat_level=level_number(settings.worklist_stat_level),
            points_per_minute=float(settings.worklist_aging_points_per_minute),
            aging=tuple(
                AgingStep(level_number(r.from_level), level_number(r.to_level), float(r.after_minutes))
                for r in settings.worklist_aging
            ),
        )


@dataclass(frozen=True, slots=True)
class FindingFact:
    """What the AI level needs of one finding: its model, label, probability and decision."""

    finding_id: int
    model: str
    model_version: str
    label: str
    probability: float | None
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class AIPriority:
    level: int
    model: str
    model_version: str
    label: str
    probability: float
    finding_id: int

    @property
    def reason(self) -> str:
        level = level_name(self.level).capitalize()
        return f"{level}: {self.label} {self.probability:.2f}, {self.model} v{self.model_version}"


def finding_level(probability: float | None, thresholds: Mapping[str, float]) -> int | None:
    """The highest level whose threshold ``probability`` meets, or None."""
    if probability is None:
        return None
    met = [level_number(name) for name, t in thresholds.items() if name in LEVELS and probability >= t]
    return max(met) if met else None


def ai_priority(
    findings: Iterable[FindingFact], thresholds: Mapping[tuple[str, str], Mapping[str, float]]
) -> AIPriority | None:
    """The study's AI level: its highest non-rejected finding. ``thresholds``: (model, label) -> levels."""
    best: AIPriority | None = None
    for f in findings:
        if f.status == "rejected" or f.probability is None:
            continue
        level = finding_level(f.probability, thresholds.get((f.model, f.label), {}))
        if level is None:
            continue
        candidate = AIPriority(level, f.model, f.model_version, f.label, float(f.probability), f.finding_id)
        if best is None or (candidate.level, candidate.probability) > (best.level, best.probability):
            best = candidate
    return best


@dataclass(frozen=True, slots=True)
class Priority:
    level: int
    score: float
    reason: str
    contributions: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return level_name(self.level)


def minutes_waiting(arrived_at: datetime, now: datetime) -> float:
    return max(0.0, (now - arrived_at).total_seconds() / 60.0)


def score(level: int, arrived_at: datetime, now: datetime, rules: Rules) -> float:
    return round(level * LEVEL_BASE + minutes_waiting(arrived_at, now) * rules.points_per_minute, 2)


def compute(
    *,
    order_priority: str | None,
    ai: AIPriority | None,
    arrived_at: datetime,
    now: datetime,
    rules: Rules,
    aging: bool = True,
) -> Priority:
    """The level, score and reason of one study (``aging=False`` for a study already read)."""
    candidates: list[tuple[int, str]] = []
    if ai is not None:
        candidates.append((ai.level, ai.reason))
    if order_priority == "STAT":
        candidates.append((rules.stat_level, f"{level_name(rules.stat_level).capitalize()}: STAT order"))
    elif order_priority == "URGENT":
        candidates.append((URGENT, "Urgent: urgent order"))
    level = max((lvl for lvl, _ in candidates), default=ROUTINE)
    reasons = [text for lvl, text in sorted(candidates, key=lambda c: -c[0])]
    if aging:
        waited = minutes_waiting(arrived_at, now)
        for step in sorted(rules.aging, key=lambda s: s.from_level):
            if level == step.from_level and waited > step.after_minutes and step.to_level > level:
                level = step.to_level
                reasons.insert(
                    0,
                    f"{level_name(level).capitalize()}: waiting {waited:.0f} min "
                    f"({level_name(step.from_level)} over {step.after_minutes:g} min)",
                )
    if not reasons:
        reasons = ["Routine"]
    return Priority(level, score(level, arrived_at, now, rules), "; ".join(reasons)[:255], reasons)
