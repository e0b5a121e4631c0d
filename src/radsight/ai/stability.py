"""Stable series: no new instance for ``settings.ai_stable_seconds`` -> queue the matching models.

Like Orthanc's "stable series" event. The ingest listener (``on_stored``) runs on the ingest
path (inside the C-STORE / STOW-RS handler), so it only records "series -> last arrival" in
memory under a lock: no database, no routing. A timer thread finds the series that went
quiet and, off the ingest path, asks routing which models apply and queues jobs.

Durability: the in-memory map is lost with the process. At start-up ``recover()`` puts every
series updated in the last ``ai_recover_hours`` back in the map; when it turns stable,
``jobs.enqueue``'s dedupe skips the series whose jobs already saw their last instance, so a
restart neither loses a stability event nor runs a model twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from radsight.ai import jobs
from radsight.ai.result_types import is_ai_result
from radsight.index.models import AIJob, Series, Study
from radsight.index.types import utcnow
from radsight.ingest.events import StoredEvent

if TYPE_CHECKING:
    from radsight.ai.routing import RoutingTable
    from radsight.archive import Archive

log = logging.getLogger(__name__)

def is_result_event(event: StoredEvent) -> bool:
    """An AI result (never a stability trigger): ``result_types.is_ai_result`` on the stored header."""
    description = event.dataset.get("SeriesDescription", "") if event.dataset is not None else ""
    return is_ai_result(
        modality=event.modality, sop_class_uid=event.result.sop_class_uid, series_description=str(description or "")
    )


@dataclass(slots=True)
class _Pending:
    study_instance_uid: str
    last_arrival: float  # time.monotonic()


def queue_models_for_series(
    archive: Archive, study_instance_uid: str, series_instance_uid: str, *, trigger: str = "stable",
    table: RoutingTable | None = None,
) -> list[AIJob]:
    """Route a series and queue (or find, see ``jobs.enqueue``) one job per matching model.
    ``table``: the routing table, when the caller read it once for several series."""
    from radsight.ai import routing

    try:
        models = routing.route_series(archive, series_instance_uid, table)
    except LookupError:
        return []
    return jobs.queue(archive, study_instance_uid, [(series_instance_uid, m) for m in models], trigger=trigger)


class StabilityMonitor:
    """Tracks arrivals per series and queues jobs for series that became stable."""

    def __init__(
        self,
        archive: Archive,
        *,
        stable_seconds: float | None = None,
    ) -> None:
        self.archive = archive
        self.stable_seconds = stable_seconds if stable_seconds is not None else archive.settings.ai_stable_seconds
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._active = True  # events are recorded from construction; stop() ends that
        self._thread: threading.Thread | None = None

    # -- ingest path: must stay cheap ----------------------------------------------------------
    def on_stored(self, event: StoredEvent) -> None:
        if not self._active or is_result_event(event):
            return
        self.note_arrival(event.result.study_instance_uid, event.result.series_instance_uid)

    def note_arrival(self, study_instance_uid: str, series_instance_uid: str) -> None:
        """An instance (not an AI result) of the series arrived now, here or in another process."""
        if not self._active:
            return
        with self._lock:
            self._pending[series_instance_uid] = _Pending(study_instance_uid, time.monotonic())

    # -- off the ingest path ---------------------------------------------------------------
    def pending(self) -> list[str]:
        with self._lock:
            return sorted(self._pending)

    def take_stable(self, now: float | None = None) -> list[tuple[str, str]]:
        """Remove and return (study, series) of the series quiet for ``stable_seconds``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ready = [uid for uid, p in self._pending.items() if now - p.last_arrival >= self.stable_seconds]
            return [(self._pending.pop(uid).study_instance_uid, uid) for uid in ready]

    def check(self, now: float | None = None) -> list[AIJob]:
        """Queue jobs for every series that turned stable; returns the jobs queued or found."""
        from radsight.ai import routing

        queued: list[AIJob] = []
        stable = self.take_stable(now)
        if not stable:
            return queued
        try:
            # Read once per pass, not per series (docs/benchmarks.md): a model or rule changed
            # now applies from the next pass, a fraction of stable_seconds later.
            table = routing.routing_table(self.archive)
        except Exception:
            log.exception("reading the routing table failed; will try again")
            for study_uid, series_uid in stable:
                self._retry_later(study_uid, series_uid)
            return queued
        for study_uid, series_uid in stable:
            try:
                queued += queue_models_for_series(self.archive, study_uid, series_uid, table=table)
            except Exception:
                log.exception("queueing models for stable series %s failed; will try again", series_uid)
                self._retry_later(study_uid, series_uid)
        return queued

    def _retry_later(self, study_uid: str, series_uid: str) -> None:
        """Watch the series again: it is tried after another quiet period."""
        with self._lock:
            self._pending.setdefault(series_uid, _Pending(study_uid, time.monotonic()))

    def recover(self) -> int:
        """Put series updated in the last ``ai_recover_hours`` back under watch (see module doc)."""
        hours = self.archive.settings.ai_recover_hours
        if hours <= 0:
            return 0
        since = utcnow() - timedelta(hours=hours)
        with self.archive.db.session() as s:
            rows = s.execute(
                select(Study.study_instance_uid, Series.series_instance_uid, Series.modality, Series.series_description)
                .join(Study, Study.id == Series.study_pk)
                .where(Series.updated_at >= since)
                .limit(100_000)
            ).all()
        now = time.monotonic()
        count = 0
        with self._lock:
            for study_uid, series_uid, modality, description in rows:
                if is_ai_result(modality=modality or "", sop_class_uid="", series_description=description or ""):
                    continue
                self._pending.setdefault(series_uid, _Pending(study_uid, now))
                count += 1
        if count:
            log.info("watching %d recently updated series for missed AI jobs", count)
        return count

    def _run(self) -> None:
        interval = min(1.0, max(0.05, self.stable_seconds / 4))
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:
                log.exception("stability check failed")

    def start(self) -> None:
        self._active = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ai-stability", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._active = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
