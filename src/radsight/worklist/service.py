"""The reading workflow of each study (``worklist_study``): created on arrival, re-prioritised
when AI findings land or a reader decides on them, claimed, released and signed.

Hooks:
- ingest: ``attach(archive)`` subscribes ``IngestListener``, which inserts a study's row on its
  first instance (one SELECT per study per process after that: nothing per instance);
- AI: ``ai/worker.py`` calls ``on_job_recorded`` in the transaction that records a job's
  findings, so the priority, the ``ai-result`` event and a critical alert commit with them,
  in whichever process (thread or worker process) ran the job;
- decisions: ``ai/findings.py`` ``decide`` calls ``on_finding_decided`` (rejected findings leave
  the AI level).

Writes are conditional UPDATEs (claim, sign, release), so two readers racing for one study
get one winner on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Dialect, Engine, Table, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radsight.ai.jobs import aware
from radsight.index.compiled import CompiledStatement, compiled_for
from radsight.index.models import AIFinding, AIJob, AIModel, Instance, Study, WorklistEvent, WorklistStudy
from radsight.worklist import alerts, events
from radsight.worklist.priority import (
    CRITICAL,
    ORDER_PRIORITIES,
    AIPriority,
    FindingFact,
    Rules,
    ai_priority,
    compute,
    order_priority_from_dicom,
    urgency_thresholds,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from radsight.archive import Archive
    from radsight.ingest.events import ParsedInstance, StoredEvent

log = logging.getLogger(__name__)

UNREAD, IN_PROGRESS, READ = "unread", "in_progress", "read"
STATUSES: tuple[str, ...] = (UNREAD, IN_PROGRESS, READ)

# Rules per database engine, registered by ``attach``: ``findings.decide`` only has a session.
_rules: weakref.WeakKeyDictionary[Engine, Rules] = weakref.WeakKeyDictionary()
_listeners: weakref.WeakKeyDictionary[Any, IngestListener] = weakref.WeakKeyDictionary()


class StudyNotInWorklist(LookupError):
    pass


class ClaimConflict(Exception):
    """Another reader holds the study, or it is already read (message says which)."""


class NotClaimHolder(PermissionError):
    pass


class PendingFindings(Exception):
    def __init__(self, pending: list[AIFinding]) -> None:
        self.pending = pending
        names = ", ".join(
            f"{f.id} ({f.label} {f.probability:.2f}, {f.model_name} v{f.model_version})"
            if f.probability is not None
            else f"{f.id} ({f.label}, {f.model_name} v{f.model_version})"
            for f in pending
        )
        super().__init__(f"accept or reject every AI finding before signing; pending: {names}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def rules_for(session: Session, settings: Any = None) -> Rules:
    """The rules ``attach`` registered for the session's database; else from ``settings``, else defaults."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    registered = _rules.get(engine)
    if registered is not None:
        return registered
    return Rules.from_settings(settings) if settings is not None else Rules()


# -- arrival --------------------------------------------------------------------------


