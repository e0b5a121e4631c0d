"""Read and check one incoming DICOM Part 10 file without loading its pixel data.

pydicom reads the header; the length check of the Pixel Data element is ours, because
pydicom would read the whole value (hundreds of MB for a large multi-frame object) to
find out whether it is complete, while seeking over it answers the same question.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from radsight.ingest.errors import IngestError, Reason

_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_EXPLICIT_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


@dataclass(slots=True)
class ParsedInstance:
    """The header of a checked instance and the facts the index needs about its file."""

    dataset: Dataset
    file_meta: FileMetaDataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    file_size: int
    pixel_data_offset: int | None


def _valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and UID(value).is_valid


def _check_pixel_data(fh: BinaryIO, offset: int, size: int, *, implicit: bool, little: bool) -> None:
    """Walk the Pixel Data element at ``offset`` by its lengths; raise if the file ends early."""
    fh.seek(offset)
    endian = "<" if little else ">"
    head = fh.read(8)
    if len(head) < 8:
        raise IngestError(Reason.TRUNCATED, "file ends inside the Pixel Data element header")
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        pos = offset + 8
    elif head[4:6] in _EXPLICIT_LONG_VRS:
        ext = fh.read(4)
        if len(ext) < 4:
            raise IngestError(Reason.TRUNCATED, "file ends inside the Pixel Data element header")
        (length,) = struct.unpack(endian + "L", ext)
        pos = offset + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        pos = offset + 8
    if length != 0xFFFFFFFF:
        if pos + length > size:
            raise IngestError(
                Reason.TRUNCATED,
                f"Pixel Data declares {length} bytes but the file ends after {size - pos}",
            )
        return
    # Encapsulated: a Basic Offset Table item, fragment items, then a sequence delimiter.
    while True:
        fh.seek(pos)
        item = fh.read(8)
        if len(item) < 8:
            raise IngestError(Reason.TRUNCATED, "file ends inside encapsulated Pixel Data")
        group, elem, ilen = struct.unpack("<HHL", item)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return
        if (group, elem) != (0xFFFE, 0xE000) or ilen == 0xFFFFFFFF:
            raise IngestError(Reason.MALFORMED, "encapsulated Pixel Data has a malformed item")
        pos += 8 + ilen
        if pos > size:
            raise IngestError(Reason.TRUNCATED, "file ends inside an encapsulated Pixel Data fragment")


def parse_file(path: Path) -> ParsedInstance:
    """Parse and check the file at ``path``; raise :class:`IngestError` with the reason."""
    size = os.path.getsize(path)
    if size < 132:
        raise IngestError(Reason.NOT_DICOM, f"file of {size} bytes is too short to be DICOM Part 10")
    with open(path, "rb") as fh:
        fh.seek(128)
        if fh.read(4) != b"DICM":
            raise IngestError(
                Reason.NOT_DICOM, "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble"
            )
        fh.seek(0)
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, struct.error) as exc:
            raise IngestError(Reason.MALFORMED, f"cannot parse the data set: {exc}") from exc
        except NotImplementedError as exc:
            raise IngestError(Reason.UNSUPPORTED, f"unsupported encoding: {exc}") from exc
        except Exception as exc:  # pydicom raises many kinds on corrupt input
            raise IngestError(Reason.MALFORMED, f"cannot parse the data set: {type(exc).__name__}: {exc}") from exc
        meta = ds.file_meta
        ts = str(meta.get("TransferSyntaxUID", "") or "")
        if not ts:
            raise IngestError(Reason.MALFORMED, "file meta information has no Transfer Syntax UID (0002,0010)")
        if not _valid_uid(ts):
            raise IngestError(Reason.MALFORMED, f"Transfer Syntax UID {ts!r} is not a valid UID")
        pixel_offset: int | None = None
        if ts != DeflatedExplicitVRLittleEndian:
            here = fh.tell()
            fh.seek(here)
            tag_bytes = fh.read(4)
            if len(tag_bytes) == 4:
                uid = UID(ts)
                little = uid.is_little_endian if uid.is_transfer_syntax else True
                implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False
                group, elem = struct.unpack(("<" if little else ">") + "HH", tag_bytes)
                if (group << 16 | elem) in _PIXEL_TAGS:
                    pixel_offset = here
                    _check_pixel_data(fh, here, size, implicit=implicit, little=little)
    try:
        # Force decoding of every value now, so a broken element is refused here and not
        # discovered later by a viewer.
        for elem in ds.iterall():
            _ = elem.value
    except Exception as exc:
        raise IngestError(Reason.MALFORMED, f"cannot decode element: {type(exc).__name__}: {exc}") from exc

    # Accepted deliberately: some real archives send files whose SOP Class / Instance UID
    # (0008,0016)/(0008,0018) are empty while the file meta information (0002,0002)/(0002,0003)
    # names them (the shared Siemens CT series does). The file meta values are used for the
    # index; the bytes are stored unchanged.
    sop_class = str(ds.get("SOPClassUID", "") or "") or str(meta.get("MediaStorageSOPClassUID", "") or "")
    sop_instance = str(ds.get("SOPInstanceUID", "") or "") or str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    checks = {
        "SOP Class UID (0008,0016)": sop_class,
        "SOP Instance UID (0008,0018)": sop_instance,
        "Study Instance UID (0020,000D)": str(ds.get("StudyInstanceUID", "") or ""),
        "Series Instance UID (0020,000E)": str(ds.get("SeriesInstanceUID", "") or ""),
    }
    for name, value in checks.items():
        if not value:
            raise IngestError(Reason.MISSING_ATTRIBUTE, f"{name} is missing or empty")
        if not _valid_uid(value):
            raise IngestError(Reason.INVALID_ATTRIBUTE, f"{name} {value!r} is not a valid UID")
    media_uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    if media_uid and media_uid != checks["SOP Instance UID (0008,0018)"]:
        raise IngestError(
            Reason.INVALID_ATTRIBUTE,
            "Media Storage SOP Instance UID (0002,0003) differs from SOP Instance UID (0008,0018)",
        )
    return ParsedInstance(
        dataset=ds,
        file_meta=meta,
        transfer_syntax_uid=ts,
        sop_class_uid=sop_class,
        sop_instance_uid=checks["SOP Instance UID (0008,0018)"],
        study_instance_uid=checks["Study Instance UID (0020,000D)"],
        series_instance_uid=checks["Series Instance UID (0020,000E)"],
        file_size=size,
        pixel_data_offset=pixel_offset,
    )
