"""Read and check one incoming DICOM Part 10 file without loading its pixel data.

pydicom reads the header (a well-formed Explicit VR Little Endian one is read by
:mod:`.fast_header` into the same pydicom objects); the length check of the Pixel Data
element is ours, because pydicom would read the whole value (hundreds of MB for a large
multi-frame object) to find out whether it is complete, while seeking over it answers the
same question.

Every way a file can be wrong ends in :class:`IngestError` with a reason: nothing else
escapes :func:`parse_file` except ``OSError`` from reading the file itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from radsight.ingest import fast_header, values
from radsight.ingest.errors import IngestError, Reason
from radsight.ingest.events import ParsedInstance
from radsight.ingest.part10 import EXPLICIT_LONG_VRS, PART10_PREFIX_LENGTH, PREAMBLE_LENGTH

# ParsedInstance and the Part 10 lengths are re-exported for callers that import them from here.
__all__ = [
    "IN_MEMORY_PARSE_MAX", "MEDIA_STORAGE_DIRECTORY", "PART10_PREFIX_LENGTH", "PREAMBLE_LENGTH", "ParsedInstance",
    "file_meta_end", "parse_bytes", "parse_file",
]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


def _valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and UID(value).is_valid


def _looks_like_vr(two: bytes) -> bool:
    # pydicom's own test (filereader._is_implicit_vr): two upper-case ASCII letters.
    return len(two) == 2 and 0x40 < two[0] < 0x5B and 0x40 < two[1] < 0x5B


def _starts_with_file_meta(head: bytes) -> bool:
    """True if ``head`` begins with a File Meta Information element: (0002,xxxx), explicit VR LE."""
    return len(head) >= 8 and head[:2] == b"\x02\x00" and _looks_like_vr(head[4:6])


def file_meta_end(fh: BinaryIO, start: int, size: int) -> int:
    """Offset of the first byte after the File Meta Information group (0002) that begins at ``start``.

    Walks the elements by their lengths instead of trusting (0002,0000), which real files
    get wrong. The group is always explicit VR little endian (PS3.10 7.1).
    """
    pos = start
    while True:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8 or head[:2] != b"\x02\x00":
            return pos
        vr = head[4:6]
        if not _looks_like_vr(vr):
            raise IngestError(Reason.MALFORMED, f"file meta information element at byte {pos} has no valid VR")
        if vr in EXPLICIT_LONG_VRS:
            ext = fh.read(4)
            if len(ext) < 4:
                raise IngestError(Reason.TRUNCATED, "file ends inside the file meta information")
            (length,) = struct.unpack("<L", ext)
            pos += 12
        else:
            (length,) = struct.unpack("<H", head[6:8])
            pos += 8
        if length == 0xFFFFFFFF:
            raise IngestError(Reason.MALFORMED, "file meta information element has an undefined length")
        pos += length
        if pos > size:
            raise IngestError(Reason.TRUNCATED, "file ends inside the file meta information")


def _check_pixel_data(fh: BinaryIO, offset: int, size: int, *, implicit: bool, little: bool) -> None:
    """Walk the Pixel Data element at ``offset`` by its lengths; raise if the file ends early."""
    fh.seek(offset)
    endian = "<" if little else ">"
    head = fh.read(8)
    if len(head) < 8:
        raise IngestError(Reason.TRUNCATED, "file ends inside the Pixel Data element header")
    # Decide per element, as pydicom does: an explicit VR file may carry this element in
    # implicit VR (and pydicom then reads it so).
    if implicit or not _looks_like_vr(head[4:6]):
        (length,) = struct.unpack(endian + "L", head[4:8])
        pos = offset + 8
    elif head[4:6] in EXPLICIT_LONG_VRS:
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


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return int(tag) in _PIXEL_TAGS


def _check_top_level_pixel_data(buf: BinaryIO, size: int, *, implicit: bool, little: bool) -> int | None:
    """If ``buf`` is positioned at a top-level pixel data element, check it; return its offset."""
    here = buf.tell()
    tag_bytes = buf.read(4)
    if len(tag_bytes) < 4:
        return None
    group, elem = struct.unpack(("<" if little else ">") + "HH", tag_bytes)
    if (group << 16 | elem) not in _PIXEL_TAGS:
        return None
    _check_pixel_data(buf, here, size, implicit=implicit, little=little)
    return here


def _inflate(fh: BinaryIO, start: int) -> bytes:
    """The inflated data set of a Deflated Explicit VR Little Endian file; refuse a cut stream."""
    fh.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(fh.read()) + inflater.flush()
    except zlib.error as exc:
        raise IngestError(Reason.MALFORMED, f"the deflated data set cannot be inflated: {exc}") from exc
    if not inflater.eof:
        raise IngestError(Reason.TRUNCATED, "the deflated data set ends before its deflate stream does")
    return data


class _ShortReadWatch:
    """A file wrapper noting reads cut short by the end of the file.

    pydicom only warns when the file ends inside an element and returns what it read, so a
    file cut inside its header would otherwise be refused later with a misleading reason
    (a missing attribute) or even stored.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        # None, not a made-up name, for a buffer: pydicom stats a named file (for its timestamp).
        self.name = getattr(fh, "name", None)
        self.cut_short = False

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if size is not None and size > 0 and 0 < len(data) < size:
            self.cut_short = True
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _read_header(fh: BinaryIO) -> Dataset:
    watch = _ShortReadWatch(fh)
    try:
        ds = pydicom.dcmread(watch, stop_before_pixels=True, force=True)
    except zlib.error as exc:
        if "truncated" in str(exc):
            raise IngestError(Reason.TRUNCATED, "the deflated data set ends before its deflate stream does") from exc
        raise IngestError(Reason.MALFORMED, f"the deflated data set cannot be inflated: {exc}") from exc
    except (InvalidDicomError, EOFError, struct.error) as exc:
        raise IngestError(Reason.MALFORMED, f"cannot parse the data set: {exc}") from exc
    except NotImplementedError as exc:
        raise IngestError(Reason.UNSUPPORTED, f"unsupported encoding: {exc}") from exc
    except Exception as exc:  # pydicom raises many kinds on corrupt input
        raise IngestError(Reason.MALFORMED, f"cannot parse the data set: {type(exc).__name__}: {exc}") from exc
    if watch.cut_short:
        raise IngestError(Reason.TRUNCATED, "the file ends inside a data element of its header")
    return ds


