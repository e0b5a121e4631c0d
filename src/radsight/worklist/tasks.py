"""The worklist's background thread, one per process that ingests: ``study-updated`` for the
studies that received instances (its own listener's marks) and, in the main process only
(``housekeeping``), webhook delivery, lapsed claims, aging and pruning of old events.

All of its state is in the database, so stopping it loses nothing and several servers may
run it at once (``alerts.py`` explains why a webhook is still sent once per attempt)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from radsight.worklist import alerts, events, service

if TYPE_CHECKING:
    from radsight.archive import Archive
    from radsight.worklist.arrival import IngestListener

log = logging.getLogger(__name__)


class WorklistTasks:
    def __init__(
        self,
        archive: Archive,
        listener: IngestListener,
        *,
        housekeeping: bool = True,
        interval_seconds: float = 0.5,
        sweep_seconds: float = 5.0,
        keep_events: timedelta = timedelta(days=7),
    ) -> None:
        self.archive = archive
        self.listener = listener
        self.housekeeping = housekeeping
        self.interval = interval_seconds
        self.sweep_seconds = sweep_seconds
        self.keep_events = keep_events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="worklist-tasks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then flush the marks left (nothing received is left unannounced)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.listener.flush_touched()
        except Exception:
            log.exception("the last worklist flush failed")

    def _loop(self) -> None:
        http = httpx.Client(timeout=self.archive.settings.alert_webhook_timeout_seconds)
        last_sweep = last_prune = 0.0
        try:
            while not self._stop.wait(self.interval):
                now = time.monotonic()
                try:
                    self.listener.flush_touched()
                    if not self.housekeeping:
                        continue
                    alerts.deliver_due(self.archive, http)
                    if now - last_sweep >= self.sweep_seconds:
                        last_sweep = now
                        service.sweep(self.archive)
                    if now - last_prune >= 3600:
                        last_prune = now
                        with self.archive.db.session() as s:
                            events.prune(s, self.keep_events)
                except Exception:
                    log.exception("worklist background task failed; retrying")
        finally:
            http.close()
