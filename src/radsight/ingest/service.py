"""The one ingest service every entry point uses (DIMSE C-STORE, STOW-RS, import).

Order of work for one instance: check (parse, duplicate check) -> store the bytes as
received (durable: fsync + rename) -> index rows committed -> notify, then acknowledge.
A crash before the commit leaves at most a complete, unindexed file (reported by
``radsight check``, and replaced when the sender re-sends); it never leaves an index
row without its file, and never a partly written file under a storage key.

Where each step lives: :mod:`.parse` (read and check), :mod:`.part10` (the framing written
for data that arrives without it), :mod:`radsight.storage` (the bytes), :mod:`.index_writer`
(the rows, on one writer connection) and :mod:`.group_commit` (one commit for the instances
that arrive together); the types callers and subscribers see are in :mod:`.events`.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import FileMetaDataset

from radsight.config import DuplicatePolicy, Settings
from radsight.index.db import Database
from radsight.ingest import part10, values
from radsight.ingest.errors import IngestError, Reason
from radsight.ingest.events import IngestResult, Listener, NewStudyHook, Outcome, ParsedInstance, StoredEvent
from radsight.ingest.group_commit import GroupCommit
from radsight.ingest.index_writer import DUPLICATE, IndexWriter, PendingInstance
from radsight.ingest.parse import parse_bytes, parse_file
from radsight.storage.base import Storage, StorageError

# IngestResult, Outcome and StoredEvent are re-exported for callers that import them from here.
__all__ = ["IngestResult", "IngestService", "Outcome", "StoredEvent"]

log = logging.getLogger(__name__)

_KEPT_FIRST = "an instance with this SOP Instance UID is already stored; the first was kept"


class IngestService:
    def __init__(self, db: Database, storage: Storage, settings: Settings) -> None:
        self.db = db
        self.storage = storage
        self.settings = settings
        self._listeners: list[Listener] = []
        self._new_study_hooks: list[NewStudyHook] = []
        self.index = IndexWriter(db, self._new_study_hooks)
        self._commits = GroupCommit(self.index.commit_batch)

    # -- notifications ---------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` after each stored instance; its errors are logged, never raised."""
        self._listeners.append(listener)

    def on_new_study(self, hook: NewStudyHook) -> None:
        """Call ``hook(cursor, parsed, now)`` inside the index transaction that creates a study,
        so that rows it writes on the cursor (the worklist's) commit or roll back with the
        study's. It runs on the ingest path: keep it to a few statements
        (:class:`radsight.index.compiled.CompiledStatement`); its exceptions fail the
        instance's transaction."""
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
            data = part10.framed_bytes(data)
        return self._store_checked(parsed, lambda: self.storage.put_bytes(data), study=study, source=source,
                                   calling_ae=calling_ae)

    def ingest_dataset_bytes(
        self, file_meta: FileMetaDataset, dataset: bytes, *, source: str = "dimse", calling_ae: str = ""
    ) -> IngestResult:
        """Store a data set received without Part 10 framing (C-STORE) exactly as encoded."""
        path = self.new_spool_path()
        try:
            part10.write_framed_dataset(path, file_meta, dataset)
        except OSError as exc:
            return IngestResult(Outcome.REFUSED, reason=Reason.STORAGE_FAILURE, message=f"cannot spool: {exc}")
        except Exception as exc:  # file meta from the association that cannot be encoded
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
                framed = self.new_spool_path()
                part10.write_framed_copy(source_path, framed)
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

    def close(self) -> None:
        """Return the index writer's connection to the pool (before the engine is disposed)."""
        self.index.close()

    # -- the work: check -> store -> index -> notify -------------------------------
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

    def _store(self, p: ParsedInstance, put: Callable[[], str], *, source: str, calling_ae: str) -> IngestResult:
        result = IngestResult(
            Outcome.STORED,
            sop_instance_uid=p.sop_instance_uid,
            sop_class_uid=p.sop_class_uid,
            study_instance_uid=p.study_instance_uid,
            series_instance_uid=p.series_instance_uid,
        )
        overwrite = self.settings.duplicate_policy is DuplicatePolicy.OVERWRITE
        if not overwrite and self.index.existing_key(p.sop_instance_uid) is not None:
            result.outcome, result.message = Outcome.DUPLICATE, _KEPT_FIRST
            return result
        try:
            key = put()
        except (OSError, StorageError) as exc:
            log.error("storage failed: %s", exc)
            result.outcome, result.reason, result.message = Outcome.REFUSED, Reason.STORAGE_FAILURE, str(exc)
            return result
        replaced = self._index(p, key, source=source, calling_ae=calling_ae, overwrite=overwrite)
        if replaced is DUPLICATE:
            self.storage.delete(key)
            result.outcome, result.message = Outcome.DUPLICATE, _KEPT_FIRST
            return result
        if isinstance(replaced, str):
            self.storage.delete(replaced)
            result.outcome = Outcome.OVERWRITTEN
            result.message = "replaced the instance stored before with the same SOP Instance UID"
        self._notify(StoredEvent(result, modality=values.text(p.dataset, "Modality"), dataset=p.dataset))
        return result

    def _index(self, p: ParsedInstance, key: str, *, source: str, calling_ae: str, overwrite: bool) -> object:
        """Commit the index rows of ``p``, stored under ``key``; returns the replaced storage
        key, DUPLICATE, or None. The group commit returns after the commit that holds them.
        If they cannot be committed, the file under ``key`` is deleted (it was never
        acknowledged) and the error raised."""
        def commit() -> object:
            return self._commits.submit(PendingInstance(
                parsed=p, key=key, source=source, calling_ae=calling_ae, overwrite=overwrite,
            ))

        try:
            for _ in range(4):
                try:
                    return commit()
                except self.index.integrity_errors:
                    # A concurrent writer created the same patient/study/series/instance:
                    # retry, the next pass finds those rows.
                    pass
            return commit()
        except BaseException:
            self.storage.delete(key)
            raise
