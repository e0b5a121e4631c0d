"""Ingest: the one path by which instances enter the archive (DIMSE, STOW-RS, import)."""

from radsight.ingest.errors import IngestError, Reason
from radsight.ingest.service import IngestResult, IngestService, Outcome, StoredEvent

__all__ = ["IngestError", "IngestResult", "IngestService", "Outcome", "Reason", "StoredEvent"]