def parse_file(path: Path) -> ParsedInstance:
    """Parse and check the file at ``path``; raise :class:`IngestError` with the reason.

    Only ``IngestError`` and ``OSError`` (the file cannot be read) leave this function.
    """
    try:
        return _parse_file(path)
    except (IngestError, OSError):
        raise
    except Exception as exc:  # a corrupt value found by a check after the header was read
        raise IngestError(Reason.MALFORMED, f"cannot parse the data set: {type(exc).__name__}: {exc}") from exc


# Files up to this size are parsed from one read into memory: pydicom calls tell() and seek()
# for every element, and on a file each is a system call around which CPython releases the
# GIL, handing it over per element while other threads (concurrent STOW-RS requests, C-STORE
# associations) want it. Larger files (big multi-frame objects) are parsed from the file, so
# nothing of hundreds of MB is held in memory.
IN_MEMORY_PARSE_MAX = 16 * 1024 * 1024


@contextlib.contextmanager
def _open_for_parse(path: Path, size: int) -> Iterator[tuple[BinaryIO, bytes | None]]:
    """The file to parse, and its bytes when it was read whole into memory."""
    with open(path, "rb") as fh:
        if size <= IN_MEMORY_PARSE_MAX:
            data = fh.read()
            buf = io.BytesIO(data)
            buf.name = str(path)  # for pydicom's messages
            yield buf, data
        else:
            yield fh, None


def parse_bytes(data: bytes) -> ParsedInstance:
    """:func:`parse_file` for a file already in memory (a STOW-RS part): nothing is read twice."""
    try:
        # Shares the bytes object's buffer, no copy. No ``name``: pydicom would look for a
        # file of that name on disk (a stat per instance).
        return _parse(io.BytesIO(data), len(data), data)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(Reason.MALFORMED, f"cannot parse the data set: {type(exc).__name__}: {exc}") from exc


def _parse_file(path: Path) -> ParsedInstance:
    size = os.path.getsize(path)
    with _open_for_parse(path, size) as (fh, data):
        return _parse(fh, size, data)


