"""The DICOM listener (pynetdicom SCP): C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET.

- Associations are accepted only from calling AE titles registered as peers
  (``radsight ae add``), looked up for each association, unless ``allow_any_calling_ae``.
- C-STORE accepts every storage SOP class, also private and unknown ones, in whatever
  transfer syntax the sender proposes first, and stores the data set bytes exactly as they
  were received: pynetdicom writes them to a temporary file as they arrive (never the whole
  data set in memory), and that file is renamed into the storage spool and handed to the
  ingest service.
- C-FIND matches with the index's query engine (:mod:`radsight.index.query`), the one
  QIDO-RS uses, and answers only the keys asked for.
- C-MOVE (to registered peers) and C-GET send the stored instances in their stored transfer
  syntax where the peer accepts it. pynetdicom's retrieve services take a decoded Dataset:
  read from storage, its elements stay raw and pydicom writes them back unchanged, so the
  bytes are the stored ones, except that retired group length elements (gggg,0000) are left
  out and a deflated data set is compressed anew. An instance stored with an empty SOP
  Class or Instance UID is sent with the indexed values filled in. (Each retrieved instance
  is in memory while it is sent, as pynetdicom queues a whole message before sending it.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pynetdicom import AE, DEFAULT_TRANSFER_SYNTAXES, _config, build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from sqlalchemy import select

from radsight.archive import Archive
from radsight.dimse.peers import get_peer
from radsight.dimse.scu import MAX_CONTEXTS, storage_contexts
from radsight.index.models import Instance, Series, Study
from radsight.index.query import QueryError, QueryLevel, search, split_filters
from radsight.ingest.errors import Reason

log = logging.getLogger(__name__)

_PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
}
_QR_MODELS = (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
)
_SOP_INSTANCE_UID_TAG = 0x00080018

MAX_RECEIVE_PDU = 1024 * 1024

# Status codes (PS3.4 Annex B, C)
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the listener relies on.

    - UNRESTRICTED_STORAGE_SERVICE: accept C-STORE for every storage SOP class pynetdicom
      knows and also for private and unknown ones (an archive keeps what modalities send),
      in the first transfer syntax the sender proposes; the other services are negotiated
      from the contexts added to the AE.
    - STORE_RECV_CHUNKED_DATASET: a received data set goes to a temporary file as it
      arrives instead of being held in memory (objects of hundreds of MB).
    - No query identifiers in the log (patient names, IDs), and pynetdicom's per-message
      INFO lines only if someone asked for them by setting its logger's level.
    """
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    pynetdicom_log = logging.getLogger("pynetdicom")
    if pynetdicom_log.level == logging.NOTSET:
        pynetdicom_log.setLevel(logging.WARNING)


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]  # LO
    return ds


# -- association control ---------------------------------------------------------------------


def handle_association_requested(event: evt.Event, archive: Archive) -> None:
    """Reject calling AE titles that are not registered peers (checked per association)."""
    if archive.settings.allow_any_calling_ae:
        return
    assoc = event.assoc
    primitive: Any = assoc.requestor.primitive
    calling = str(primitive.calling_ae_title or "").strip()
    try:
        with archive.db.session() as s:
            known = get_peer(s, calling) is not None
    except Exception:
        log.exception("cannot read the peer list; refusing the association from %r", calling)
        known = False
    if not known:
        log.warning("association from unregistered calling AE %r refused", calling)
        # Rejected permanent, by the service user, calling AE title not recognised.
        assoc.acse.send_reject(0x01, 0x01, 0x03)
        assoc.kill()


# -- C-ECHO, C-STORE -------------------------------------------------------------------------------


def handle_echo(event: evt.Event) -> int:
    return SUCCESS


def _after_sop_uids(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) > _SOP_INSTANCE_UID_TAG


