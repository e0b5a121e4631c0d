"""The index values read from raw bytes (``radsight.ingest.values``) equal pydicom's conversion.

Over every file of the bad-input corpus (pydicom's test files, pydicom-data, the shared DICOM)
and some hand-made edge cases: each attribute the index takes is read once by the fast path
and once through pydicom (``Dataset.get`` on a fresh parse), and the two must agree.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from tests.test_bad_input import corpus

from radsight.ingest import values
from radsight.ingest.errors import IngestError
from radsight.ingest.parse import parse_bytes

TEXT = [
    "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName", "SpecificCharacterSet", "Modality",
    "SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "ImageType",
]
INTEGER = ["SeriesNumber", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames"]
UID = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]


def pydicom_text(ds: Dataset, keyword: str) -> str:
    """The index text as it was computed before the fast path (pydicom's value, joined, cleaned)."""
    try:
        value = ds.get(keyword, None)
    except Exception:
        return ""
    if value is None:
        return ""
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list | tuple) else str(value)
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()


def pydicom_integer(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword, None)
        if isinstance(value, MultiValue | list | tuple):
            value = value[0] if value else None
        number = int(value) if value not in (None, "") else None
    except Exception:
        return None
    return number if number is not None and -(2**31 - 1) <= number <= 2**31 - 1 else None


def pydicom_uid(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def compare(data: bytes) -> tuple[int, list[str]]:
    """(attributes compared, differences) for one file; (0, []) when parsing refuses it."""
    try:
        fast = parse_bytes(data).dataset
        slow = parse_bytes(data).dataset
    except IngestError:
        return 0, []
    diffs: list[str] = []
    checks: list[tuple[str, Any, Any]] = []
    checks += [(k, values.text(fast, k), pydicom_text(slow, k)) for k in TEXT]
    checks += [(k, values.integer(fast, k), pydicom_integer(slow, k)) for k in INTEGER]
    checks += [(k, values.uid(fast, k), pydicom_uid(slow, k)) for k in UID]
    for keyword, got, want in checks:
        if got != want:
            diffs.append(f"{keyword}: fast {got!r} != pydicom {want!r}")
    return len(checks), diffs


def test_fast_values_equal_pydicom_over_the_corpus(shared_data: Path) -> None:
    compared = 0
    failures: list[str] = []
    files = corpus(shared_data)
    for path in files:
        n, diffs = compare(path.read_bytes())
        compared += n
        failures += [f"{path.name}: {d}" for d in diffs]
    assert not failures, "\n".join(failures[:40])
    assert compared > 300 * (len(TEXT) + len(INTEGER) + len(UID))  # hundreds of files were parsed


def _file(syntax: str, **attrs: Any) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize(
    "attrs",
    [
        {"PatientName": "Doe^John", "Modality": "CT", "Rows": 512, "Columns": 400, "InstanceNumber": "7"},
        {"PatientName": "Yamada^Tarou=山田^太郎", "SpecificCharacterSet": ["", "ISO 2022 IR 87"]},
        {"PatientName": "Buc^Jérôme", "SpecificCharacterSet": "ISO_IR 100", "StudyDescription": "Tête"},
        {"PatientName": "Wang^XiaoDong=王^小東", "SpecificCharacterSet": "ISO_IR 192"},
        {"PatientID": "ABC\\DEF", "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SeriesNumber": "  12 "},
        {"InstanceNumber": "+3", "NumberOfFrames": "1.0", "StudyTime": "101010.123 ", "BodyPartExamined": "ABDOMEN"},
        {"InstanceNumber": "99999999999", "SeriesNumber": "-2", "PatientSex": "", "AccessionNumber": " A1 "},
        {"StudyDescription": "ends with padding ", "SeriesDescription": "x\x00", "Rows": 65535},
    ],
)
def test_fast_values_equal_pydicom_on_edge_cases(syntax: str, attrs: dict[str, Any]) -> None:
    data = _file(syntax, **attrs)
    n, diffs = compare(data)
    assert n and not diffs, diffs
    # The fast path really ran for the plain values (it reads the raw element, which pydicom
    # leaves raw until a value is asked for).
    ds = parse_bytes(data).dataset
    if "Rows" in attrs:
        assert values.integer(ds, "Rows") == attrs["Rows"]
        assert isinstance(ds.get_item(0x00280010), pydicom.dataelem.RawDataElement)