class IngestListener:
    """Creates a study's worklist row on its first instance; later instances only mark the
    study touched (``flush_touched`` turns that into one ``study-updated`` event per study)."""

    def __init__(self, archive: Archive, memory: int = 20000) -> None:
        self.archive = archive
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

        Runs in that transaction, on its DBAPI cursor, with statements compiled once
        (:class:`~radsight.ingest.service.CompiledStatement`): before, ``ensure_study`` wrote
        them after the instance's commit, in a transaction (and a log fsync) of their own.
        """
        q = compiled_for(self.archive.db.engine.dialect, _NewStudyStatements)
        uid = parsed.study_instance_uid
        if q.exists.first(cur, {"uid": uid}) is not None:  # a row outlived its study
            return
        order = order_priority_of(parsed.dataset)
        p = compute(order_priority=order, ai=None, arrived_at=now, now=now, rules=rules_for_archive(self.archive))
        q.insert_row.run(cur, {
            "study_instance_uid": uid,
            "order_priority": order,
            "order_priority_source": "dicom" if order else "",
            "priority_level": p.level,
            "priority_score": p.score,
            "priority_reason": p.reason,
            "arrived_at": now,
            "updated_at": now,
        })
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


def attach(archive: Archive) -> IngestListener:
    """Keep the worklist of ``archive`` up to date in this process (idempotent).

    Registers the priority rules, subscribes to ingest and adds rows for studies stored while
    no listener ran (``radsight import``, an older version).
    """
    _rules[archive.db.engine] = Rules.from_settings(archive.settings)
    listener = _listeners.get(archive.ingest)
    if listener is None:
        listener = IngestListener(archive)
        archive.ingest.on_new_study(listener.new_study_rows)
        archive.ingest.subscribe(listener)
        _listeners[archive.ingest] = listener
        backfill(archive)
    return listener


def listener_for(archive: Archive) -> IngestListener | None:
    return _listeners.get(archive.ingest)


def backfill(archive: Archive) -> int:
    """Rows for studies that have none (arrival = when the study was first indexed)."""
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
                [
                    {
                        "study_instance_uid": uid,
                        "order_priority": None,
                        "order_priority_source": "",
                        "ai_reason": "",
                        "ai_model": "",
                        "ai_model_version": "",
                        "ai_label": "",
                        "priority_level": 0,
                        "priority_score": 0.0,
                        "priority_reason": "Routine",
                        "status": UNREAD,
                        "arrived_at": created or now,
                        "updated_at": now,
                    }
                    for uid, created in rows
                ],
            )
    if rows:
        rules = Rules.from_settings(archive.settings)
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
    *,
    arrived_at: datetime | None = None,
    sop_instance_uid: str = "",
    dataset: Dataset | None = None,
) -> bool:
    """Insert the study's row (with a ``study-added`` event) unless it exists; True if inserted.

    The order priority comes from ``dataset`` (the header ingest parsed) when given, else from
    the stored instance ``sop_instance_uid``.
    """
    # Core, not the ORM: this runs on the ingest path for every new study (each STOW-RS or
    # C-STORE that starts one); the ORM's session and flush cost more than the two INSERTs.
    wl = cast(Table, WorklistStudy.__table__)
    with archive.db.engine.connect() as c:
        if c.execute(select(wl.c.id).where(wl.c.study_instance_uid == study_instance_uid)).first() is not None:
            return False
    if dataset is not None:
        order = order_priority_of(dataset)
    else:
        order = _dicom_order_priority(archive, sop_instance_uid) if sop_instance_uid else None
    rules = rules_for_archive(archive)
    now = utcnow()
    arrived = arrived_at or now
    p = compute(order_priority=order, ai=None, arrived_at=arrived, now=now, rules=rules)
    try:
        with archive.db.engine.begin() as c:
            c.execute(insert(wl), {
                "study_instance_uid": study_instance_uid,
                "order_priority": order,
                "order_priority_source": "dicom" if order else "",
                "priority_level": p.level,
                "priority_score": p.score,
                "priority_reason": p.reason,
                "status": UNREAD,
                "arrived_at": arrived,
                "updated_at": now,
            })
            events.append_row(c, events.STUDY_ADDED, study_instance_uid)
    except IntegrityError:  # another thread or process inserted it first
        return False
    return True


class _NewStudyStatements:
    def __init__(self, dialect: Dialect) -> None:
        wl, ev = (cast(Table, m.__table__) for m in (WorklistStudy, WorklistEvent))
        self.exists = CompiledStatement(select(wl.c.id).where(wl.c.study_instance_uid == bindparam("uid")), dialect)
        self.insert_row = CompiledStatement.insert(wl, dialect)
        self.insert_event = CompiledStatement.insert(ev, dialect)


def rules_for_archive(archive: Archive) -> Rules:
    return _rules.get(archive.db.engine) or Rules.from_settings(archive.settings)


def get_row(session: Session, study_instance_uid: str) -> WorklistStudy:
    row = session.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == study_instance_uid))
    if row is None:
        raise StudyNotInWorklist(f"study {study_instance_uid} is not in the worklist")
    return row


def _row_or_create(session: Session, study_instance_uid: str, rules: Rules) -> WorklistStudy:
    row = session.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == study_instance_uid))
    if row is not None:
        return row
    created = session.scalar(select(Study.created_at).where(Study.study_instance_uid == study_instance_uid))
    now = utcnow()
    row = WorklistStudy(
        study_instance_uid=study_instance_uid,
        priority_level=0,
        priority_score=0.0,
        priority_reason="Routine",
        status=UNREAD,
        arrived_at=created or now,
        updated_at=now,
    )
    session.add(row)
    events.append(session, events.STUDY_ADDED, study_instance_uid)
    session.flush()
    return row


# -- priority ---------------------------------------------------------------------------


def reprioritise(row: WorklistStudy, rules: Rules, ai: AIPriority | None = None, now: datetime | None = None) -> bool:
    """Recompute the row's level/score/reason from its stored inputs; True if the level or reason changed."""
    now = now or utcnow()
    if ai is None and row.ai_level is not None:
        ai = AIPriority(row.ai_level, row.ai_model, row.ai_model_version, row.ai_label, row.ai_score or 0.0, 0)
    p = compute(
        order_priority=row.order_priority,
        ai=ai,
        arrived_at=aware(row.arrived_at) or now,
        now=now,
        rules=rules,
        aging=row.status != READ,
    )
    changed = (p.level, p.reason) != (row.priority_level, row.priority_reason)
    row.priority_level, row.priority_score, row.priority_reason = p.level, p.score, p.reason
    row.updated_at = now
    return changed


