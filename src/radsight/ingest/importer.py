"""``radsight import``: files, folders (recursively), ZIP archives and DICOMDIR media."""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from radsight.ingest.errors import IngestError, Reason
from radsight.ingest.events import IngestResult, Outcome
from radsight.ingest.parse import MEDIA_STORAGE_DIRECTORY, preamble_is_missing
from radsight.ingest.part10 import PART10_PREFIX_LENGTH
from radsight.ingest.service import IngestService
from radsight.safe_zip import ZipLimitError, ZipLimits

_SKIP_SUFFIXES = {".txt", ".md", ".json", ".csv", ".xml", ".html", ".py", ".gz", ".nii", ".png", ".jpg", ".jpeg"}


@dataclass
class ImportSummary:
    counts: Counter[str] = field(default_factory=Counter)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, result: IngestResult) -> None:
        self.counts[result.outcome.value] += 1
        if result.outcome is Outcome.REFUSED:
            self.refused.append((name, f"{result.reason}: {result.message}"))


@dataclass(frozen=True)
class ImportItem:
    name: str
    open_path: Callable[[], Path]
    cleanup: bool = False


@dataclass(frozen=True)
class Refused:
    """A source refused before ingest (a ZIP archive over a limit), with the reason."""

    name: str
    why: str


def _iter_zip(zpath: Path, spool: Path, limits: ZipLimits) -> Iterator[ImportItem | Refused]:
    with zipfile.ZipFile(zpath) as zf:
        try:
            limits.check_archive(zf)
        except ZipLimitError as exc:
            yield Refused(str(zpath), f"ZIP archive refused, nothing extracted: {exc}")
            return
        for info in zf.infolist():
            if info.is_dir():
                continue

            def extract(info: zipfile.ZipInfo = info) -> Path:
                dest = spool / f"zip-{os.getpid()}-{id(info)}.part"
                try:
                    limits.check_member(info)
                    with zf.open(info) as src:
                        head = src.read(PART10_PREFIX_LENGTH)  # what is not DICOM is never extracted
                        preamble_is_missing(head, info.file_size)
                        limits.copy_member(src, info, dest, head)
                except ZipLimitError as exc:
                    raise IngestError(Reason.TOO_LARGE, f"ZIP member refused, not extracted: {exc}") from exc
                return dest

            yield ImportItem(f"{zpath}!{info.filename}", extract, cleanup=True)


def iter_sources(
    paths: list[Path], spool: Path, limits: ZipLimits
) -> Iterator[ImportItem | Refused | tuple[str, str]]:
    """Every candidate file under ``paths``; yields (name, why) for what is skipped."""
    for root in paths:
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file())
        elif root.is_file():
            files = [root]
        else:
            yield (str(root), "no such file or folder")
            continue
        for f in files:
            if f.suffix.lower() == ".zip" or (f.suffix == "" and zipfile.is_zipfile(f) and _not_dicom(f)):
                try:
                    yield from _iter_zip(f, spool, limits)
                except zipfile.BadZipFile as exc:
                    yield (str(f), f"bad ZIP archive: {exc}")
                continue
            if f.suffix.lower() in _SKIP_SUFFIXES:
                yield (str(f), "not a DICOM file (by extension)")
                continue
            yield ImportItem(str(f), _constant_path(f))


def _constant_path(path: Path) -> Callable[[], Path]:
    return lambda: path


def _not_dicom(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) != b"DICM"


def _is_dicomdir(path: Path) -> bool:
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def _repair_uids(path: Path, spool: Path) -> Path | None:
    """A copy of ``path`` with empty Study/Series/SOP UIDs filled in deterministically.

    Only on request (``--fill-missing-uids``): some de-identified sets blank these UIDs.
    Study and series UIDs are derived from attributes shared by the series, so every
    file of one series lands in one series.
    """
    ds = pydicom.dcmread(path)
    meta = ds.file_meta
    changed = False
    if not ds.get("SOPInstanceUID") and meta.get("MediaStorageSOPInstanceUID"):
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        changed = True
    if not ds.get("SOPClassUID") and meta.get("MediaStorageSOPClassUID"):
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        changed = True
    seed = [str(ds.get(k, "")) for k in ("IssuerOfPatientID", "PatientID", "StudyDate", "StudyTime",
                                          "AccessionNumber", "StationName")]
    if not ds.get("StudyInstanceUID"):
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", *seed])
        changed = True
    if not ds.get("SeriesInstanceUID"):
        series_seed = [str(ds.get(k, "")) for k in ("FrameOfReferenceUID", "SeriesDate", "SeriesTime",
                                                     "SeriesDescription", "AcquisitionNumber")]
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", *seed, *series_seed])
        changed = True
    if not changed:
        return None
    dest = spool / f"fix-{os.getpid()}-{abs(hash(str(path)))}.part"
    ds.save_as(dest, enforce_file_format=True)
    return dest


def import_paths(
    ingest: IngestService,
    paths: list[Path],
    *,
    fill_missing_uids: bool = False,
    progress: Callable[[str], None] | None = None,
    on_result: Callable[[str, IngestResult], None] | None = None,
) -> ImportSummary:
    """Import every file under ``paths``. ``on_result`` is called after each file's ingest
    returned, i.e. once an acknowledged instance is durable (stored and indexed)."""
    summary = ImportSummary()
    spool = ingest.storage.spool_dir()
    for item in iter_sources(paths, spool, ZipLimits.from_settings(ingest.settings)):
        if isinstance(item, tuple):
            summary.skipped.append(item)
            summary.counts["skipped"] += 1
            continue
        if isinstance(item, Refused):
            summary.refused.append((item.name, item.why))
            summary.counts["refused"] += 1
            continue
        try:
            path = item.open_path()
        except IngestError as exc:  # a ZIP member refused before it was extracted
            result = IngestResult(Outcome.REFUSED, reason=exc.reason, message=exc.message)
            summary.add(item.name, result)
            if on_result is not None:
                on_result(item.name, result)
            continue
        except (OSError, zipfile.BadZipFile) as exc:
            summary.refused.append((item.name, f"cannot read: {exc}"))
            summary.counts["refused"] += 1
            continue
        try:
            if _is_dicomdir(path):
                summary.skipped.append((item.name, "DICOMDIR (its referenced files are imported from the folder)"))
                summary.counts["skipped"] += 1
                continue
            # An extracted ZIP member may be taken over by storage (a rename), unless a refusal
            # may still need it for --fill-missing-uids.
            result = ingest.ingest_file(path, move=item.cleanup and not fill_missing_uids, source="import")
            if (
                fill_missing_uids
                and result.outcome is Outcome.REFUSED
                and result.reason is Reason.MISSING_ATTRIBUTE
            ):
                src = Path(item.name) if not item.cleanup else path
                fixed = _repair_uids(src, spool) if src.exists() else None
                if fixed is not None:
                    result = ingest.ingest_file(fixed, move=True, source="import")
                    if result.ok:
                        result.message = "UIDs filled in on import (--fill-missing-uids)"
            summary.add(item.name, result)
            if on_result is not None:
                on_result(item.name, result)
        finally:
            if item.cleanup and path.exists():
                path.unlink()
        if progress:
            progress(item.name)
    return summary
