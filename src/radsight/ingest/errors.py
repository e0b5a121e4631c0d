from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an instance was refused; each maps to a DICOM status and an HTTP status."""

    NOT_DICOM = "not-dicom"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    UNSUPPORTED = "unsupported"
    MISSING_ATTRIBUTE = "missing-attribute"
    INVALID_ATTRIBUTE = "invalid-attribute"
    SOP_CLASS_MISMATCH = "sop-class-mismatch"
    TOO_LARGE = "too-large"
    STORAGE_FAILURE = "storage-failure"

    @property
    def dimse_status(self) -> int:
        """C-STORE failure status (PS3.4 Annex B.2.3) / STOW-RS FailureReason (PS3.18 I.2)."""
        if self in (Reason.MISSING_ATTRIBUTE, Reason.INVALID_ATTRIBUTE, Reason.SOP_CLASS_MISMATCH):
            return 0xA900  # Error: Data Set does not match SOP Class
        if self in (Reason.STORAGE_FAILURE, Reason.TOO_LARGE):
            return 0xA700  # Refused: Out of Resources
        return 0xC000  # Error: Cannot understand


class IngestError(Exception):
    """An instance refused, with a reason a sender can act on."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
