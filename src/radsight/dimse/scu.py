"""Talking to other DICOM nodes as SCU: send a study (C-STORE), query (C-FIND), retrieve (C-MOVE).

Instances leave exactly as they were stored: each one is offered in its stored transfer
syntax, and when the peer accepts that syntax the bytes after the file meta information go
out unchanged (pynetdicom's chunked send, no decoding). Only an uncompressed instance whose
exact syntax the peer refused is decoded, to be re-encoded in the uncompressed syntax the
peer accepted; a compressed one the peer cannot take counts as failed (no transcoding here).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, build_context
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category
from sqlalchemy import select

from radsight.archive import Archive
from radsight.dimse.peers import get_peer
from radsight.index.models import Instance, Series, Study

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # presentation contexts in one A-ASSOCIATE-RQ (context IDs are odd numbers 1..255)
_UNCOMPRESSED_LE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}

# With a file path, send_c_store then streams the stored data set as it is instead of
# decoding and re-encoding it (process-wide; nothing in RadSight relies on the other way).
_config.STORE_SEND_CHUNKED_DATASET = True


class RemoteNode(Protocol):
    """Anything naming a DICOM peer: a :class:`~radsight.index.models.RemoteAE` row or :class:`Peer`."""

    @property
    def ae_title(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Peer:
    ae_title: str
    host: str
    port: int


class DimseError(RuntimeError):
    """The peer answered a request with a failure status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (status 0x{status:04X})")
        self.status = status


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    failed_instances: list[str] = field(default_factory=list)


@dataclass
class MoveReport:
    """The final C-MOVE response: its status and sub-operation counts."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_instances: list[str] = field(default_factory=list)
    error_comment: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0x0000


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What sending one stored instance needs to know, read from the index."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    storage_key: str


# -- presentation contexts ---------------------------------------------------------------------


def _contexts_for(sop_class: str, ts: str) -> list[PresentationContext]:
    if ts == ExplicitVRLittleEndian:
        return [build_context(sop_class, [ts]), build_context(sop_class, [ImplicitVRLittleEndian])]
    if ts == ImplicitVRLittleEndian:
        return [build_context(sop_class, [ts]), build_context(sop_class, [ExplicitVRLittleEndian])]
    return [build_context(sop_class, [ts]), build_context(sop_class, list(_UNCOMPRESSED_LE))]


@dataclass
class ContextGroup:
    """The presentation contexts of one association and the (SOP class, syntax) pairs they serve."""

    contexts: list[PresentationContext] = field(default_factory=list)
    pairs: set[tuple[str, str]] = field(default_factory=set)

    def add(self, sop_class: str, ts: str) -> bool:
        """Add the contexts for one pair; False if they do not fit in one association."""
        have = {(cx.abstract_syntax, tuple(cx.transfer_syntax)) for cx in self.contexts}
        new = [cx for cx in _contexts_for(sop_class, ts) if (cx.abstract_syntax, tuple(cx.transfer_syntax)) not in have]
        if len(self.contexts) + len(new) > MAX_CONTEXTS:
            return False
        self.contexts.extend(new)
        self.pairs.add((sop_class, ts))
        return True


def storage_contexts(pairs: Iterable[tuple[str, str]]) -> list[ContextGroup]:
    """Contexts to send instances of the given (SOP class, stored transfer syntax) pairs.

    Each pair gets a context with exactly its stored syntax (so the bytes can go unchanged)
    and a fallback context with uncompressed little endian syntaxes. Split in groups of at
    most 128 contexts (one association each), a pair's contexts always in the same group.
    """
    groups = [ContextGroup()]
    for sop_class, ts in sorted(set(pairs)):
        if not groups[-1].add(sop_class, ts):
            groups.append(ContextGroup())
            groups[-1].add(sop_class, ts)
    return [g for g in groups if g.pairs]


def _new_ae(calling_ae: str) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = 30
    ae.dimse_timeout = 300  # a large instance may take the peer a while to store
    ae.network_timeout = 120
    return ae


def _associate(ae: AE, remote: RemoteNode, contexts: list[PresentationContext] | None = None) -> Association:
    assoc = ae.associate(remote.host, remote.port, contexts=contexts, ae_title=remote.ae_title.strip())
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise ConnectionError(f"association with {remote.ae_title} at {remote.host}:{remote.port} {why}")
    return assoc


# -- C-STORE --------------------------------------------------------------------------------------


def _store_one(assoc: Association, archive: Archive, inst: StoredInstance) -> int | None:
    """C-STORE one stored instance; returns the peer's status, or None if it could not be sent."""
    path = archive.storage.local_path(inst.storage_key)
    try:
        if path is not None:
            try:
                # Chunked send: the stored data set bytes, unchanged; needs the exact syntax.
                return int(assoc.send_c_store(Path(path)).get("Status", 0xC000))
            except ValueError:
                if inst.transfer_syntax_uid not in _UNCOMPRESSED:
                    log.warning(
                        "%s: peer accepted no context for %s in its stored transfer syntax %s",
                        inst.sop_instance_uid, inst.sop_class_uid, inst.transfer_syntax_uid,
                    )
                    return None
        # Uncompressed but another byte order / VR encoding: pynetdicom re-encodes.
        with archive.storage.open(inst.storage_key) as fh:
            ds = pydicom.dcmread(fh)
        return int(assoc.send_c_store(ds).get("Status", 0xC000))
    except (ValueError, AttributeError, OSError) as exc:
        log.warning("%s: cannot send: %s", inst.sop_instance_uid, exc)
        return None