def _parse(fh: BinaryIO, size: int, data: bytes | None = None) -> ParsedInstance:
    """Parse the file open as ``fh`` (``data``: its bytes, when it is in memory)."""
    missing_preamble = preamble_is_missing(fh.read(PART10_PREFIX_LENGTH), size)
    meta_start = 0 if missing_preamble else PART10_PREFIX_LENGTH
    meta_end = file_meta_end(fh, meta_start, size)
    if meta_end == meta_start:
        raise IngestError(Reason.MALFORMED, "file has the 'DICM' prefix but no File Meta Information (0002,eeee)")
    fast = None if data is None else fast_header.read_header(data, meta_end)
    if fast is None:
        fh.seek(0)
        ds = _read_header(fh)
    else:
        ds, stopped = fast
        fh.seek(stopped)
    meta = ds.file_meta
    ts = _transfer_syntax(meta)
    uid = UID(ts)
    little = uid.is_little_endian if uid.is_transfer_syntax else True
    implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False
    pixel_offset: int | None = None
    if ts == DeflatedExplicitVRLittleEndian:
        _check_deflated(fh, meta_end)  # the offset of Pixel Data in the inflated stream means nothing in the file
    else:
        pixel_offset = _check_encoding_and_pixel_data(fh, meta_end, size, ts, implicit=implicit, little=little)
        if pixel_offset is not None and missing_preamble:
            pixel_offset += PART10_PREFIX_LENGTH
    try:
        # Parse every sequence now, so a structurally broken data set is refused here and not
        # discovered later by a viewer. Plain values stay undecoded (decoding them all is most
        # of a header's parse time, docs/benchmarks.md), and a bad plain value is read leniently.
        _parse_sequences(ds, explicit_le=little and not implicit)
    except Exception as exc:
        raise IngestError(Reason.MALFORMED, f"cannot decode element: {type(exc).__name__}: {exc}") from exc
    sop_class, sop_instance, study, series = _identifying_uids(ds, meta)
    return ParsedInstance(
        dataset=ds,
        file_meta=meta,
        transfer_syntax_uid=ts,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        file_size=size + (PART10_PREFIX_LENGTH if missing_preamble else 0),
        pixel_data_offset=pixel_offset,
        missing_preamble=missing_preamble,
    )


def preamble_is_missing(head: bytes, size: int) -> bool:
    """True if the file beginning with ``head`` (its first 132 bytes) has no preamble and
    'DICM' prefix but starts with its File Meta Information; refuse a file with neither.

    Accepted deliberately: a Part 10 file written without its 128-byte preamble and 'DICM'
    prefix (some older writers and hand-made files do this; pydicom reads them with force).
    The file meta names the transfer syntax, so nothing is guessed; the ingest service stores
    preamble + 'DICM' + the original bytes unchanged (no re-encoding), so the stored object is
    a valid Part 10 file. A bare data set with no group 0002 at all is refused: its transfer
    syntax would have to be guessed.
    """
    missing = head[PREAMBLE_LENGTH:] != b"DICM"
    if missing and not _starts_with_file_meta(head):
        if size < PART10_PREFIX_LENGTH:
            raise IngestError(Reason.NOT_DICOM, f"file of {size} bytes is too short to be DICOM Part 10")
        raise IngestError(
            Reason.NOT_DICOM,
            "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble and no "
            "File Meta Information (0002,eeee) at the start",
        )
    return missing


def _transfer_syntax(meta: FileMetaDataset) -> str:
    """The file's Transfer Syntax UID; refuse a missing or invalid one, and a DICOMDIR."""
    ts = str(meta.get("TransferSyntaxUID", "") or "")
    if not ts:
        raise IngestError(Reason.MALFORMED, "file meta information has no Transfer Syntax UID (0002,0010)")
    if not _valid_uid(ts):
        raise IngestError(Reason.MALFORMED, f"Transfer Syntax UID {ts!r} is not a valid UID")
    if str(meta.get("MediaStorageSOPClassUID", "") or "") == MEDIA_STORAGE_DIRECTORY:
        raise IngestError(
            Reason.UNSUPPORTED,
            "a DICOMDIR (Media Storage Directory) is an index of removable media, not an instance: "
            "import the folder it is in",
        )
    return ts