def _check_against_command(path: Path, sop_class: str, sop_instance: str) -> str | None:
    """Why the data set does not belong to the C-STORE request that carried it, or None.

    Only (0008,0016) and (0008,0018) are read. The SOP Instance UID element must be there
    (PS3.7 9.3.1.1: the Affected SOP Instance UID is the data set's) and both must equal the
    request's. Present but empty, they are tolerated like the empty ones of imported files
    whose file meta names them (docs/architecture.md): the request names them here, and the
    instance is indexed by its values. A data set that cannot be read is left to the ingest
    service to refuse.
    """
    try:
        with open(path, "rb") as fh:
            ds = read_partial(fh, stop_when=_after_sop_uids)
        if "SOPInstanceUID" not in ds:
            return "SOP Instance UID (0008,0018) is missing from the data set"
        in_class = str(ds.get("SOPClassUID", "") or "").strip("\x00 ")
        in_instance = str(ds.get("SOPInstanceUID", "") or "").strip("\x00 ")
    except Exception:
        return None
    if in_instance and in_instance != sop_instance:
        return "SOP Instance UID (0008,0018) differs from the Affected SOP Instance UID"
    if in_class and in_class != sop_class:
        return "SOP Class UID (0008,0016) differs from the Affected SOP Class UID"
    return None


def handle_store(event: evt.Event, archive: Archive) -> Dataset:
    """Store the data set exactly as the sender encoded it."""
    calling = event.assoc.requestor.ae_title.strip()
    request: Any = event.request
    received: Path | None = event.dataset_path
    if received is None:
        # STORE_RECV_CHUNKED_DATASET is off (another part of the process changed it).
        spool = archive.ingest.new_spool_path()
        with open(spool, "wb") as fh:
            fh.write(event.encoded_dataset(include_meta=True))
        source, move = spool, True
    else:
        # pynetdicom's temporary file holds File Meta Information made from the request and
        # the data set as received; moved into the spool it is stored with a rename, not a
        # copy. pynetdicom removes the file after this handler, unless we moved it away.
        spool = archive.ingest.new_spool_path()
        try:
            os.replace(received, spool)
            source, move = spool, True
        except OSError:  # another file system: the ingest service copies it
            source, move = Path(received), False
    problem = _check_against_command(
        source, str(request.AffectedSOPClassUID or ""), str(request.AffectedSOPInstanceUID or "")
    )
    if problem is not None:
        if move:
            source.unlink(missing_ok=True)
        log.warning("C-STORE from %s refused: %s", calling, problem)
        return _status(Reason.INVALID_ATTRIBUTE.dimse_status, problem)
    result = archive.ingest.ingest_file(source, move=move, source="dimse", calling_ae=calling)
    if not result.ok:
        log.warning("C-STORE from %s refused: %s: %s", calling, result.reason, result.message)
        return _status(result.dimse_status, result.message)
    return _status(SUCCESS)


# -- C-FIND -------------------------------------------------------------------------------------------


def _model_levels(patient_root: bool) -> tuple[QueryLevel, ...]:
    if patient_root:
        return (QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)
    return (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)


def _text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


class InvalidIdentifier(ValueError):
    pass


@dataclass
class ParsedIdentifier:
    level: QueryLevel
    patient_root: bool
    filters: dict[str, str]  # matching keys by keyword, "" = return key
    requested: list[Any]  # the request's elements, in order, to answer with


def _parse_identifier(event: evt.Event) -> ParsedIdentifier:
    request: Any = event.request
    patient_root = request.AffectedSOPClassUID in _PATIENT_ROOT
    try:
        identifier = event.identifier
        raw_level = str(identifier.get("QueryRetrieveLevel", "") or "").strip()
        elements = list(identifier)
    except Exception as exc:
        raise InvalidIdentifier(f"cannot decode the identifier: {exc}") from exc
    try:
        level = QueryLevel(raw_level)
    except ValueError:
        raise InvalidIdentifier(f"invalid Query/Retrieve Level {raw_level!r}") from None
    if level not in _model_levels(patient_root):
        raise InvalidIdentifier(f"level {level} is not in the {'patient' if patient_root else 'study'} root model")
    filters: dict[str, str] = {}
    requested: list[Any] = []
    for elem in elements:
        if elem.tag.group == 0x0002 or elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        requested.append(elem)
        if not elem.keyword or elem.VR == "SQ":
            continue  # private tags and sequence matching: not supported, answered empty
        try:
            filters[elem.keyword] = _text_value(elem.value)
        except Exception as exc:
            raise InvalidIdentifier(f"cannot decode {elem.keyword}: {exc}") from exc
    return ParsedIdentifier(level, patient_root, filters, requested)


