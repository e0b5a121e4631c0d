"""Every real DICOM file we can get is either stored unchanged or refused with a specific reason.

The corpus: the shared WG04 and dcmqi sets and the Siemens CT series, pydicom's own test
files and the ``pydicom-data`` package (both installed, several deliberately broken).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select

from radsight.archive import Archive
from radsight.check import check_archive
from radsight.index.models import Instance
from radsight.ingest import IngestResult, Outcome, Reason
from radsight.ingest.parse import PART10_PREFIX_LENGTH, parse_file


def corpus(shared_data: Path) -> list[Path]:
    """pydicom's test files, pydicom-data's files (an installed package) and the shared DICOM."""
    files = sorted({Path(f) for f in get_testdata_files() if os.path.isfile(f)})
    assert any("data_store" in str(f) for f in files), "pydicom-data is not installed"
    for root in (shared_data / "dicom", shared_data / "ct" / "totalsegmentator" / "example_ct_dicom"):
        files += sorted(p for p in root.rglob("*") if p.is_file())
    return files


def stored_bytes(archive: Archive, sop_instance_uid: str) -> bytes:
    with archive.db.session() as s:
        key = s.scalar(select(Instance.storage_key).where(Instance.sop_instance_uid == sop_instance_uid))
    assert key is not None, f"{sop_instance_uid} is not indexed"
    path = archive.storage.local_path(key)
    assert path is not None
    return path.read_bytes()


def test_every_real_file_is_stored_unchanged_or_refused_with_reason(archive: Archive, shared_data: Path) -> None:
    files = corpus(shared_data)
    assert len(files) > 400
    outcomes: dict[Path, IngestResult] = {}
    for f in files:
        r = archive.ingest.ingest_file(f)  # an exception here fails the test
        outcomes[f] = r
        assert r.outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.REFUSED), f
        if r.outcome is Outcome.REFUSED:
            assert isinstance(r.reason, Reason) and r.message.strip(), f"{f}: refused without a reason"
        else:
            assert r.sop_instance_uid and r.study_instance_uid and r.series_instance_uid, f
        if r.outcome is Outcome.STORED:
            original = f.read_bytes()
            if original[128:132] != b"DICM":
                original = b"\x00" * 128 + b"DICM" + original
            assert stored_bytes(archive, r.sop_instance_uid) == original, f"{f} not stored byte for byte"
    stored = sum(r.outcome is Outcome.STORED for r in outcomes.values())
    refused = [r for r in outcomes.values() if r.outcome is Outcome.REFUSED]
    assert stored > 250 and 40 < len(refused) < 100
    # Every shared WG04 / dcmqi DICOM file is accepted (only the text files beside them are not).
    for f, r in outcomes.items():
        if shared_data / "dicom" in f.parents and f.suffix != ".txt":
            assert r.ok, f"{f}: {r.reason}: {r.message}"
    report = check_archive(archive)
    assert report.ok and report.instances == stored == report.files
    assert not any(archive.storage.spool_dir().iterdir())


def _testfile(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(found)


# (file, expected reason or None for stored, text the message must contain)
KNOWN = [
    ("MR_truncated.dcm", Reason.TRUNCATED, "Pixel Data declares 8192 bytes"),
    ("rtplan_truncated.dcm", Reason.TRUNCATED, "ends inside a data element"),
    ("emri_small_jpeg_2k_lossless_too_short.dcm", Reason.TRUNCATED, "encapsulated Pixel Data"),
    ("no_meta.dcm", Reason.NOT_DICOM, "no File Meta Information"),
    ("ExplVR_LitEndNoMeta.dcm", Reason.NOT_DICOM, "no File Meta Information"),
    ("ExplVR_BigEndNoMeta.dcm", Reason.NOT_DICOM, "no File Meta Information"),
    ("OT-PAL-8-face.dcm", Reason.NOT_DICOM, "no 'DICM' prefix"),
    ("zipMR.gz", Reason.NOT_DICOM, "not a DICOM Part 10 file"),
    ("SC_rgb_jpeg.dcm", Reason.MALFORMED, "encoded in implicit VR but its Transfer Syntax 1.2.840.10008.1.2.4.50"),
    ("meta_missing_tsyntax.dcm", Reason.MALFORMED, "(0002,0010)"),
    ("rtplan.dcm", Reason.INVALID_ATTRIBUTE, "(0002,0003) differs"),
    ("bad_sequence.dcm", Reason.INVALID_ATTRIBUTE, "SOP Instance UID (0008,0018)"),
    ("JPEGLSNearLossless_08.dcm", Reason.MISSING_ATTRIBUTE, "Study Instance UID (0020,000D)"),
    ("DICOMDIR", Reason.UNSUPPORTED, "DICOMDIR"),
    ("image_dfl.dcm", None, ""),  # deflated
    ("ExplVR_BigEnd.dcm", None, ""),  # big endian
    ("MR_small_bigendian.dcm", None, ""),
    ("examples_overlay.dcm", None, ""),  # Pixel Data inside an Icon Image Sequence too
    ("gdcm-US-ALOKA-16_big.dcm", None, ""),
]


@pytest.mark.parametrize(("name", "reason", "text"), KNOWN, ids=[k[0] for k in KNOWN])
def test_known_broken_and_unusual_files(
    archive: Archive, name: str, reason: Reason | None, text: str
) -> None:
    path = _testfile(name)
    r = archive.ingest.ingest_file(path)
    if reason is None:
        assert r.outcome is Outcome.STORED, f"{r.reason}: {r.message}"
        assert stored_bytes(archive, r.sop_instance_uid) == path.read_bytes()
    else:
        assert (r.outcome, r.reason) == (Outcome.REFUSED, reason), r.message
        assert text in r.message
    assert check_archive(archive).ok


def test_pixel_data_offset_is_top_level_not_the_icon(archive: Archive) -> None:
    path = _testfile("examples_overlay.dcm")
    parsed = parse_file(path)
    assert parsed.pixel_data_offset is not None
    with open(path, "rb") as fh:
        fh.seek(parsed.pixel_data_offset)
        assert fh.read(4) == b"\xe0\x7f\x10\x00"
    # The icon's own Pixel Data comes earlier in the file.
    assert path.read_bytes().find(b"\xe0\x7f\x10\x00") < parsed.pixel_data_offset


def test_part10_without_preamble_is_stored_with_the_prefix_in_front(archive: Archive, tmp_path: Path) -> None:
    """Decision: a file that starts with its File Meta Information (no preamble, no 'DICM') is
    accepted; stored as 128 zero bytes + 'DICM' + the original bytes, never re-encoded."""
    original = _testfile("CT_small.dcm").read_bytes()
    bare = tmp_path / "no-preamble.dcm"
    bare.write_bytes(original[PART10_PREFIX_LENGTH:])
    parsed = parse_file(bare)
    assert parsed.missing_preamble and parsed.file_size == len(original)
    r = archive.ingest.ingest_file(bare, move=True)
    assert r.outcome is Outcome.STORED
    assert not bare.exists()
    stored = stored_bytes(archive, r.sop_instance_uid)
    assert stored[:128] == b"\x00" * 128 and stored[128:132] == b"DICM"
    assert stored[PART10_PREFIX_LENGTH:] == original[PART10_PREFIX_LENGTH:]
    assert pydicom.dcmread(_write(tmp_path / "back.dcm", stored)).SOPInstanceUID == r.sop_instance_uid
    with archive.db.session() as s:
        inst = s.scalar(select(Instance))
        assert inst is not None and inst.file_size == len(stored)
        assert inst.pixel_data_offset == parse_file(_testfile("CT_small.dcm")).pixel_data_offset
    assert check_archive(archive).ok
    assert not any(archive.storage.spool_dir().iterdir())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_cut_deflated_and_big_endian_files_are_refused_truncated(archive: Archive, tmp_path: Path) -> None:
    deflated = _testfile("image_dfl.dcm").read_bytes()
    big = _testfile("MR_small_bigendian.dcm").read_bytes()
    for data, cut in ((deflated, len(deflated) // 2), (deflated, len(deflated) - 10), (big, len(big) - 10),
                      (big, 400)):
        r = archive.ingest.ingest_file(_write(tmp_path / "cut.dcm", data[:cut]))
        assert (r.outcome, r.reason) == (Outcome.REFUSED, Reason.TRUNCATED), (cut, r.message)
    # A complete deflate stream of garbage is malformed, not a crash.
    garbage = tmp_path / "dfl-garbage.dcm"
    prefix_end = parse_header_end(deflated)
    comp = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    garbage.write_bytes(deflated[:prefix_end] + comp.compress(os.urandom(300)) + comp.flush())
    r = archive.ingest.ingest_file(garbage)
    assert r.outcome is Outcome.REFUSED and r.reason in (Reason.MALFORMED, Reason.TRUNCATED, Reason.MISSING_ATTRIBUTE)
    assert check_archive(archive).files == 0


def parse_header_end(data: bytes) -> int:
    """Where the data set begins after the file meta group of a Part 10 file (test helper)."""
    import io

    from radsight.ingest.parse import file_meta_end

    return file_meta_end(io.BytesIO(data), PART10_PREFIX_LENGTH, len(data))


def _float_map(path: Path, *, cut: int = 0) -> Path:
    """A small Parametric Map with Float Pixel Data (7FE0,0008), made with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.30"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "MR", "FLOAT1"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.BitsAllocated, ds.NumberOfFrames = 1, 32, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.FloatPixelData = np.linspace(0, 1, 64, dtype=np.float32).tobytes()
    ds.save_as(path, enforce_file_format=True)
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])
    return path


def test_float_pixel_data(archive: Archive, tmp_path: Path) -> None:
    good = _float_map(tmp_path / "pm.dcm")
    parsed = parse_file(good)
    assert parsed.pixel_data_offset is not None
    assert good.read_bytes()[parsed.pixel_data_offset:parsed.pixel_data_offset + 6] == b"\xe0\x7f\x08\x00OF"
    assert archive.ingest.ingest_file(good).outcome is Outcome.STORED
    r = archive.ingest.ingest_file(_float_map(tmp_path / "pm-cut.dcm", cut=6))
    assert (r.reason, r.outcome) == (Reason.TRUNCATED, Outcome.REFUSED)
    assert "Pixel Data declares 256 bytes" in r.message


def test_garbage_after_dicm_prefix(archive: Archive, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for n in (0, 3, 50, 5000):
        f = _write(tmp_path / f"g{n}.dcm", b"\x00" * 128 + b"DICM" + rng.bytes(n))
        r = archive.ingest.ingest_file(f)
        assert r.outcome is Outcome.REFUSED and r.reason is not None and r.message
    assert check_archive(archive).files == 0
