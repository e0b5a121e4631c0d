"""The AI engine in one object: stability trigger + worker pool, started and stopped with the server.

Also on-demand runs (``radsight ai run``, ``POST /api/studies/{uid}/ai/run``): ``request_run``
queues the study's matching models, like a stable series would, but a finished job runs again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from radsight.ai import jobs, registry
from radsight.ai.stability import StabilityMonitor
from radsight.ai.worker import ProcessSetup, ProcessWorkerPool, WorkerPool
from radsight.index.models import AIJob, AIModel, Series, Study

if TYPE_CHECKING:
    from radsight.archive import Archive

log = logging.getLogger(__name__)


class StudyNotFound(LookupError):
    pass


class ModelNotFound(LookupError):
    pass


class AIEngine:
    """``start()`` subscribes the stability monitor to ingest and starts ``ai_workers`` threads."""

    def __init__(
        self, archive: Archive, *, workers: int | None = None, process_setup: ProcessSetup | None = None
    ) -> None:
        """``process_setup``: run on the archive of each AI worker process (its subscriptions)."""
        self.archive = archive
        n = archive.settings.ai_workers if workers is None else workers
        self.pool: WorkerPool | ProcessWorkerPool = (
            ProcessWorkerPool(archive, n, setup=process_setup)
            if archive.settings.ai_worker_processes
            else WorkerPool(archive, n)
        )
        self.stability = StabilityMonitor(archive)
        self._subscribed = False

    def start(self) -> None:
        if self.archive.settings.ai_builtin_models:
            registry.install_builtin(self.archive)
        if not self._subscribed:
            self.archive.ingest.subscribe(self.stability.on_stored)
            self._subscribed = True
        self.stability.start()
        self.stability.recover()
        self.pool.start()
        log.info(
            "AI engine: %d worker %s, series stable after %.1f s", self.pool.n,
            "process(es)" if isinstance(self.pool, ProcessWorkerPool) else "thread(s)", self.stability.stable_seconds,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop triggering and claiming; running jobs get ``timeout`` s, then are left to a restart."""
        self.stability.stop()
        self.pool.stop(timeout)


def request_run(
    archive: Archive, study_instance_uid: str, *, model_name: str | None = None, trigger: str = "manual"
) -> list[AIJob]:
    """Queue the models that match each series of the study (or only ``model_name``).

    A named model runs where routing sends it; if routing sends it to none of the study's
    series (rules may be narrower), on the series of a modality its package accepts. A queued
    or running job for the same series + model is returned instead of a second one.
    Raises ``StudyNotFound`` / ``ModelNotFound``.
    """
    from radsight.ai import routing
    from radsight.ai.registry import list_models

    with archive.db.session() as s:
        study = s.scalar(select(Study).where(Study.study_instance_uid == study_instance_uid))
        if study is None:
            raise StudyNotFound(f"study {study_instance_uid} is not in the archive")
        series_rows = s.execute(
            select(Series.series_instance_uid, Series.modality).where(Series.study_pk == study.id).order_by(Series.id)
        ).all()
        named: AIModel | None = None
        if model_name is not None:
            named = next((m for m in list_models(s) if m.name == model_name), None)
            if named is None or not named.enabled:
                raise ModelNotFound(f"model {model_name!r} is not installed" + ("" if named is None else " or enabled"))
    plan: list[tuple[str, AIModel]] = []
    for series_uid, _modality in series_rows:
        facts = routing.series_facts(archive, series_uid)
        for m in routing.models_for_series(archive, facts):
            if named is None or m.name == named.name:
                plan.append((series_uid, m))
    if named is not None and not plan:
        accepted = {m.upper() for m in registry.package_metadata(named).input.modality}
        for series_uid, modality in series_rows:
            facts = routing.series_facts(archive, series_uid)
            if (modality or "").upper() in accepted and not routing.is_ai_result(facts):
                plan.append((series_uid, named))
    return jobs.queue(archive, study_instance_uid, plan, trigger=trigger)
