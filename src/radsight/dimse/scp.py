"""The DICOM listener (pynetdicom SCP): C-ECHO and C-STORE into the ingest service."""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radsight.archive import Archive
from radsight.dimse.peers import get_peer

log = logging.getLogger(__name__)


def handle_echo(event: evt.Event) -> int:
    return 0x0000


def handle_store(event: evt.Event, archive: Archive) -> int | tuple[int, Any]:
    """Store the data set exactly as the sender encoded it."""
    calling = event.assoc.requestor.ae_title.strip()
    request: Any = event.request
    result = archive.ingest.ingest_dataset_bytes(
        event.file_meta, request.DataSet.getvalue(), source="dimse", calling_ae=calling
    )
    if not result.ok:
        log.warning("C-STORE from %s refused: %s", calling, result.reason)
    return result.dimse_status


class DicomServer:
    """Owns the pynetdicom AE and its server thread."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.ae = AE(ae_title=archive.settings.ae_title)
        self.ae.maximum_pdu_size = 0
        self.ae.add_supported_context(Verification)
        for cx in StoragePresentationContexts:
            if cx.abstract_syntax is not None:
                self.ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._server: Any = None

    def _allowed(self, calling: str) -> bool:
        if self.archive.settings.allow_any_calling_ae:
            return True
        with self.archive.db.session() as s:
            return get_peer(s, calling) is not None

    def start(self, host: str, port: int) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, handle_store, [self.archive]),
        ]
        # TODO(dimse): refuse calling AEs not registered (settings.allow_any_calling_ae).
        self._server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