def send_instances(archive: Archive, instances: list[StoredInstance], remote: RemoteNode) -> SendReport:
    """C-STORE stored instances to ``remote``; raises ConnectionError if the first association fails.

    More than 128 presentation contexts (many SOP classes and syntaxes) take several
    associations, one after the other.
    """
    report = SendReport()
    ae = _new_ae(archive.settings.ae_title)
    for n, group in enumerate(storage_contexts((i.sop_class_uid, i.transfer_syntax_uid) for i in instances)):
        batch = [i for i in instances if (i.sop_class_uid, i.transfer_syntax_uid) in group.pairs]
        try:
            assoc = _associate(ae, remote, group.contexts)
        except ConnectionError:
            if n == 0:
                raise
            # Some instances went already: report the others as failed rather than nothing.
            log.warning("association %d with %s failed; %d instance(s) not sent", n + 1, remote.ae_title, len(batch))
            report.failed += len(batch)
            report.failed_instances += [i.sop_instance_uid for i in batch]
            continue
        try:
            for inst in batch:
                if not assoc.is_established:
                    status: int | None = None
                else:
                    status = _store_one(assoc, archive, inst)
                if status is not None and code_to_category(status) in ("Success", "Warning"):
                    report.sent += 1
                else:
                    if status is not None:
                        log.warning("%s refused by %s: status 0x%04X", inst.sop_instance_uid, remote.ae_title, status)
                    report.failed += 1
                    report.failed_instances.append(inst.sop_instance_uid)
        finally:
            if assoc.is_established:
                assoc.release()
    return report


def study_instances(archive: Archive, study_instance_uid: str) -> list[StoredInstance]:
    with archive.db.session() as s:
        rows = s.execute(
            select(
                Instance.sop_instance_uid, Instance.sop_class_uid, Instance.transfer_syntax_uid, Instance.storage_key
            )
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_instance_uid == study_instance_uid)
            .order_by(Series.id, Instance.instance_number, Instance.id)
        ).all()
    return [StoredInstance(*row) for row in rows]


