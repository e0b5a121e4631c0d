"""Sending to other nodes (SCU): C-STORE a study to a remote AE."""

from __future__ import annotations

from dataclasses import dataclass

from radsight.archive import Archive


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0


def send_study(archive: Archive, study_instance_uid: str, ae_title: str) -> SendReport:
    raise NotImplementedError("send_study: DIMSE SCU not written yet")
