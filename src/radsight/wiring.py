"""Who listens to whom: every subscription of a process of ``radsight serve``, made here and
nowhere else. Each function takes the process's own archive (subscriptions are per archive).

- every process that ingests (the main one, each extra HTTP process): ``subscribe``;
- each AI worker process (results are ingested there too, but only the AI hooks matter):
  ``subscribe_ai`` (``AIEngine(process_setup=...)`` runs it in the process);
- an extra HTTP process also passes arrivals and job wake-ups on to the main process:
  ``forward_to_main``.

The AI side and ingest announce through hooks they own (``Archive.ai_hooks``,
``IngestService.subscribe`` / ``on_new_study``); they never import their subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from radsight.ai.stability import is_result_event
from radsight.worklist import arrival, service
from radsight.worklist.priority import Rules

if TYPE_CHECKING:
    from radsight.archive import Archive
    from radsight.ingest.events import StoredEvent


def subscribe_ai(archive: Archive) -> Rules:
    """The worklist follows the AI side: priority, events and alerts with each recorded job,
    re-prioritisation with each reader's decision (both in the AI side's transaction)."""
    rules = Rules.from_settings(archive.settings)
    archive.ai_hooks.job_recorded.append(partial(service.on_job_recorded, rules=rules))
    archive.ai_hooks.finding_decided.append(partial(service.on_finding_decided, rules=rules))
    return rules


def subscribe(archive: Archive) -> arrival.IngestListener:
    """The worklist follows ingest and the AI side; studies stored while no listener ran get
    their rows now. Returns the listener (its ``flush_touched`` belongs to ``WorklistTasks``)."""
    rules = subscribe_ai(archive)
    listener = arrival.IngestListener(archive, rules)
    archive.ingest.on_new_study(listener.new_study_rows)
    archive.ingest.subscribe(listener)
    arrival.backfill(archive, rules)
    return listener


def forward_to_main(archive: Archive, put: Callable[[tuple[str, ...]], object]) -> None:
    """In an extra HTTP process: each arrival of a non-result instance (for the main process's
    stability trigger) and each queued job (to wake the main process's AI workers) as a message."""

    def arrived(event: StoredEvent) -> None:  # on the ingest path: a put into a pipe, nothing more
        if not is_result_event(event):
            put(("arrival", event.result.study_instance_uid, event.result.series_instance_uid))

    archive.ingest.subscribe(arrived)
    archive.ai_hooks.job_queued.append(lambda: put(("wake",)))
