"""``import_paths``: what is walked, skipped, refused and stored, and that nothing is left behind."""

from __future__ import annotations

import zipfile
from pathlib import Path

from sqlalchemy import select

from radsight.archive import Archive
from radsight.check import check_archive
from radsight.index.models import Series
from radsight.ingest import IngestResult
from radsight.ingest.importer import import_paths

SIEMENS = ("ct", "totalsegmentator", "example_ct_dicom")


def test_zip_without_extension_bad_zip_and_missing_path(archive: Archive, tmp_path: Path, shared_data: Path) -> None:
    ref = sorted((shared_data / "dicom" / "wg04" / "REF").iterdir())[:2]
    bundle = tmp_path / "bundle"  # a ZIP without .zip suffix
    with zipfile.ZipFile(bundle, "w") as zf:
        for p in ref:
            zf.write(p, p.name)
        zf.writestr("folder/", "")
        zf.writestr("junk.bin", b"\x00" * 200)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    seen: list[tuple[str, IngestResult]] = []
    summary = import_paths(archive.ingest, [bundle, bad, tmp_path / "nowhere"],
                           on_result=lambda name, r: seen.append((name, r)))
    assert summary.counts["stored"] == 2 and summary.counts["refused"] == 1
    assert {why for _, why in summary.skipped} >= {"no such file or folder"}
    assert any(name.endswith("bad.zip") and "bad ZIP" in why for name, why in summary.skipped)
    assert [name.rsplit("!", 1)[1] for name, _ in seen] == [ref[0].name, ref[1].name, "junk.bin"]
    assert not any(archive.storage.spool_dir().iterdir())
    assert check_archive(archive).ok


def test_fill_missing_uids_from_folder_and_zip(archive: Archive, tmp_path: Path, shared_data: Path) -> None:
    folder = shared_data.joinpath(*SIEMENS)
    files = sorted(folder.iterdir())
    bundle = tmp_path / "siemens.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for p in files[:5]:
            zf.write(p, p.name)
    summary = import_paths(archive.ingest, [bundle], fill_missing_uids=True)
    assert summary.counts["stored"] == 5, summary.refused
    summary = import_paths(archive.ingest, [folder], fill_missing_uids=True)
    assert (summary.counts["stored"], summary.counts["duplicate"]) == (15, 5)
    with archive.db.session() as s:
        assert list(s.scalars(select(Series.number_of_instances))) == [20]  # one series, filled consistently
    assert not any(archive.storage.spool_dir().iterdir())
    assert check_archive(archive).ok