def send_study(archive: Archive, study_instance_uid: str, ae_title: str) -> SendReport:
    """C-STORE every instance of a study to a registered remote AE.

    Raises LookupError for an unknown study or AE, ConnectionError if no association is made.
    """
    with archive.db.session() as s:
        peer = get_peer(s, ae_title)
        remote = Peer(peer.ae_title, peer.host, peer.port) if peer is not None else None
    if remote is None:
        raise LookupError(f"no remote AE {ae_title!r} (register it with `radsight ae add`)")
    instances = study_instances(archive, study_instance_uid)
    if not instances:
        raise LookupError(f"no study {study_instance_uid!r} in the archive")
    report = send_instances(archive, instances, remote)
    log.info("sent study %s to %s: %d sent, %d failed", study_instance_uid, ae_title, report.sent, report.failed)
    return report


# -- C-FIND and C-MOVE ------------------------------------------------------------------------------


def _identifier(level: str, keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level.upper()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _responses(it: Iterator[tuple[Dataset, Dataset | None]]) -> Iterator[tuple[int, str, Dataset, Dataset | None]]:
    for status, identifier in it:
        if not status:  # no response within the DIMSE timeout, or the association ended
            raise ConnectionError("the peer sent no response (timeout or association aborted)")
        yield int(status.Status), str(status.get("ErrorComment", "") or ""), status, identifier


def find(
    remote: RemoteNode,
    level: str,
    filters: dict[str, str],
    *,
    calling_ae: str = "RADSIGHT",
    patient_root: bool = False,
) -> list[Dataset]:
    """C-FIND on ``remote``; ``filters`` maps keywords to matching values ("" = return this key).

    Returns the matches; raises ConnectionError or DimseError (a failure status).
    """
    model = PatientRootQueryRetrieveInformationModelFind if patient_root else StudyRootQueryRetrieveInformationModelFind
    ae = _new_ae(calling_ae)
    assoc = _associate(ae, remote, [build_context(model)])
    results: list[Dataset] = []
    try:
        for code, comment, _status, identifier in _responses(
            assoc.send_c_find(_identifier(level, filters), model)
        ):
            category = code_to_category(code)
            if category == "Pending" and identifier is not None:
                results.append(identifier)
            elif category in ("Failure", "Cancel"):
                raise DimseError(code, f"C-FIND on {remote.ae_title} failed: {comment or category}")
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def move(
    remote: RemoteNode,
    level: str,
    keys: dict[str, str],
    destination: str,
    *,
    calling_ae: str = "RADSIGHT",
    patient_root: bool = False,
) -> MoveReport:
    """C-MOVE from ``remote`` to the AE ``destination`` (which ``remote`` must know).

    ``keys`` holds the unique keys of the level and above (e.g. StudyInstanceUID).
    Returns the final status and counts; raises ConnectionError if no association is made.
    """
    model = PatientRootQueryRetrieveInformationModelMove if patient_root else StudyRootQueryRetrieveInformationModelMove
    ae = _new_ae(calling_ae)
    assoc = _associate(ae, remote, [build_context(model)])
    report = MoveReport(status=0xC000)
    try:
        for code, comment, status, identifier in _responses(
            assoc.send_c_move(_identifier(level, keys), destination, model)
        ):
            report.status = code
            report.error_comment = comment
            report.completed = int(status.get("NumberOfCompletedSuboperations", report.completed) or 0)
            report.failed = int(status.get("NumberOfFailedSuboperations", report.failed) or 0)
            report.warning = int(status.get("NumberOfWarningSuboperations", report.warning) or 0)
            if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
                failed: Any = identifier.FailedSOPInstanceUIDList or []
                report.failed_instances = [str(u) for u in ([failed] if isinstance(failed, str) else failed) if u]
    finally:
        if assoc.is_established:
            assoc.release()
    return report


__all__ = [
    "ContextGroup",
    "DimseError",
    "MoveReport",
    "Peer",
    "RemoteNode",
    "SendReport",
    "StoredInstance",
    "find",
    "move",
    "send_instances",
    "send_study",
    "storage_contexts",
    "study_instances",
]
