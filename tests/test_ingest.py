"""The ingest service: what is stored, indexed, refused and how duplicates behave."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydicom
from sqlalchemy import select
from tests.dicom_factory import make_ct

from radsight.archive import Archive
from radsight.check import check_archive
from radsight.config import DuplicatePolicy
from radsight.index.models import Instance, Series, Study
from radsight.ingest import Outcome, Reason


def test_stores_bytes_unchanged_and_indexes(archive: Archive, tmp_path: Path) -> None:
    f = tmp_path / "a.dcm"
    ds = make_ct(f, patient_name="Müller^Jörg")
    r = archive.ingest.ingest_file(f)
    assert r.outcome is Outcome.STORED and r.dimse_status == 0
    with archive.db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
        assert inst is not None
        stored = archive.storage.local_path(inst.storage_key)
        assert stored is not None and stored.read_bytes() == f.read_bytes()
        study = s.scalar(select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID))
        assert study is not None
        assert study.patient_name == "Müller^Jörg"
        assert (study.number_of_series, study.number_of_instances, study.modalities_in_study) == (1, 1, "CT")


def test_duplicate_keeps_first_by_default(archive: Archive, tmp_path: Path) -> None:
    first = make_ct(tmp_path / "1.dcm", description="first")
    make_ct(tmp_path / "2.dcm", sop_uid=first.SOPInstanceUID, study_uid=first.StudyInstanceUID,
            series_uid=first.SeriesInstanceUID, description="second")
    assert archive.ingest.ingest_file(tmp_path / "1.dcm").outcome is Outcome.STORED
    r = archive.ingest.ingest_file(tmp_path / "2.dcm")
    assert r.outcome is Outcome.DUPLICATE and r.ok
    with archive.db.session() as s:
        inst = s.scalar(select(Instance))
        assert inst is not None
        path = archive.storage.local_path(inst.storage_key)
        assert path is not None
        assert pydicom.dcmread(path).StudyDescription == "first"
        assert s.scalar(select(Series.number_of_instances)) == 1
    assert check_archive(archive).ok


def test_duplicate_overwrite_policy(archive: Archive, tmp_path: Path) -> None:
    archive.settings.duplicate_policy = DuplicatePolicy.OVERWRITE
    first = make_ct(tmp_path / "1.dcm", description="first")
    make_ct(tmp_path / "2.dcm", sop_uid=first.SOPInstanceUID, study_uid=first.StudyInstanceUID,
            series_uid=first.SeriesInstanceUID, description="second")
    archive.ingest.ingest_file(tmp_path / "1.dcm")
    assert archive.ingest.ingest_file(tmp_path / "2.dcm").outcome is Outcome.OVERWRITTEN
    with archive.db.session() as s:
        inst = s.scalar(select(Instance))
        assert inst is not None
        path = archive.storage.local_path(inst.storage_key)
        assert path is not None and pydicom.dcmread(path).StudyDescription == "second"
        assert s.scalar(select(Study.number_of_instances)) == 1
    report = check_archive(archive)
    assert report.ok and report.files == 1


def test_refuses_garbage_and_truncated(archive: Archive, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"NOPE" + b"x" * 100)
    r = archive.ingest.ingest_file(garbage)
    assert r.outcome is Outcome.REFUSED and r.reason is Reason.NOT_DICOM and r.dimse_status == 0xC000

    good = tmp_path / "good.dcm"
    make_ct(good, rows=64, columns=64)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-100])
    r = archive.ingest.ingest_file(truncated)
    assert r.outcome is Outcome.REFUSED and r.reason is Reason.TRUNCATED
    assert "Pixel Data" in r.message
    with archive.db.session() as s:
        assert s.scalar(select(Instance)) is None
    assert check_archive(archive).files == 0


def test_missing_uid_refused_with_attribute_named(archive: Archive, tmp_path: Path) -> None:
    ds = make_ct()
    del ds.StudyInstanceUID
    f = tmp_path / "x.dcm"
    ds.save_as(f, enforce_file_format=True)
    r = archive.ingest.ingest_file(f)
    assert r.reason is Reason.MISSING_ATTRIBUTE and "(0020,000D)" in r.message and r.dimse_status == 0xA900


def test_check_reports_missing_and_orphan(archive: Archive, tmp_path: Path) -> None:
    make_ct(tmp_path / "a.dcm")
    archive.ingest.ingest_file(tmp_path / "a.dcm")
    with archive.db.session() as s:
        inst = s.scalar(select(Instance))
        assert inst is not None
        key = inst.storage_key
    path = archive.storage.local_path(key)
    assert path is not None
    orphan = path.with_name("0" * 32 + ".dcm")
    orphan.write_bytes(path.read_bytes())
    path.unlink()
    report = check_archive(archive)
    assert not report.ok
    assert [k for _, k in report.missing_files] == [key]
    assert len(report.orphan_files) == 1
    check_archive(archive, repair=True)
    assert orphan.exists(), "a fresh orphan may be an instance a running server is about to commit"
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    assert check_archive(archive, repair=True).removed_orphans == [str(orphan.relative_to(archive.storage.root))]
    assert not orphan.exists()


def test_shared_ct_series_accepted_with_file_meta_uids(archive: Archive, shared_data: Path) -> None:
    """The Siemens series has empty (0008,0016)/(0008,0018); the file meta names them.
    It also has empty Study/Series UIDs, so it is refused with that reason unless the
    import is asked to fill them in."""
    from radsight.ingest.importer import import_paths

    folder = shared_data / "ct" / "totalsegmentator" / "example_ct_dicom"
    summary = import_paths(archive.ingest, [folder])
    assert summary.counts["refused"] == 20
    assert all("(0020,000D)" in why for _, why in summary.refused)
    summary = import_paths(archive.ingest, [folder], fill_missing_uids=True)
    assert summary.counts["stored"] == 20
    with archive.db.session() as s:
        assert s.scalar(select(Series.number_of_instances)) == 20
        first = pydicom.dcmread(folder / sorted(p.name for p in folder.iterdir())[0], stop_before_pixels=True)
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid ==
                                               first.file_meta.MediaStorageSOPInstanceUID))
        assert inst is not None and inst.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
