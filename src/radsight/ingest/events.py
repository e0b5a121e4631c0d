"""What ingest hands to its callers and subscribers: the result of one instance, the
notification after it is stored, and the parsed instance an ``on_new_study`` hook is given.

Subscribers (the worklist, the AI stability pass) import these types from here, never the
ingest service or parser themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset

from radsight.ingest.errors import Reason

__all__ = ["IngestResult", "Listener", "NewStudyHook", "Outcome", "ParsedInstance", "StoredEvent"]


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    OVERWRITTEN = "overwritten"
    REFUSED = "refused"


@dataclass(slots=True)
class IngestResult:
    outcome: Outcome
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    reason: Reason | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.REFUSED

    @property
    def dimse_status(self) -> int:
        return 0x0000 if self.ok else (self.reason or Reason.MALFORMED).dimse_status


@dataclass(slots=True)
class StoredEvent:
    """Notification sent after an instance is durably stored (never for duplicates kept)."""

    result: IngestResult
    modality: str
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The header as parsed on ingest (no pixel data), so listeners need not read the file again.
    dataset: Dataset | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class ParsedInstance:
    """The header of a checked instance and the facts the index needs about its file.

    ``file_size`` and ``pixel_data_offset`` describe the file *as it will be stored*: for a
    file without preamble (``missing_preamble``) that is the input with the 132-byte
    preamble and 'DICM' prefix written in front.
    """

    dataset: Dataset
    file_meta: FileMetaDataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    file_size: int
    pixel_data_offset: int | None
    missing_preamble: bool = False


# Called after each stored instance; its errors are logged, never raised.
Listener = Callable[[StoredEvent], Any]
# Called inside the index transaction that creates a study: (DBAPI cursor of that
# transaction, the instance that starts the study, its time).
NewStudyHook = Callable[[Any, ParsedInstance, datetime], None]
