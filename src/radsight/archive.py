"""An archive: settings + index + storage + the ingest service + the AI side's hooks, opened once per process.

It carries every per-archive registry (ingest subscribers, AI hooks), so two archives in one
process never share state; ``radsight.wiring`` subscribes the worklist to both."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from radsight.ai.hooks import AIHooks
from radsight.config import Settings
from radsight.index.db import Database
from radsight.ingest.service import IngestService
from radsight.storage.base import Storage
from radsight.storage.filesystem import FileSystemStorage

log = logging.getLogger(__name__)


def restrict_umask() -> None:
    """Every file this process creates from now on is readable by its user only (0600, folders
    0700), whichever module or library creates it (storage, spools, SQLite's -wal/-shm, AI
    results, model copies, exports): the archive holds patient data. Stricter bits already
    set are kept. Set once per process, here, because every process that touches an archive
    (``serve``, its HTTP and AI worker processes, every CLI command) opens it first."""
    os.umask(os.umask(0o077) | 0o077)


@dataclass
class Archive:
    settings: Settings
    db: Database
    storage: Storage
    ingest: IngestService
    ai_hooks: AIHooks = field(default_factory=AIHooks)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Archive:
        restrict_umask()
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(settings.home, 0o700)  # also a home made by an earlier version
        db = Database(settings.resolved_database_url)
        if migrate:
            db.migrate()
        storage = FileSystemStorage(settings.resolved_storage_dir)
        removed = storage.clean_spool()
        if removed:
            log.warning("removed %d incomplete temporary file(s) left by an earlier stop", removed)
        return cls(settings=settings, db=db, storage=storage, ingest=IngestService(db, storage, settings))

    def close(self) -> None:
        self.ingest.close()
        self.storage.close()
        self.db.dispose()