def study_ai_priority(session: Session, study_instance_uid: str) -> AIPriority | None:
    """The AI level of the study from its findings (newest job per model) and the packages' thresholds."""
    rows = session.scalars(
        select(AIFinding).where(AIFinding.study_instance_uid == study_instance_uid).order_by(AIFinding.id)
    ).all()
    if not rows:
        return None
    models = {r.model_name for r in rows}
    thresholds: dict[tuple[str, str], dict[str, float]] = {}
    for name, meta in session.execute(
        select(AIModel.name, AIModel.metadata_json).where(AIModel.name.in_(models))
    ).all():
        for label, levels in urgency_thresholds(meta).items():
            thresholds[(name, label)] = levels
    facts = [FindingFact(r.id, r.model_name, r.model_version, r.label, r.probability, r.status) for r in rows]
    return ai_priority(facts, thresholds)


def refresh_ai(session: Session, row: WorklistStudy, rules: Rules) -> AIPriority | None:
    """Store the study's AI level from its findings and recompute the priority (no commit)."""
    ai = study_ai_priority(session, row.study_instance_uid)
    row.ai_level = None if ai is None else ai.level
    row.ai_score = None if ai is None else ai.probability
    row.ai_reason = "" if ai is None else ai.reason[:255]
    row.ai_model = "" if ai is None else ai.model
    row.ai_model_version = "" if ai is None else ai.model_version
    row.ai_label = "" if ai is None else ai.label[:64]
    reprioritise(row, rules, ai)
    return ai


def on_job_recorded(settings: Any, session: Session, job: AIJob) -> None:
    """After a job's findings are recorded, in the same transaction: new priority, ``ai-result``
    event, and an alert if a finding is critical. Does not commit."""
    rules = rules_for(session, settings)
    row = _row_or_create(session, job.study_instance_uid, rules)
    ai = refresh_ai(session, row, rules)
    now = utcnow()
    if row.ai_result_at is None:
        row.ai_result_at = now
    events.append(
        session,
        events.AI_RESULT,
        row.study_instance_uid,
        {"job_id": job.id, "model": job.model_name, "model_version": job.model_version},
    )
    if ai is not None and ai.level == CRITICAL:
        alerts.raise_alert(session, row, ai)


def on_finding_decided(session: Session, study_instance_uid: str) -> None:
    """A reader accepted or rejected a finding: the AI level may change. Commits."""
    row = session.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == study_instance_uid))
    if row is None:
        return
    before = (row.priority_level, row.priority_reason)
    refresh_ai(session, row, rules_for(session))
    if (row.priority_level, row.priority_reason) != before:
        events.append(session, events.STUDY_UPDATED, study_instance_uid, {"reason": "finding-decision"})
    session.commit()


