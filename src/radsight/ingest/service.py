"""The one ingest service every entry point uses (DIMSE C-STORE, STOW-RS, import).

Order of work for one instance: parse and check -> duplicate check -> store the bytes
as received (durable: fsync + rename) -> index rows committed -> acknowledge.
A crash before the commit leaves at most a complete, unindexed file (reported by
``radsight check``, and replaced when the sender re-sends); it never leaves an index
row without its file, and never a partly written file under a storage key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from sqlalchemy import Dialect, Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from radsight.config import DuplicatePolicy, Settings
from radsight.index.db import Database
from radsight.index.models import Instance, Patient, Series, Study
from radsight.ingest import values
from radsight.ingest.errors import IngestError, Reason
from radsight.ingest.parse import PREAMBLE_LENGTH, ParsedInstance, parse_bytes, parse_file
from radsight.storage.base import Storage, StorageError

log = logging.getLogger(__name__)


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


_text = values.text
_int = values.integer


Listener = Callable[[StoredEvent], Any]
# (DBAPI cursor in the index transaction, the instance that starts the study, its time)
NewStudyHook = Callable[[Any, ParsedInstance, datetime], None]


class IngestService:
    def __init__(self, db: Database, storage: Storage, settings: Settings) -> None:
        self.db = db
        self.storage = storage
        self.settings = settings
        self._listeners: list[Listener] = []
        self._new_study_hooks: list[NewStudyHook] = []
        self._commits = _GroupCommit(self._commit_batch)
        dialect = db.engine.dialect
        self._sql = compiled_for(dialect, _Statements)
        # The index writes run on the DBAPI cursor (see CompiledStatement): its IntegrityError is the
        # driver's own, next to SQLAlchemy's (raised by the ORM paths that share a database).
        self._integrity_errors: tuple[type[BaseException], ...] = (IntegrityError, dialect.loaded_dbapi.IntegrityError)
        # The driver's errors that may mean the connection itself is unusable.
        self._connection_errors: tuple[type[BaseException], ...] = (
            dialect.loaded_dbapi.OperationalError, dialect.loaded_dbapi.InterfaceError,
        )
        self._writer: Any = None  # see _transaction
        self._writer_lock = threading.Lock()

    # -- notifications ---------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` after each stored instance; its errors are logged, never raised."""
        self._listeners.append(listener)

    def on_new_study(self, hook: NewStudyHook) -> None:
        """Call ``hook(cursor, parsed, now)`` inside the index transaction that creates a study,
        so that rows it writes on the cursor (the worklist's) commit or roll back with the
        study's. It runs on the ingest path: keep it to a few statements
        (:class:`CompiledStatement`); its exceptions fail the instance's transaction."""
        self._new_study_hooks.append(hook)

    def _notify(self, event: StoredEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("ingest listener %r failed", listener)

    # -- entry points ------------------------------------------------------------
    def new_spool_path(self) -> Path:
        """A fresh path in the storage spool (same file system: moving it in is a rename)."""
        return self.storage.spool_dir() / f"in-{uuid.uuid4().hex}.part"

    def ingest_bytes(
        self, data: bytes, *, source: str = "api", calling_ae: str = "", study: str | None = None
    ) -> IngestResult:
        """Ingest one Part 10 file held in memory (a STOW-RS part, an AI result): parsed from
        memory and written once, straight into storage.

        ``study``: the Study Instance UID the sender named (STOW-RS ``POST /studies/{study}``);
        an instance of another study is refused before anything is stored.
        """
        try:
            parsed = parse_bytes(bytes(data))
        except IngestError as exc:
            return IngestResult(Outcome.REFUSED, reason=exc.reason, message=exc.message)
        if parsed.missing_preamble:  # see parse_file: stored with the Part 10 prefix in front
            data = b"\x00" * PREAMBLE_LENGTH + b"DICM" + data
        return self._store_checked(parsed, lambda: self.storage.put_bytes(data), study=study, source=source,
                                   calling_ae=calling_ae)

    def ingest_dataset_bytes(
        self, file_meta: FileMetaDataset, dataset: bytes, *, source: str = "dimse", calling_ae: str = ""
    ) -> IngestResult:
        """Store a data set received without Part 10 framing (C-STORE) exactly as encoded."""
        path = self.new_spool_path()
        try:
            with open(path, "wb") as fh:
                fh.write(b"\x00" * 128 + b"DICM")
                write_file_meta_info(fh, file_meta, enforce_standard=True)  # type: ignore[arg-type]
                fh.write(dataset)
        except OSError as exc:
            path.unlink(missing_ok=True)
            return IngestResult(Outcome.REFUSED, reason=Reason.STORAGE_FAILURE, message=f"cannot spool: {exc}")
        except Exception as exc:  # file meta from the association that cannot be encoded
            path.unlink(missing_ok=True)
            return IngestResult(Outcome.REFUSED, reason=Reason.MALFORMED, message=f"bad file meta: {exc}")
        return self.ingest_file(path, move=True, source=source, calling_ae=calling_ae)

    def ingest_file(
        self, path: Path, *, move: bool = False, source: str = "import", calling_ae: str = "",
        study: str | None = None,
    ) -> IngestResult:
        """Ingest one Part 10 file. With ``move`` the file is consumed (taken over or removed)."""
        framed: Path | None = None
        try:
            try:
                parsed = parse_file(Path(path))
            except IngestError as exc:
                return IngestResult(Outcome.REFUSED, reason=exc.reason, message=exc.message)
            except OSError as exc:
                return IngestResult(Outcome.REFUSED, reason=Reason.STORAGE_FAILURE, message=f"cannot read: {exc}")
            source_path = Path(path)
            if parsed.missing_preamble:
                # See parse_file: the original bytes are kept, with the Part 10 prefix in front.
                framed = self._with_preamble(source_path)
                source_path, move_source = framed, True
            else:
                move_source = move
            return self._store_checked(
                parsed, lambda: self.storage.put_file(source_path, move=move_source), study=study, source=source,
                calling_ae=calling_ae,
            )
        finally:
            if framed is not None and framed.exists():
                framed.unlink()
            if move and os.path.exists(path):
                os.unlink(path)

    def _store_checked(
        self, parsed: ParsedInstance, put: Callable[[], str], *, study: str | None, source: str, calling_ae: str
    ) -> IngestResult:
        if study is not None and parsed.study_instance_uid != study:
            return IngestResult(
                Outcome.REFUSED,
                sop_class_uid=parsed.sop_class_uid,
                sop_instance_uid=parsed.sop_instance_uid,
                study_instance_uid=parsed.study_instance_uid,
                reason=Reason.INVALID_ATTRIBUTE,
                message=f"instance belongs to study {parsed.study_instance_uid}, not to {study} named in the URL",
            )
        try:
            return self._store(parsed, put, source=source, calling_ae=calling_ae)
        except Exception as exc:
            # The index or storage failed in a way we did not foresee: refuse (never
            # acknowledge) rather than let one instance take down an association.
            log.exception("ingest of %s failed", parsed.sop_instance_uid)
            return IngestResult(
                Outcome.REFUSED,
                sop_instance_uid=parsed.sop_instance_uid,
                sop_class_uid=parsed.sop_class_uid,
                reason=Reason.STORAGE_FAILURE,
                message=f"could not store or index the instance: {type(exc).__name__}: {exc}",
            )

    def _with_preamble(self, path: Path) -> Path:
        """A spool copy of ``path`` with a zero preamble and 'DICM' written in front."""
        framed = self.new_spool_path()
        try:
            with open(path, "rb") as src, open(framed, "wb") as dst:
                dst.write(b"\x00" * PREAMBLE_LENGTH + b"DICM")
                shutil.copyfileobj(src, dst, 1024 * 1024)
        except BaseException:
            framed.unlink(missing_ok=True)
            raise
        return framed

    # -- the work -------------------------------------------------------------
    def _existing_key(self, sop_uid: str) -> str | None:
        raw = self.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                row = self._sql.sel_instance.first(cur, {"uid": sop_uid})
            finally:
                cur.close()
        finally:
            raw.close()  # back to the pool, which ends the read transaction
        return None if row is None else str(row[1])

    def _store(self, p: ParsedInstance, put: Callable[[], str], *, source: str, calling_ae: str) -> IngestResult:
        base = IngestResult(
            Outcome.STORED,
            sop_instance_uid=p.sop_instance_uid,
            sop_class_uid=p.sop_class_uid,
            study_instance_uid=p.study_instance_uid,
            series_instance_uid=p.series_instance_uid,
        )
        overwrite = self.settings.duplicate_policy is DuplicatePolicy.OVERWRITE
        old_key = self._existing_key(p.sop_instance_uid)
        if old_key is not None and not overwrite:
            base.outcome = Outcome.DUPLICATE
            base.message = "an instance with this SOP Instance UID is already stored; the first was kept"
            return base
        try:
            key = put()
        except (OSError, StorageError) as exc:
            log.error("storage failed: %s", exc)
            base.outcome, base.reason, base.message = Outcome.REFUSED, Reason.STORAGE_FAILURE, str(exc)
            return base
        for attempt in range(5):
            try:
                replaced = self._index(p, key, source=source, calling_ae=calling_ae, overwrite=overwrite)
                break
            except self._integrity_errors:
                # A concurrent writer created the same patient/study/series/instance: retry,
                # the second pass finds those rows.
                if attempt == 4:
                    self.storage.delete(key)
                    raise
            except BaseException:
                # Not indexed, so never acknowledged: leave no orphan file behind.
                self.storage.delete(key)
                raise
        if replaced is _DUPLICATE:
            self.storage.delete(key)
            base.outcome = Outcome.DUPLICATE
            base.message = "an instance with this SOP Instance UID is already stored; the first was kept"
            return base
        if isinstance(replaced, str):
            self.storage.delete(replaced)
            base.outcome = Outcome.OVERWRITTEN
            base.message = "replaced the instance stored before with the same SOP Instance UID"
        self._notify(StoredEvent(base, modality=_text(p.dataset, "Modality"), dataset=p.dataset))
        return base

    def _index(self, p: ParsedInstance, key: str, *, source: str, calling_ae: str, overwrite: bool) -> object:
        """Commit the index rows; returns the replaced storage key, _DUPLICATE, or None.

        Instances that arrive together (concurrent STOW-RS requests, C-STORE associations,
        import threads) share one transaction: one commit, one fsync of the database log.
        Each caller returns only after the commit that holds its rows.
        """
        return self._commits.submit(_Pending(p, key, source, calling_ae, overwrite))

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Index ``batch`` in one transaction; on any failure, each instance in its own (no one
        instance's problem may fail the others)."""
        if len(batch) > 1:
            try:
                results = self._transaction(lambda cur: [
                    self._index_rows(cur, b.parsed, b.key, source=b.source, calling_ae=b.calling_ae,
                                     overwrite=b.overwrite) for b in batch])
            except Exception:
                log.debug("group commit of %d instances failed; committing them one by one", len(batch))
            else:
                for b, r in zip(batch, results, strict=True):
                    b.result = r
                return
        for b in batch:
            def one(cur: Any, b: _Pending = b) -> object:
                return self._index_rows(cur, b.parsed, b.key, source=b.source, calling_ae=b.calling_ae,
                                        overwrite=b.overwrite)
            try:
                b.result = self._transaction(one)
            except BaseException as exc:
                b.error = exc

    def _transaction(self, work: Callable[[Any], _T]) -> _T:
        """Run ``work(cursor)`` in one transaction on the writer connection and commit it.

        Only the group commit's leader runs index transactions, one at a time, so they share one
        pooled DBAPI connection, checked out at the first and kept (:meth:`close` returns it),
        instead of a check-out and check-in per batch (the pool's lock and its rollback on
        return: ~2% of the GIL samples per STOW-RS instance, though no change in throughput was
        measurable). A connection that fails is invalidated; if it could not even roll back
        (closed, server gone), the transaction runs once more on a new one (nothing of it was
        committed).
        """
        with self._writer_lock:
            try:
                return self._on_writer(work)
            except _ConnectionLost as lost:
                log.warning("index connection lost (%s); retrying on a new one", type(lost.__cause__).__name__)
            try:
                return self._on_writer(work)
            except _ConnectionLost as lost:
                raise cast(BaseException, lost.__cause__) from None

    def _on_writer(self, work: Callable[[Any], _T]) -> _T:
        """One try of :meth:`_transaction` (the writer lock held); _ConnectionLost, caused by
        the error, when the connection could not even roll back."""
        raw = self._writer
        if raw is None:
            raw = self._writer = self.db.engine.raw_connection()
        cur = None
        try:
            cur = raw.cursor()
            result = work(cur)
            raw.commit()
            return result
        except Exception as exc:
            try:
                raw.rollback()
            except Exception:
                self._drop_writer(invalidate=True)
                raise _ConnectionLost from exc
            if isinstance(exc, self._connection_errors):
                self._drop_writer(invalidate=True)
            raise
        except BaseException:
            self._drop_writer(invalidate=True)
            raise
        finally:
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.close()

    def _drop_writer(self, *, invalidate: bool) -> None:
        raw, self._writer = self._writer, None
        if raw is not None:
            with contextlib.suppress(Exception):
                if invalidate:
                    raw.invalidate()
                else:
                    raw.close()

    def close(self) -> None:
        """Return the writer connection to the pool (before the engine is disposed)."""
        with self._writer_lock:
            self._drop_writer(invalidate=False)

    def _index_rows(
        self, cur: Any, p: ParsedInstance, key: str, *, source: str, calling_ae: str, overwrite: bool
    ) -> object:
        # Statements compiled once per dialect and run on the DBAPI cursor (see CompiledStatement): this
        # runs once per received instance. A new series (and study) is inserted with its
        # counters already set, so the common cases need few statements: 7 for an instance
        # that starts a study, 5 for the next ones of a series.
        q = self._sql
        ds = p.dataset
        now = datetime.now(UTC)
        existing = q.sel_instance.first(cur, {"uid": p.sop_instance_uid})
        if existing is not None and not overwrite:
            return _DUPLICATE
        # An instance replaced in place (overwrite policy) keeps its series: rows it creates
        # are not counted, as before.
        counted = existing is None
        modality = _text(ds, "Modality", 16)

        series = q.sel_series.first(cur, {"uid": p.series_instance_uid})
        new_series = series is None
        study = q.sel_study.first(cur, {"uid": p.study_instance_uid})
        if study is None:
            patient_id = _text(ds, "PatientID", 64)
            issuer = _text(ds, "IssuerOfPatientID", 64)
            name = _text(ds, "PatientName", 324)
            birth = _text(ds, "PatientBirthDate", 8)
            sex = _text(ds, "PatientSex", 16)
            patient = q.sel_patient.first(cur, {"pid": patient_id, "issuer": issuer})
            if patient is None:
                patient_pk = q.ins_patient.first(cur, {
                    "patient_id": patient_id, "issuer_of_patient_id": issuer, "patient_name": name,
                    "patient_birth_date": birth, "patient_sex": sex,
                })[0]
            else:
                patient_pk, old_name, old_birth, old_sex = patient
                if (name and name != old_name) or (birth and birth != old_birth) or (sex and sex != old_sex):
                    q.upd_patient.run(cur, {
                        "pk": patient_pk, "name": name or old_name, "birth": birth or old_birth, "sex": sex or old_sex,
                    })
            study_pk = q.ins_study.first(cur, {
                "patient_pk": patient_pk,
                "study_instance_uid": p.study_instance_uid,
                "study_date": _text(ds, "StudyDate", 8),
                "study_time": _text(ds, "StudyTime", 16),
                "accession_number": _text(ds, "AccessionNumber", 16),
                "study_id": _text(ds, "StudyID", 16),
                "study_description": _text(ds, "StudyDescription", 64),
                "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
                "patient_id": patient_id,
                "patient_name": name,
                "patient_birth_date": birth,
                "patient_sex": sex,
                "specific_character_set": _text(ds, "SpecificCharacterSet", 128),
                "modalities_in_study": modality if new_series and counted else "",
                "number_of_series": int(new_series and counted),
                "number_of_instances": int(counted),
                "created_at": now,
                "updated_at": now,
            })[0]
            study_counted = True
            for hook in self._new_study_hooks:
                hook(cur, p, now)
        else:
            study_pk, study_modalities = study
            study_counted = False

        if series is None:
            series_pk = q.ins_series.first(cur, {
                "study_pk": study_pk,
                "series_instance_uid": p.series_instance_uid,
                "modality": modality,
                "series_number": _int(ds, "SeriesNumber"),
                "series_description": _text(ds, "SeriesDescription", 64),
                "series_date": _text(ds, "SeriesDate", 8),
                "series_time": _text(ds, "SeriesTime", 16),
                "body_part_examined": _text(ds, "BodyPartExamined", 16),
                "performed_procedure_step_start_date": _text(ds, "PerformedProcedureStepStartDate", 8),
                "performed_procedure_step_start_time": _text(ds, "PerformedProcedureStepStartTime", 16),
                "number_of_instances": int(counted),
                "created_at": now,
                "updated_at": now,
            })[0]
        else:
            series_pk = series[0]

        fields: dict[str, Any] = {
            "sop_class_uid": p.sop_class_uid,
            "instance_number": _int(ds, "InstanceNumber"),
            "transfer_syntax_uid": p.transfer_syntax_uid,
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "bits_allocated": _int(ds, "BitsAllocated"),
            "number_of_frames": _int(ds, "NumberOfFrames"),
            "storage_key": key,
            "file_size": p.file_size,
            "pixel_data_offset": p.pixel_data_offset,
            "metadata_json": None,
            "received_via": source,
            "calling_ae_title": calling_ae[:16],
            "created_at": now,
        }
        if existing is not None:
            q.upd_instance.run(cur, {"pk": existing[0], **{f"v_{k}": v for k, v in fields.items()}})
            q.touch_study.run(cur, {"pk": study_pk, "now": now})
            return existing[1]
        q.ins_instance.run(cur, {"series_pk": series_pk, "sop_instance_uid": p.sop_instance_uid, **fields})
        if not new_series:
            q.count_series.run(cur, {"pk": series_pk, "now": now})
        if study_counted:
            return None
        if new_series:
            modalities = [m for m in study_modalities.split("\\") if m]
            if modality and modality not in modalities:
                modalities.append(modality)
            mods = "\\".join(sorted(modalities))[:128]
            q.count_study_new_series.run(cur, {"pk": study_pk, "now": now, "mods": mods})
        else:
            q.count_study.run(cur, {"pk": study_pk, "now": now})
        return None


class CompiledStatement:
    """One statement compiled by SQLAlchemy for one dialect, executed on the DBAPI cursor.

    The ingest path runs 5-7 index statements per received instance (and the worklist's
    two rows for a new study, see :meth:`IngestService.on_new_study`). Executing them through
    SQLAlchemy's ``Connection.execute`` cost ~50 us of Python each (execution context, result
    object, events) on top of the driver's own ~10 us, and ``engine.begin()`` as much again
    per transaction; SQLAlchemy still writes the SQL (one string per dialect, made here
    once) and converts the values with each column type's bind processor, so the rows are
    exactly what its own execution would write and read back. Only the statements of the
    ingest transaction are run so: every other path uses SQLAlchemy (ORM or Core) as usual.
    SQLAlchemy's Python-side column defaults are not applied at execution: :meth:`insert`
    takes them (scalar ones) as the values of columns a row leaves out.
    """

    __slots__ = ("_fixed", "_names", "_positional", "_processors", "text")

    def __init__(self, statement: ClauseElement, dialect: Dialect, defaults: dict[str, Any] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.text = compiled.string
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self._positional else list(compiled.binds)
        binds = compiled.binds
        self._names = names
        self._processors = [binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
        # Values written into the statement itself (the 1 of "n + 1"), not given per execution,
        # and values a row may leave out.
        self._fixed = {**(defaults or {}), **{n: binds[n].value for n in names if not binds[n].required}}

    @classmethod
    def insert(cls, table: Table, dialect: Dialect, *, returning: bool = False) -> CompiledStatement:
        """INSERT of one row naming every column but the key; a row may leave out the columns
        with a scalar default (its value) and the nullable ones (NULL). ``returning``: RETURNING
        the new key (SQLite >= 3.35, PostgreSQL), so both drivers give it the same way."""
        columns = [c for c in table.c if c.name != "id"]
        defaults: dict[str, Any] = {}
        for c in columns:
            if c.default is not None and c.default.is_scalar:
                defaults[c.name] = cast(ScalarElementColumnDefault, c.default).arg
            elif c.nullable:
                defaults[c.name] = None
        statement = table.insert().values({c.name: bindparam(c.name) for c in columns})
        return cls(statement.returning(table.c.id) if returning else statement, dialect, defaults)

    def _params(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if self._fixed:
            values = {**self._fixed, **values}
        converted = [
            proc(values[n]) if proc is not None else values[n]
            for n, proc in zip(self._names, self._processors, strict=True)
        ]
        return tuple(converted) if self._positional else dict(zip(self._names, converted, strict=True))

    def run(self, cur: Any, values: dict[str, Any]) -> None:
        cur.execute(self.text, self._params(values))

    def first(self, cur: Any, values: dict[str, Any]) -> Any:
        cur.execute(self.text, self._params(values))
        # fetchall, not fetchone: SQLite keeps an INSERT ... RETURNING running (and refuses
        # to commit) until its rows are read to the end.
        rows = cur.fetchall()
        return rows[0] if rows else None


class _Statements:
    """The ingest's SQL for one dialect, compiled once; each execution only binds values."""

    def __init__(self, dialect: Dialect) -> None:
        pt, st, se, it = (cast(Table, m.__table__) for m in (Patient, Study, Series, Instance))

        def sql(statement: ClauseElement) -> CompiledStatement:
            return CompiledStatement(statement, dialect)

        def insert(table: Table, *, returning: bool = True) -> CompiledStatement:
            return CompiledStatement.insert(table, dialect, returning=returning)

        self.sel_instance = sql(select(it.c.id, it.c.storage_key).where(it.c.sop_instance_uid == bindparam("uid")))
        self.sel_study = sql(
            select(st.c.id, st.c.modalities_in_study).where(st.c.study_instance_uid == bindparam("uid"))
        )
        self.sel_series = sql(select(se.c.id).where(se.c.series_instance_uid == bindparam("uid")))
        self.sel_patient = sql(
            select(pt.c.id, pt.c.patient_name, pt.c.patient_birth_date, pt.c.patient_sex).where(
                pt.c.patient_id == bindparam("pid"), pt.c.issuer_of_patient_id == bindparam("issuer")
            )
        )
        self.ins_patient = insert(pt)
        self.ins_study = insert(st)
        self.ins_series = insert(se)
        self.ins_instance = insert(it, returning=False)
        self.upd_patient = sql(
            pt.update()
            .where(pt.c.id == bindparam("pk"))
            .values(patient_name=bindparam("name"), patient_birth_date=bindparam("birth"),
                    patient_sex=bindparam("sex"))
        )
        instance_columns = [c.name for c in it.c if c.name not in ("id", "series_pk", "sop_instance_uid")]
        self.upd_instance = sql(
            it.update().where(it.c.id == bindparam("pk")).values({n: bindparam(f"v_{n}") for n in instance_columns})
        )
        self.touch_study = sql(st.update().where(st.c.id == bindparam("pk")).values(updated_at=bindparam("now")))
        self.count_series = sql(
            se.update()
            .where(se.c.id == bindparam("pk"))
            .values(number_of_instances=se.c.number_of_instances + 1, updated_at=bindparam("now"))
        )
        self.count_study = sql(
            st.update()
            .where(st.c.id == bindparam("pk"))
            .values(number_of_instances=st.c.number_of_instances + 1, updated_at=bindparam("now"))
        )
        self.count_study_new_series = sql(
            st.update()
            .where(st.c.id == bindparam("pk"))
            .values(
                number_of_instances=st.c.number_of_instances + 1,
                number_of_series=st.c.number_of_series + 1,
                modalities_in_study=bindparam("mods"),
                updated_at=bindparam("now"),
            )
        )


_S = TypeVar("_S")
_BY_DIALECT: dict[tuple[Callable[[Dialect], Any], str], Any] = {}
_BY_DIALECT_LOCK = threading.Lock()


def compiled_for(dialect: Dialect, factory: Callable[[Dialect], _S]) -> _S:
    """``factory(dialect)`` (a set of CompiledStatements), made once per dialect and driver."""
    key = (factory, f"{dialect.name}+{dialect.driver}:{dialect.paramstyle}")
    with _BY_DIALECT_LOCK:
        found = _BY_DIALECT.get(key)
        if found is None:
            found = _BY_DIALECT[key] = factory(dialect)
    return cast(_S, found)


_T = TypeVar("_T")
_DUPLICATE = object()


class _ConnectionLost(Exception):
    """The writer connection could not roll back a failed transaction (its cause: the error)."""


@dataclass(slots=True)
class _Pending:
    parsed: ParsedInstance
    key: str
    source: str
    calling_ae: str
    overwrite: bool
    result: object = None
    error: BaseException | None = None
    # Held from queueing until the caller may go on (committed, or handed the lead); released
    # by the leader. Only a caller that waits gets one (a plain lock: cheaper than an Event).
    done: Any = None
    lead: bool = False


class _GroupCommit:
    """Group commit without a thread of its own: the first caller to find no commit in
    progress leads; it takes everything queued meanwhile (up to ``max_batch``) and commits it
    as one batch. Then, if more arrived, it hands the lead to the oldest waiting caller and
    returns; the others wake when the batch holding their instance is committed.

    Written here because neither SQLAlchemy nor the database drivers batch commits from
    several threads; PostgreSQL's ``commit_delay`` groups only the WAL flushes of separate
    transactions and SQLite has nothing like it.
    """

    def __init__(self, commit: Callable[[list[_Pending]], None], max_batch: int = 64) -> None:
        self._commit = commit
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False

    def submit(self, item: _Pending) -> object:
        with self._lock:
            self._queue.append(item)
            lead = not self._leading
            self._leading = True
            if not lead:
                item.done = threading.Lock()
                item.done.acquire()
        if not lead:
            item.done.acquire()
            if item.lead:  # handed the lead: our own instance is still queued
                self._drain(item)
        else:
            self._drain(item)
        if item.error is not None:
            raise item.error
        return item.result

    def _drain(self, own: _Pending) -> None:
        """Commit batches until ``own`` is committed, then pass the lead on (or give it up)."""
        while True:
            with self._lock:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            try:
                self._commit(batch)
            except BaseException as exc:  # _commit records per-item errors; this is a last resort
                for b in batch:
                    if b.error is None and b.result is None:
                        b.error = exc
            for b in batch:
                if b is not own:
                    b.done.release()
            if own in batch:
                break
        with self._lock:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.done.release()
            else:
                self._leading = False
