"""An archive: settings + index + storage + the ingest service, opened once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from radsight.config import Settings
from radsight.index.db import Database
from radsight.ingest.service import IngestService
from radsight.storage.filesystem import FileSystemStorage

log = logging.getLogger(__name__)


@dataclass
class Archive:
    settings: Settings
    db: Database
    storage: FileSystemStorage
    ingest: IngestService

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Archive:
        settings.home.mkdir(parents=True, exist_ok=True)
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