def set_order_priority(archive: Archive, study_instance_uid: str, order_priority: str | None) -> None:
    if order_priority is not None and order_priority not in ORDER_PRIORITIES:
        raise ValueError(f"order_priority must be one of {', '.join(ORDER_PRIORITIES)} or null")
    rules = rules_for_archive(archive)
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        row.order_priority = order_priority
        row.order_priority_source = "user" if order_priority else ""
        reprioritise(row, rules)
        events.append(s, events.STUDY_UPDATED, study_instance_uid, {"reason": "order-priority"})
        s.commit()


# -- reading: claim, heartbeat, release, sign -------------------------------------------


def _free_for(user: str, now: datetime) -> Any:
    return or_(
        WorklistStudy.claimed_by.is_(None),
        WorklistStudy.claimed_by == user,
        WorklistStudy.claim_expires_at < now,
    )


def _conflict(row: WorklistStudy) -> ClaimConflict:
    if row.status == READ:
        return ClaimConflict(f"read by {row.signed_by} at {_iso(row.signed_at)}")
    return ClaimConflict(f"claimed by {row.claimed_by} since {_iso(row.claimed_at)}")


def _iso(value: datetime | None) -> str:
    v = aware(value)
    return v.isoformat() if v else ""


def _take(s: Session, study_instance_uid: str, user: str, now: datetime, **values: Any) -> None:
    """Conditional UPDATE of an unread study free for ``user`` (the race's one winner), noting when
    it was first opened; ``ClaimConflict`` naming the holder (or the signer) otherwise."""
    result = s.execute(
        update(WorklistStudy)
        .execution_options(synchronize_session=False)
        .where(
            WorklistStudy.study_instance_uid == study_instance_uid,
            WorklistStudy.status != READ,
            _free_for(user, now),
        )
        .values(updated_at=now, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        s.rollback()
        s.expire_all()
        raise _conflict(get_row(s, study_instance_uid))
    s.execute(
        update(WorklistStudy)
        .execution_options(synchronize_session=False)
        .where(WorklistStudy.study_instance_uid == study_instance_uid, WorklistStudy.first_opened_at.is_(None))
        .values(first_opened_at=now)
    )


def claim(archive: Archive, study_instance_uid: str, user: str) -> None:
    """Take (or renew) the study for ``user``; ``ClaimConflict`` if another reader holds it or it is read."""
    now = utcnow()
    expires = now + timedelta(minutes=archive.settings.claim_timeout_minutes)
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        held_before = (
            row.status == IN_PROGRESS and row.claimed_by == user and (aware(row.claim_expires_at) or now) > now
        )
        claimed_at = row.claimed_at if held_before else now
        _take(
            s,
            study_instance_uid,
            user,
            now,
            status=IN_PROGRESS,
            claimed_by=user,
            claimed_at=claimed_at,
            claim_expires_at=expires,
        )
        if not held_before:
            events.append(s, events.STATUS_CHANGED, study_instance_uid, {"status": IN_PROGRESS})
        s.commit()


def heartbeat(archive: Archive, study_instance_uid: str, user: str) -> None:
    """Extend ``user``'s claim; ``ClaimConflict`` if it lapsed and another reader took the study."""
    claim(archive, study_instance_uid, user)


def release(archive: Archive, study_instance_uid: str, user: str, *, admin: bool = False) -> None:
    """Give the study back (unread). Only its holder, or an admin, may release a live claim."""
    now = utcnow()
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        if row.status != IN_PROGRESS:
            return
        live = (aware(row.claim_expires_at) or now) > now
        if live and row.claimed_by != user and not admin:
            raise NotClaimHolder(
                f"claimed by {row.claimed_by} since {_iso(row.claimed_at)}; only they or an admin may release it"
            )
        s.execute(
            update(WorklistStudy)
            .execution_options(synchronize_session=False)
            .where(WorklistStudy.id == row.id, WorklistStudy.status == IN_PROGRESS)
            .values(status=UNREAD, claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now)
        )
        events.append(s, events.STATUS_CHANGED, study_instance_uid, {"status": UNREAD})
        s.commit()


@dataclass(frozen=True, slots=True)
class DecisionInput:
    finding_id: int
    status: str


def sign(archive: Archive, study_instance_uid: str, user: str, decisions: Sequence[DecisionInput] = ()) -> None:
    """Store the decisions, then sign the study off (read). ``PendingFindings`` if an AI finding
    of the study is still pending; ``ClaimConflict`` if another reader holds it or it is read."""
    from radsight.ai import findings

    now = utcnow()
    with archive.db.session() as s:
        row = get_row(s, study_instance_uid)
        if row.status == READ or (
            row.status == IN_PROGRESS and row.claimed_by != user and (aware(row.claim_expires_at) or now) > now
        ):
            raise _conflict(row)
        ids = {d.finding_id for d in decisions}
        if ids:
            own = set(
                s.scalars(
                    select(AIFinding.id).where(
                        AIFinding.id.in_(ids), AIFinding.study_instance_uid == study_instance_uid
                    )
                )
            )
            foreign = sorted(ids - own)
            if foreign:
                raise findings.FindingNotFound(f"finding(s) {foreign} are not findings of this study")
        for d in decisions:
            findings.decide(s, d.finding_id, d.status, user)  # type: ignore[arg-type]
        pending = list(
            s.scalars(
                select(AIFinding)
                .where(AIFinding.study_instance_uid == study_instance_uid, AIFinding.status == "pending")
                .order_by(AIFinding.id)
            )
        )
        if pending:
            raise PendingFindings(pending)
        _take(
            s,
            study_instance_uid,
            user,
            now,
            status=READ,
            signed_by=user,
            signed_at=now,
            claimed_by=None,
            claim_expires_at=None,
        )
        events.append(s, events.STATUS_CHANGED, study_instance_uid, {"status": READ})
        s.commit()


# -- time-driven changes ------------------------------------------------------------------


def sweep(archive: Archive, now: datetime | None = None) -> dict[str, int]:
    """Release lapsed claims and apply the aging rules; one event per changed study. Commits."""
    now = now or utcnow()
    rules = rules_for_archive(archive)
    expired = aged = 0
    with archive.db.session() as s:
        lapsed = s.scalars(
            select(WorklistStudy.study_instance_uid).where(
                WorklistStudy.status == IN_PROGRESS, WorklistStudy.claim_expires_at < now
            )
        ).all()
        for uid in lapsed:
            n = s.execute(
                update(WorklistStudy)
                .execution_options(synchronize_session=False)
                .where(
                    WorklistStudy.study_instance_uid == uid,
                    WorklistStudy.status == IN_PROGRESS,
                    WorklistStudy.claim_expires_at < now,
                )
                .values(status=UNREAD, claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if n:
                expired += 1
                events.append(s, events.STATUS_CHANGED, uid, {"status": UNREAD, "reason": "claim-expired"})
        for step in rules.aging:
            due = s.scalars(
                select(WorklistStudy).where(
                    WorklistStudy.status != READ,
                    WorklistStudy.priority_level == step.from_level,
                    WorklistStudy.arrived_at < now - timedelta(minutes=step.after_minutes),
                )
            ).all()
            for row in due:
                if reprioritise(row, rules, now=now):
                    aged += 1
                    events.append(s, events.STUDY_UPDATED, row.study_instance_uid, {"reason": "aging"})
        s.commit()
    return {"claims_expired": expired, "aged": aged}


def effective_status(row: WorklistStudy, now: datetime) -> tuple[str, str | None, datetime | None]:
    """(status, claimed_by, claimed_at) with a lapsed claim shown as unread before the sweep runs."""
    if row.status == IN_PROGRESS and (aware(row.claim_expires_at) or now) <= now:
        return UNREAD, None, None
    return row.status, row.claimed_by, aware(row.claimed_at)


def lapsed_claim_filter(now: datetime) -> Any:
    return and_(WorklistStudy.status == IN_PROGRESS, WorklistStudy.claim_expires_at <= now)
