"""What the AI side announces, for whoever subscribes (the worklist does; the AI side knows no subscriber).

Two kinds, as in pynetdicom's events:
- in-transaction hooks (``job_recorded``, ``finding_decided``): called with the session of the
  transaction that makes the fact true, before it commits; a subscriber writes its own rows in
  that transaction and never commits. An error propagates, so the fact and its consequences
  commit together or not at all.
- notifications (``job_queued``): called after the commit; errors are logged, never raised
  (a wake-up that fails costs one poll interval).

Each archive carries its own ``AIHooks`` (``Archive.ai_hooks``); the composition root
(``radsight.wiring``) subscribes, once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from radsight.index.models import AIJob

log = logging.getLogger(__name__)

JobRecorded = Callable[[Session, AIJob], object]
FindingDecided = Callable[[Session, str], object]
JobQueued = Callable[[], object]


@dataclass
class AIHooks:
    job_recorded: list[JobRecorded] = field(default_factory=list)
    """``(session, job)``: a job's findings were recorded in ``session``'s transaction."""
    finding_decided: list[FindingDecided] = field(default_factory=list)
    """``(session, study_instance_uid)``: a reader's decision on a finding, in ``session``'s transaction."""
    job_queued: list[JobQueued] = field(default_factory=list)
    """``()``: at least one job was queued and committed (wake the workers)."""

    def recorded(self, session: Session, job: AIJob) -> None:
        for hook in list(self.job_recorded):
            hook(session, job)

    def decided(self, session: Session, study_instance_uid: str) -> None:
        for hook in list(self.finding_decided):
            hook(session, study_instance_uid)

    def queued(self) -> None:
        for hook in list(self.job_queued):
            try:
                hook()
            except Exception:
                log.exception("a job-queued subscriber failed (the workers poll the database anyway)")