def _answer(match: Dataset, parsed: ParsedIdentifier, ae_title: str) -> Dataset:
    """The response identifier: the keys asked for, valued from ``match`` or empty."""
    rsp = Dataset()
    rsp.SpecificCharacterSet = "ISO_IR 192"  # values come from the index as Python str
    rsp.QueryRetrieveLevel = str(parsed.level)
    for elem in parsed.requested:
        if elem.keyword == "RetrieveAETitle":
            rsp.RetrieveAETitle = ae_title
        elif elem.VR == "SQ":
            rsp.add_new(elem.tag, "SQ", [])
        elif elem.keyword and elem.keyword in match:
            rsp[elem.tag] = match[elem.tag]
        else:
            rsp.add_new(elem.tag, elem.VR, None)
    return rsp


def handle_find(event: evt.Event, archive: Archive) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """C-FIND with the shared matching engine; keys the index lacks are returned empty."""
    try:
        parsed = _parse_identifier(event)
        inside, outside = split_filters(parsed.level, parsed.filters)
        ignored = sorted(k for k, v in outside.items() if v.strip(" \x00*"))
        if ignored:
            # PS3.4 C.2.2.1.3: an SCP may ignore matching on optional keys it does not support.
            log.info("C-FIND: matching on %s is not supported; the keys are returned empty", ", ".join(ignored))
        with archive.db.session() as s:
            matches = search(s, parsed.level, inside, patient_root=parsed.patient_root)
    except (InvalidIdentifier, QueryError) as exc:
        log.warning("C-FIND refused: %s", exc)
        yield _status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    for match in matches:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, _answer(match, parsed, archive.settings.ae_title)


# -- C-MOVE, C-GET ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Match:
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    storage_key: str


def _uid_list(parsed: ParsedIdentifier, keyword: str) -> list[str]:
    value = parsed.filters.get(keyword, "").strip(" \x00")
    return [v.strip(" \x00") for v in value.split("\\") if v.strip(" \x00")] if value else []


def _retrieve_matches(archive: Archive, parsed: ParsedIdentifier) -> list[_Match]:
    """Instances named by the unique keys of a C-MOVE / C-GET identifier (PS3.4 C.4.2.2.1)."""
    stmt = (
        select(Instance.sop_instance_uid, Instance.sop_class_uid, Instance.transfer_syntax_uid, Instance.storage_key)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
    )
    keys = {
        QueryLevel.PATIENT: ("PatientID", Study.patient_id),
        QueryLevel.STUDY: ("StudyInstanceUID", Study.study_instance_uid),
        QueryLevel.SERIES: ("SeriesInstanceUID", Series.series_instance_uid),
        QueryLevel.IMAGE: ("SOPInstanceUID", Instance.sop_instance_uid),
    }
    order = list(keys)
    for level in order[: order.index(parsed.level) + 1]:
        keyword, column = keys[level]
        values = _uid_list(parsed, keyword)
        if level is parsed.level and not values:
            raise InvalidIdentifier(f"{keyword} is required for a retrieve at {level} level")
        if any("*" in v or "?" in v for v in values):
            raise InvalidIdentifier(f"{keyword}: wild cards are not allowed in a retrieve")
        if values:
            stmt = stmt.where(column.in_(values))
    stmt = stmt.order_by(Study.id, Series.id, Instance.instance_number, Instance.id)
    with archive.db.session() as s:
        return [_Match(*row) for row in s.execute(stmt).all()]


def _read_stored(archive: Archive, match: _Match) -> Dataset:
    """The stored instance; a stand-in that pynetdicom counts as a failed sub-operation if unreadable."""
    try:
        with archive.storage.open(match.storage_key) as fh:
            ds = pydicom.dcmread(fh)
        # Stored with an empty SOP Class / Instance UID (accepted by design, see
        # docs/architecture.md): a C-STORE needs them, the indexed values fill them in.
        if not str(ds.get("SOPClassUID", "") or "").strip("\x00 "):
            ds.SOPClassUID = match.sop_class_uid
        if not str(ds.get("SOPInstanceUID", "") or "").strip("\x00 "):
            ds.SOPInstanceUID = match.sop_instance_uid
        return ds
    except Exception as exc:
        log.error("cannot read stored instance %s (%s): %s", match.sop_instance_uid, match.storage_key, exc)
        # No SOP Class UID: send_c_store raises, pynetdicom counts a failure and lists the UID.
        failed = Dataset()
        failed.SOPInstanceUID = match.sop_instance_uid
        return failed