def _check_deflated(fh: BinaryIO, meta_end: int) -> None:
    """Inflate the data set after ``meta_end`` and check its top-level pixel data."""
    inflated = _inflate(fh, meta_end)
    buf = io.BytesIO(inflated)
    try:
        pydicom.filereader.read_dataset(buf, False, True, stop_when=_at_pixel_data)
    except Exception as exc:
        raise IngestError(Reason.MALFORMED, f"cannot parse the inflated data set: {exc}") from exc
    _check_top_level_pixel_data(buf, len(inflated), implicit=False, little=True)


def _check_encoding_and_pixel_data(
    fh: BinaryIO, meta_end: int, size: int, ts: str, *, implicit: bool, little: bool
) -> int | None:
    """Refuse a data set not encoded in the VR its transfer syntax ``ts`` names; check the
    top-level pixel data where the header read stopped (``fh``'s position). Its offset in
    the file as read, or None."""
    stopped_at = fh.tell()
    fh.seek(meta_end)
    first = fh.read(6)
    if len(first) == 6 and first[:2] != b"\x00\x00" and _looks_like_vr(first[4:6]) == implicit:
        # pydicom guesses and reads on, but every other reader (and every peer we send it to)
        # trusts the transfer syntax, so these bytes cannot be served as they are.
        found, declared = ("explicit", "implicit") if implicit else ("implicit", "explicit")
        raise IngestError(
            Reason.MALFORMED,
            f"the data set is encoded in {found} VR but its Transfer Syntax {ts} is {declared} VR",
        )
    fh.seek(stopped_at)
    return _check_top_level_pixel_data(fh, size, implicit=implicit, little=little)


def _identifying_uids(ds: Dataset, meta: FileMetaDataset) -> tuple[str, str, str, str]:
    """SOP Class, SOP Instance, Study and Series Instance UIDs; refuse missing or invalid ones.

    Accepted deliberately: some real archives send files whose SOP Class / Instance UID
    (0008,0016)/(0008,0018) are empty while the file meta information (0002,0002)/(0002,0003)
    names them (the shared Siemens CT series does). The file meta values are used for the
    index; the bytes are stored unchanged.
    """
    sop_class = values.uid(ds, "SOPClassUID") or values.uid(meta, "MediaStorageSOPClassUID")
    sop_instance = values.uid(ds, "SOPInstanceUID") or values.uid(meta, "MediaStorageSOPInstanceUID")
    checks = {
        "SOP Class UID (0008,0016)": sop_class,
        "SOP Instance UID (0008,0018)": sop_instance,
        "Study Instance UID (0020,000D)": values.uid(ds, "StudyInstanceUID"),
        "Series Instance UID (0020,000E)": values.uid(ds, "SeriesInstanceUID"),
    }
    for name, value in checks.items():
        if not value:
            raise IngestError(Reason.MISSING_ATTRIBUTE, f"{name} is missing or empty")
        if not _valid_uid(value):
            raise IngestError(Reason.INVALID_ATTRIBUTE, f"{name} {value[:80]!r} is not a valid UID")
    media_uid = values.uid(meta, "MediaStorageSOPInstanceUID")
    if media_uid and media_uid != sop_instance:
        raise IngestError(
            Reason.INVALID_ATTRIBUTE,
            "Media Storage SOP Instance UID (0002,0003) differs from SOP Instance UID (0008,0018)",
        )
    study, series = checks["Study Instance UID (0020,000D)"], checks["Series Instance UID (0020,000E)"]
    return sop_class, sop_instance, study, series


def _parse_sequences(ds: Dataset, *, explicit_le: bool = False) -> None:
    """Read every sequence of ``ds`` (and of its items) down to its last element.

    ``explicit_le``: the data set is Explicit VR Little Endian; a sequence that pydicom left
    undecoded is then first walked by its bytes (:func:`.fast_header.sequence_is_sound`) and only decoded
    by pydicom when the walk cannot vouch for it.
    """
    # values() gives each element as read (raw, unconverted), without elements()' sorting and
    # per-element lookup; only sequences are converted.
    for elem in list(ds.values()):
        vr = elem.VR
        if vr == "SQ" or (vr in (None, "UN") and getattr(elem, "length", 0) == 0xFFFFFFFF):
            if explicit_le and vr == "SQ" and isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) \
                    and fast_header.sequence_is_sound(elem.value):
                continue
            value = ds[elem.tag].value
            if isinstance(value, Sequence):
                for item in value:
                    _parse_sequences(item, explicit_le=explicit_le)
