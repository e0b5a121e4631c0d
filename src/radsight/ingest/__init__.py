"""Ingest: the one path by which instances enter the archive (DIMSE, STOW-RS, import)."""

from radsight.ingest.errors import IngestError, Reason
from radsight.ingest.events import IngestResult, Outcome, StoredEvent
from radsight.ingest.service import IngestService

__all__ = ["IngestError", "IngestResult", "IngestService", "Outcome", "Reason", "StoredEvent"]