def _sub_operations(
    event: evt.Event, archive: Archive, matches: list[_Match]
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    for match in matches:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, _read_stored(archive, match)


def _move_contexts(matches: list[_Match]) -> list[PresentationContext]:
    """Contexts for the sub-association: each stored syntax, plus uncompressed fallbacks."""
    pairs = sorted({(m.sop_class_uid, m.transfer_syntax_uid) for m in matches})
    groups = storage_contexts(pairs)
    if len(groups) <= 1:
        return groups[0].contexts if groups else [build_context(Verification)]
    # One association holds 128 contexts: keep the stored syntaxes, drop the fallbacks.
    if len(pairs) > MAX_CONTEXTS:
        log.warning("C-MOVE of %d SOP class / syntax pairs: those past %d will fail", len(pairs), MAX_CONTEXTS)
    return [build_context(sop_class, [ts]) for sop_class, ts in pairs[:MAX_CONTEXTS]]


def handle_move(event: evt.Event, archive: Archive) -> Iterator[Any]:
    """C-MOVE to a registered peer: destination, number of sub-operations, then the instances."""
    destination = str(event.move_destination or "").strip()
    with archive.db.session() as s:
        peer = get_peer(s, destination) if destination else None
        address = (peer.host, peer.port) if peer is not None else None
    if address is None:
        log.warning("C-MOVE to unknown destination %r refused", destination)
        yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
        return
    try:
        matches = _retrieve_matches(archive, _parse_identifier(event))
    except InvalidIdentifier as exc:
        # pynetdicom takes a status only after the destination and the count; the
        # association with the destination it opens in between is released unused.
        log.warning("C-MOVE refused: %s", exc)
        yield address[0], address[1], {"contexts": [build_context(Verification)]}
        yield 1
        yield _status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    yield address[0], address[1], {"contexts": _move_contexts(matches)}
    yield len(matches)
    yield from _sub_operations(event, archive, matches)


def handle_get(event: evt.Event, archive: Archive) -> Iterator[Any]:
    """C-GET: C-STORE sub-operations on the requestor's association (it must offer the SCP role)."""
    try:
        matches = _retrieve_matches(archive, _parse_identifier(event))
    except InvalidIdentifier as exc:
        log.warning("C-GET refused: %s", exc)
        yield 1
        yield _status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    yield len(matches)
    yield from _sub_operations(event, archive, matches)


# -- the server --------------------------------------------------------------------------------------


class DicomServer:
    """Owns the pynetdicom AE and its server thread."""

    def __init__(self, archive: Archive) -> None:
        configure_pynetdicom()
        self.archive = archive
        self.ae = AE(ae_title=archive.settings.ae_title)
        # A sender's PDUs are held in memory one at a time: a bounded size keeps a large data
        # set streaming to disk (with 0, "unlimited", pynetdicom senders put it in one PDU).
        self.ae.maximum_pdu_size = MAX_RECEIVE_PDU
        self.ae.maximum_associations = 32
        self.ae.add_supported_context(Verification, DEFAULT_TRANSFER_SYNTAXES)
        for model in _QR_MODELS:
            self.ae.add_supported_context(model, DEFAULT_TRANSFER_SYNTAXES)
        # Storage contexts need no entry: UNRESTRICTED_STORAGE_SERVICE accepts them all, with
        # the SCU and SCP roles a C-GET requestor asks for.
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self, host: str, port: int) -> None:
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, handle_association_requested, [self.archive]),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, handle_store, [self.archive]),
            (evt.EVT_C_FIND, handle_find, [self.archive]),
            (evt.EVT_C_MOVE, handle_move, [self.archive]),
            (evt.EVT_C_GET, handle_get, [self.archive]),
        ]
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the DICOM listener is already running")
            self._server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, give running associations ``timeout`` seconds to end, then abort them."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        # Connections that never sent an A-ASSOCIATE-RQ (probes) are not waited for.
        deadline = time.monotonic() + timeout
        while any(a.is_established for a in self.ae.active_associations) and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [a for a in self.ae.active_associations if a.is_established]
        if running:
            log.warning("aborting %d DICOM association(s) still running", len(running))
        self.ae.shutdown()
