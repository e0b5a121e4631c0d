"""Studies arriving in the worklist: a row (and a ``study-added`` event) for every study the
archive holds, written in the ingest transaction that creates the study.

``IngestListener`` is subscribed to one archive's ingest service by the composition root
(``radsight.wiring``): ``new_study_rows`` runs inside the ingest transaction of a new study;
``__call__`` runs after each stored instance and only marks the study touched (one SELECT per
study per process the first time, nothing per instance after that); ``flush_touched`` turns the
marks into one ``study-updated`` event per study.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Dialect, Table, bindparam, exists, insert, select
from sqlalchemy.exc import IntegrityError

from radsight.index.compiled import CompiledStatement, compiled_for
from radsight.index.models import AIFinding, Instance, Study, WorklistEvent, WorklistStudy
from radsight.index.types import utcnow
from radsight.worklist import events
from radsight.worklist.priority import Rules, order_priority_from_dicom
from radsight.worklist.rows import new_row
from radsight.worklist.service import refresh_ai

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from radsight.archive import Archive
    from radsight.ingest.events import ParsedInstance, StoredEvent

log = logging.getLogger(__name__)


class IngestListener:
    """Creates a study's worklist row on its first instance; later instances only mark the
    study touched (``flush_touched`` turns that into one ``study-updated`` event per study)."""

    def __init__(self, archive: Archive, rules: Rules, memory: int = 20000) -> None:
        self.archive = archive
        self.rules = rules
        self._known: OrderedDict[str, None] = OrderedDict()
        self._memory = memory
        self._touched: set[str] = set()
        self._added: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: StoredEvent) -> None:
        uid = event.result.study_instance_uid
        with self._lock:
            if uid in self._added:  # its row was written with the study's (new_study_rows)
                self._added.discard(uid)
                self._remember(uid)
                return
            if uid in self._known:
                self._known.move_to_end(uid)
                self._touched.add(uid)
                return
        created = ensure_study(
            self.archive,
            uid,
            self.rules,
            arrived_at=event.received_at,
            sop_instance_uid=event.result.sop_instance_uid,
            dataset=event.dataset,
        )
        with self._lock:
            self._remember(uid)
            if not created:
                self._touched.add(uid)

    def _remember(self, uid: str) -> None:
        self._known[uid] = None
        if len(self._known) > self._memory:
            self._known.popitem(last=False)

    def new_study_rows(self, cur: Any, parsed: ParsedInstance, now: datetime) -> None:
        """The worklist row and ``study-added`` event of a study the ingest transaction creates
        (``IngestService.on_new_study``): they commit with the study, or neither does.

        Runs in that transaction, on its DBAPI cursor, with statements compiled once per dialect.
        """
        q = compiled_for(self.archive.db.engine.dialect, _NewStudyStatements)
        uid = parsed.study_instance_uid
        if q.exists.first(cur, {"uid": uid}) is not None:  # a row outlived its study
            return
        values = new_row(uid, order_priority=order_priority_of(parsed.dataset), arrived_at=now, now=now,
                         rules=self.rules)
        q.insert_row.run(cur, values)
        q.insert_event.run(cur, {
            "type": events.STUDY_ADDED, "study_instance_uid": uid, "payload_json": "{}", "created_at": now,
        })
        with self._lock:
            # If the transaction rolls back, the study does not exist either, and the next
            # instance of it runs this again; the mark only spares the listener a query.
            self._added.add(uid)
            if len(self._added) > self._memory:
                self._added.clear()

    def flush_touched(self) -> int:
        """Append ``study-updated`` for the studies that received instances since the last flush."""
        with self._lock:
            touched, self._touched = self._touched, set()
        if not touched:
            return 0
        with self.archive.db.session() as s:
            for uid in sorted(touched):
                events.append(s, events.STUDY_UPDATED, uid, {"reason": "instances"})
            s.commit()
        return len(touched)


class _NewStudyStatements:
    def __init__(self, dialect: Dialect) -> None:
        wl, ev = (cast(Table, m.__table__) for m in (WorklistStudy, WorklistEvent))
        self.exists = CompiledStatement(select(wl.c.id).where(wl.c.study_instance_uid == bindparam("uid")), dialect)
        self.insert_row = CompiledStatement.insert(wl, dialect)
        self.insert_event = CompiledStatement.insert(ev, dialect)


def backfill(archive: Archive, rules: Rules) -> int:
    """Rows for studies that have none (stored while no listener ran: ``radsight import``, an
    older version); arrival = when the study was first indexed."""
    st, wl = (cast(Table, m.__table__) for m in (Study, WorklistStudy))
    now = utcnow()
    with archive.db.engine.begin() as c:
        missing = select(st.c.study_instance_uid, st.c.created_at).where(
            ~exists().where(wl.c.study_instance_uid == st.c.study_instance_uid)
        )
        rows = c.execute(missing).all()
        if rows:
            c.execute(
                insert(wl),
                [new_row(uid, order_priority=None, arrived_at=created or now, now=now, rules=rules)
                 for uid, created in rows],
            )
    if rows:
        with archive.db.session() as s:
            with_findings = set(
                s.scalars(
                    select(AIFinding.study_instance_uid).where(
                        AIFinding.study_instance_uid.in_([uid for uid, _ in rows])
                    )
                )
            )
            for uid in with_findings:
                row = s.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == uid))
                if row is not None:
                    refresh_ai(s, row, rules)
            s.commit()
        log.info("worklist: added %d study row(s) stored earlier", len(rows))
    return len(rows)


def _dicom_order_priority(archive: Archive, sop_instance_uid: str) -> str | None:
    """Requested Procedure Priority / Study Priority ID from the stored instance (header only)."""
    import pydicom

    with archive.db.session() as s:
        key = s.scalar(select(Instance.storage_key).where(Instance.sop_instance_uid == sop_instance_uid))
    if key is None:
        return None
    try:
        with archive.storage.open(key) as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=[(0x0040, 0x1003), (0x0032, 0x000C)])
    except Exception:  # unreadable: no order priority
        log.debug("no order priority read from %s", sop_instance_uid, exc_info=True)
        return None
    return order_priority_of(ds)


def order_priority_of(ds: Dataset) -> str | None:
    """Requested Procedure Priority, else Study Priority ID, as a worklist order priority."""
    try:
        return order_priority_from_dicom(ds.get("RequestedProcedurePriority")) or order_priority_from_dicom(
            ds.get("StudyPriorityID")
        )
    except Exception:  # an unreadable optional attribute: no order priority
        log.debug("no order priority in the header", exc_info=True)
        return None


def ensure_study(
    archive: Archive,
    study_instance_uid: str,
    rules: Rules,
    *,
    arrived_at: datetime | None = None,
    sop_instance_uid: str = "",
    dataset: Dataset | None = None,
) -> bool:
    """Insert the study's row (with a ``study-added`` event) unless it exists; True if inserted.

    The order priority comes from ``dataset`` (the header ingest parsed) when given, else from
    the stored instance ``sop_instance_uid``.
    """
    # Core, not the ORM: this runs on the ingest path for a new study.
    wl = cast(Table, WorklistStudy.__table__)
    with archive.db.engine.connect() as c:
        if c.execute(select(wl.c.id).where(wl.c.study_instance_uid == study_instance_uid)).first() is not None:
            return False
    if dataset is not None:
        order = order_priority_of(dataset)
    else:
        order = _dicom_order_priority(archive, sop_instance_uid) if sop_instance_uid else None
    now = utcnow()
    values = new_row(study_instance_uid, order_priority=order, arrived_at=arrived_at or now, now=now, rules=rules)
    try:
        with archive.db.engine.begin() as c:
            c.execute(insert(wl), values)
            events.append_row(c, events.STUDY_ADDED, study_instance_uid)
    except IntegrityError:  # another thread or process inserted it first
        return False
    return True
