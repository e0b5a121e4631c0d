"""The index rows of each received instance, written on one writer connection.

The rows (Patient, Study, Series, Instance, and whatever the ``on_new_study`` hooks add) are
written with statements compiled once per dialect (:mod:`radsight.index.compiled`) on the
DBAPI cursor of one pooled connection the writer keeps. Only the group commit's leader calls
:meth:`IndexWriter.commit_batch`, so the index transactions run one at a time on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from pydicom.dataset import Dataset
from sqlalchemy import Dialect, Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ClauseElement

from radsight.index.compiled import CompiledStatement, compiled_for
from radsight.index.db import Database
from radsight.index.models import Instance, Patient, Series, Study
from radsight.ingest import values
from radsight.ingest.events import NewStudyHook, ParsedInstance
from radsight.ingest.group_commit import Pending

__all__ = ["DUPLICATE", "IndexWriter", "PendingInstance"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_text = values.text
_int = values.integer

# What :meth:`IndexWriter.index_rows` returns for an instance indexed already (and kept).
DUPLICATE = object()


@dataclass(slots=True, eq=False, kw_only=True)
class PendingInstance(Pending):
    """An instance stored under ``key`` and waiting for its index rows to commit."""

    parsed: ParsedInstance
    key: str
    source: str
    calling_ae: str
    overwrite: bool


class _ConnectionLost(Exception):
    """The writer connection could not roll back a failed transaction (its cause: the error)."""


class IndexWriter:
    """Writes the index rows of received instances on its one writer connection."""

    def __init__(self, db: Database, new_study_hooks: list[NewStudyHook]) -> None:
        self.db = db
        # Shared with the service, which adds to it (IngestService.on_new_study).
        self.new_study_hooks = new_study_hooks
        dialect = db.engine.dialect
        self._sql = compiled_for(dialect, _Statements)
        # The writes run on the DBAPI cursor: its IntegrityError is the driver's own, next to
        # SQLAlchemy's (raised by the ORM paths that share a database).
        self.integrity_errors: tuple[type[BaseException], ...] = (IntegrityError, dialect.loaded_dbapi.IntegrityError)
        # The driver's errors that may mean the connection itself is unusable.
        self._connection_errors: tuple[type[BaseException], ...] = (
            dialect.loaded_dbapi.OperationalError, dialect.loaded_dbapi.InterfaceError,
        )
        self._writer: Any = None  # see transaction
        self._writer_lock = threading.Lock()

    def existing_key(self, sop_uid: str) -> str | None:
        """The storage key of the instance indexed under ``sop_uid``, if any (read on a pooled
        connection of its own, not the writer's)."""
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

    def commit_batch(self, batch: list[PendingInstance]) -> None:
        """Index ``batch`` in one transaction; on any failure, each instance in its own (no one
        instance's problem may fail the others). Each item gets its ``result`` (what
        :meth:`index_rows` returned) or its ``error``."""
        if len(batch) > 1:
            try:
                results = self.transaction(lambda cur: [
                    self.index_rows(cur, b.parsed, b.key, source=b.source, calling_ae=b.calling_ae,
                                    overwrite=b.overwrite) for b in batch])
            except Exception:
                log.debug("group commit of %d instances failed; committing them one by one", len(batch))
            else:
                for b, r in zip(batch, results, strict=True):
                    b.result = r
                return
        for b in batch:
            def one(cur: Any, b: PendingInstance = b) -> object:
                return self.index_rows(cur, b.parsed, b.key, source=b.source, calling_ae=b.calling_ae,
                                       overwrite=b.overwrite)
            try:
                b.result = self.transaction(one)
            except BaseException as exc:
                b.error = exc

    def transaction(self, work: Callable[[Any], _T]) -> _T:
        """Run ``work(cursor)`` in one transaction on the writer connection and commit it.

        Only the group commit's leader runs index transactions, one at a time, so they share one
        pooled DBAPI connection, checked out at the first and kept (:meth:`close` returns it),
        with no pool check-out and check-in (and its rollback) per batch. A connection that
        fails is invalidated; if it could not even roll back (closed, server gone), the
        transaction runs once more on a new one (nothing of it was committed).
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
        """One try of :meth:`transaction` (the writer lock held); _ConnectionLost, caused by
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

    # -- the rows of one instance ------------------------------------------------
    def index_rows(
        self, cur: Any, p: ParsedInstance, key: str, *, source: str, calling_ae: str, overwrite: bool
    ) -> object:
        """Write the index rows of ``p``, stored under ``key``, on ``cur``; returns the storage
        key of the instance it replaced, :data:`DUPLICATE`, or None.

        Runs once per received instance. A new series (and study) is inserted with its
        counters already set, so the common cases need few statements: 7 for an instance that
        starts a study, 5 for the next ones of a series.
        """
        q = self._sql
        now = datetime.now(UTC)
        existing = q.sel_instance.first(cur, {"uid": p.sop_instance_uid})
        if existing is not None and not overwrite:
            return DUPLICATE
        # An instance replaced in place (overwrite policy) keeps its series: rows it creates
        # are not counted.
        counted = existing is None
        modality = _text(p.dataset, "Modality", 16)

        series = q.sel_series.first(cur, {"uid": p.series_instance_uid})
        new_series = series is None
        study = q.sel_study.first(cur, {"uid": p.study_instance_uid})
        if study is None:
            first_series = new_series and counted
            study_pk = self._insert_study(
                cur, p, now, modalities=modality if first_series else "", series=int(first_series),
                instances=int(counted),
            )
            study_modalities, study_counted = "", True
        else:
            (study_pk, study_modalities), study_counted = study, False
        if series is None:
            series_pk = self._insert_series(cur, p, study_pk, modality, now, instances=int(counted))
        else:
            series_pk = series[0]

        fields = _instance_fields(p, key, source, calling_ae, now)
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

    def _insert_study(
        self, cur: Any, p: ParsedInstance, now: datetime, *, modalities: str, series: int, instances: int
    ) -> int:
        """Insert the study ``p`` starts (its patient too, if new) with its counters set, run
        the ``on_new_study`` hooks on ``cur``; the study's key."""
        ds = p.dataset
        patient = {
            "patient_id": _text(ds, "PatientID", 64),
            "patient_name": _text(ds, "PatientName", 324),
            "patient_birth_date": _text(ds, "PatientBirthDate", 8),
            "patient_sex": _text(ds, "PatientSex", 16),
        }
        study_pk: int = self._sql.ins_study.first(cur, {
            "patient_pk": self._patient_pk(cur, ds, patient),
            "study_instance_uid": p.study_instance_uid,
            "study_date": _text(ds, "StudyDate", 8),
            "study_time": _text(ds, "StudyTime", 16),
            "accession_number": _text(ds, "AccessionNumber", 16),
            "study_id": _text(ds, "StudyID", 16),
            "study_description": _text(ds, "StudyDescription", 64),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
            **patient,
            "specific_character_set": _text(ds, "SpecificCharacterSet", 128),
            "modalities_in_study": modalities,
            "number_of_series": series,
            "number_of_instances": instances,
            "created_at": now,
            "updated_at": now,
        })[0]
        for hook in self.new_study_hooks:
            hook(cur, p, now)
        return study_pk

    def _patient_pk(self, cur: Any, ds: Dataset, patient: dict[str, str]) -> int:
        """The key of the patient of ``ds`` (``patient``: its ID, name, birth date and sex),
        inserted if new; a known patient's name, birth date and sex are updated when ``ds``
        gives other, non-empty ones."""
        q = self._sql
        patient_id, name = patient["patient_id"], patient["patient_name"]
        birth, sex = patient["patient_birth_date"], patient["patient_sex"]
        issuer = _text(ds, "IssuerOfPatientID", 64)
        row = q.sel_patient.first(cur, {"pid": patient_id, "issuer": issuer})
        if row is None:
            return int(q.ins_patient.first(cur, {**patient, "issuer_of_patient_id": issuer})[0])
        patient_pk, old_name, old_birth, old_sex = row
        if (name and name != old_name) or (birth and birth != old_birth) or (sex and sex != old_sex):
            q.upd_patient.run(cur, {
                "pk": patient_pk, "name": name or old_name, "birth": birth or old_birth, "sex": sex or old_sex,
            })
        return int(patient_pk)

    def _insert_series(
        self, cur: Any, p: ParsedInstance, study_pk: int, modality: str, now: datetime, *, instances: int
    ) -> int:
        """Insert the series ``p`` starts, with its counter set; the series' key."""
        ds = p.dataset
        series_pk: int = self._sql.ins_series.first(cur, {
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
            "number_of_instances": instances,
            "created_at": now,
            "updated_at": now,
        })[0]
        return series_pk


def _instance_fields(p: ParsedInstance, key: str, source: str, calling_ae: str, now: datetime) -> dict[str, Any]:
    """The instance row's values but its series and SOP Instance UID (inserted or updated alike)."""
    ds = p.dataset
    return {
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
