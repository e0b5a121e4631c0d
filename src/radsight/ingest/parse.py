"""Read and check one incoming DICOM Part 10 file without loading its pixel data.

pydicom reads the header; the length check of the Pixel Data element is ours, because
pydicom would read the whole value (hundreds of MB for a large multi-frame object) to
find out whether it is complete, while seeking over it answers the same question.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_sequence
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import VR
from pydicom.values import convert_string

from radsight.ingest import values
from radsight.ingest.errors import IngestError, Reason

PREAMBLE_LENGTH = 128
PART10_PREFIX_LENGTH = PREAMBLE_LENGTH + 4  # preamble + b"DICM"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_EXPLICIT_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


@dataclass(slots=True)
class ParsedInstance:
    """The header of a checked instance and the facts the index needs about its file.

    ``file_size`` and ``pixel_data_offset`` describe the file *as it will be stored*: for a
    file without preamble (``missing_preamble``) that is the input with the 132-byte
    preamble and 'DICM' prefix written in front.
    """

    dataset: Dataset
    file_meta: FileMetaDataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    file_size: int
    pixel_data_offset: int | None
    missing_preamble: bool = False


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
        if vr in _EXPLICIT_LONG_VRS:
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


# Hand-written for the same reason as the sequence walk below: pydicom's element reader, made
# for every encoding and every deviation from the standard, took ~9 us per element, two thirds
# of an instance's header parse; this loop reads a well-formed Explicit VR Little Endian data
# set into the same pydicom objects in a fraction of that. It only reads what it fully
# understands; anything else (another transfer syntax, an unknown VR, command or file meta
# elements in the data set, an element of undefined length other than a sound sequence, a file
# that ends inside an element) returns None and pydicom reads the file as before.
# tests/test_ingest_fast_parse.py checks both give equal data sets over the corpus.
_NOT_EXPLICIT_LE = frozenset({ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
                              *PrivateTransferSyntaxes})
_VR_NAMES = {vr.encode(): vr for vr in (v.value for v in VR) if len(vr) == 2}
_element_head = struct.Struct("<HH2sH").unpack_from
# The raw value pydicom gives an empty element of each VR (b"" or None).
_EMPTY_RAW: dict[str, bytes | None] = {
    vr: cast(bytes | None, empty_value_for_VR(vr, raw=True)) for vr in _VR_NAMES.values()
}


def _read_header_fast(data: bytes, meta_end: int) -> tuple[FileDataset, int] | None:
    """``dcmread(stop_before_pixels=True, force=True)`` of the Part 10 file ``data`` whose File
    Meta Information ends at ``meta_end``, and the offset where reading stopped (the top-level
    pixel data or the end); None when pydicom must read it."""
    has_preamble = data[PREAMBLE_LENGTH:PART10_PREFIX_LENGTH] == b"DICM"
    meta_start = PART10_PREFIX_LENGTH if has_preamble else 0
    read = _read_elements(data, meta_start, meta=True)
    if read is None or read[1] != meta_end or not read[0] or meta_end == len(data):
        return None  # (pydicom reads a file that ends after its file meta in its own way)
    file_meta = FileMetaDataset(read[0])
    file_meta.set_original_encoding(False, True, default_encoding)
    try:  # as pydicom's reader does: the first element decoded (its way of testing the encoding)
        file_meta[min(file_meta.keys())]
    except Exception:
        return None
    ts = file_meta.get("TransferSyntaxUID")
    if not ts or ts in _NOT_EXPLICIT_LE:
        return None
    try:
        read = _read_elements(data, meta_end, meta=False)
    except Exception:  # pydicom, reading a sequence or a character set, refused: let it say why
        return None
    if read is None:
        return None
    elements, stopped = read
    ds = FileDataset(cast(Any, None), elements, data[:PREAMBLE_LENGTH] if has_preamble else None, file_meta,
                     False, True)
    # The last step of pydicom's read_partial, word for word (it decodes Specific Character Set).
    ds.set_original_encoding(False, True, ds._character_set)
    return ds, stopped


def _read_elements(
    data: bytes, pos: int, *, meta: bool
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int] | None:
    """The Explicit VR Little Endian elements of ``data`` from ``pos`` and where reading stopped;
    ``meta``: the File Meta Information (group 0002) only, else the data set up to its pixel
    data. None when in doubt."""
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    encoding: str | list[str] = default_encoding  # for sequences read by pydicom
    size = len(data)
    buf: io.BytesIO | None = None
    while pos < size:
        if pos + 8 > size:
            return None
        group, elem, vr_bytes, length = _element_head(data, pos)
        if meta:
            if group != 0x0002:
                break
        elif group == 0x7FE0 and elem in (0x0010, 0x0008, 0x0009):
            break  # stop_before_pixels
        elif group in (0x0000, 0x0002, 0xFFFE):
            return None
        vr = _VR_NAMES.get(vr_bytes)
        if vr is None:
            return None
        if vr_bytes in _EXPLICIT_LONG_VRS:
            if pos + 12 > size:
                return None
            (length,) = _u32(data, pos + 8)
            value_at = pos + 12
        else:
            value_at = pos + 8
        tag = group << 16 | elem
        if length == _UNDEFINED:
            # As pydicom's reader does: an undefined-length sequence is read whole, by pydicom,
            # once the walk has found where it ends.
            end = _walk_items(data, value_at, size, defined=False) if vr == "SQ" and not meta else -1
            if end < 0:
                return None
            if buf is None:
                buf = io.BytesIO(data)
            buf.seek(value_at)
            seq = read_sequence(buf, False, True, length, encoding)
            if buf.tell() != end:
                return None
            key = BaseTag(tag)
            elements[key] = DataElement(key, vr, seq, value_at, is_undefined_length=True)
            pos = end
            continue
        pos = value_at + length
        if pos > size:
            return None
        value: bytes | None = data[value_at:pos] if length else _EMPTY_RAW[vr]
        if tag == 0x00080005:
            encoding = convert_encodings(convert_string(value or b"", True))
        key = BaseTag(tag)
        elements[key] = RawDataElement(key, vr, length, value, value_at, False, True)
    return elements, pos


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


# Files up to this size are parsed from one read into memory. pydicom calls tell() and seek()
# for every element; on a file each is a system call, and CPython releases the GIL around it,
# so while other threads want the GIL (concurrent STOW-RS requests, C-STORE associations)
# every element handed the GIL over: measured ~160 lseek and ~1,300 futex calls per STOW-RS
# instance (strace -c). Larger files (big multi-frame objects) are parsed from the file, so
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
    head = fh.read(PART10_PREFIX_LENGTH)
    # Accepted deliberately: a Part 10 file written without its 128-byte preamble and
    # 'DICM' prefix, i.e. one that starts directly with its File Meta Information
    # (some older writers and hand-made files do this; pydicom reads them with force).
    # The file meta names the transfer syntax, so nothing is guessed; the ingest service
    # stores preamble + 'DICM' + the original bytes unchanged (no re-encoding), so the
    # stored object is a valid Part 10 file. A bare data set with no group 0002 at all
    # is refused: its transfer syntax would have to be guessed.
    missing_preamble = head[PREAMBLE_LENGTH:] != b"DICM"
    if missing_preamble and not _starts_with_file_meta(head):
        if size < PART10_PREFIX_LENGTH:
            raise IngestError(Reason.NOT_DICOM, f"file of {size} bytes is too short to be DICOM Part 10")
        raise IngestError(
            Reason.NOT_DICOM,
            "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble and no "
            "File Meta Information (0002,eeee) at the start",
        )
    meta_start = 0 if missing_preamble else PART10_PREFIX_LENGTH
    meta_end = file_meta_end(fh, meta_start, size)
    if meta_end == meta_start:
        raise IngestError(Reason.MALFORMED, "file has the 'DICM' prefix but no File Meta Information (0002,eeee)")
    fast = None if data is None else _read_header_fast(data, meta_end)
    if fast is None:
        fh.seek(0)
        ds = _read_header(fh)
    else:
        ds, stopped = fast
        fh.seek(stopped)
    meta = ds.file_meta
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
    uid = UID(ts)
    little = uid.is_little_endian if uid.is_transfer_syntax else True
    implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False
    pixel_offset: int | None = None
    if ts == DeflatedExplicitVRLittleEndian:
        # The offset of Pixel Data inside the inflated stream means nothing in the file.
        inflated = _inflate(fh, meta_end)
        buf = io.BytesIO(inflated)
        try:
            pydicom.filereader.read_dataset(buf, False, True, stop_when=_at_pixel_data)
        except Exception as exc:
            raise IngestError(Reason.MALFORMED, f"cannot parse the inflated data set: {exc}") from exc
        _check_top_level_pixel_data(buf, len(inflated), implicit=False, little=True)
    else:
        stopped_at = fh.tell()
        fh.seek(meta_end)
        first = fh.read(6)
        if len(first) == 6 and first[:2] != b"\x00\x00" and _looks_like_vr(first[4:6]) == implicit:
            # The data set is not encoded as its transfer syntax says: pydicom guesses and
            # reads on, but every other reader (and every peer we send it to) trusts the
            # transfer syntax, so these bytes cannot be served as they are.
            found, declared = ("explicit", "implicit") if implicit else ("implicit", "explicit")
            raise IngestError(
                Reason.MALFORMED,
                f"the data set is encoded in {found} VR but its Transfer Syntax {ts} is {declared} VR",
            )
        fh.seek(stopped_at)
        pixel_offset = _check_top_level_pixel_data(fh, size, implicit=implicit, little=little)
        if pixel_offset is not None and missing_preamble:
            pixel_offset += PART10_PREFIX_LENGTH
    try:
        # Parse every sequence now, so a structurally broken data set is refused here and not
        # discovered later by a viewer. Plain values stay undecoded: decoding all of them cost
        # two thirds of the ingest time, and a bad value in a plain element is read leniently.
        _parse_sequences(ds, explicit_le=little and not implicit)
    except Exception as exc:
        raise IngestError(Reason.MALFORMED, f"cannot decode element: {type(exc).__name__}: {exc}") from exc

    # Accepted deliberately: some real archives send files whose SOP Class / Instance UID
    # (0008,0016)/(0008,0018) are empty while the file meta information (0002,0002)/(0002,0003)
    # names them (the shared Siemens CT series does). The file meta values are used for the
    # index; the bytes are stored unchanged.
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
        file_size=size + (PART10_PREFIX_LENGTH if missing_preamble else 0),
        pixel_data_offset=pixel_offset,
        missing_preamble=missing_preamble,
    )


def _parse_sequences(ds: Dataset, *, explicit_le: bool = False) -> None:
    """Read every sequence of ``ds`` (and of its items) down to its last element.

    ``explicit_le``: the data set is Explicit VR Little Endian; a sequence that pydicom left
    undecoded is then first walked by its bytes (:func:`_sequence_is_sound`) and only decoded
    by pydicom when the walk cannot vouch for it.
    """
    # values() gives each element as read (raw, unconverted), without elements()' sorting and
    # per-element lookup; only sequences are converted.
    for elem in list(ds.values()):
        vr = elem.VR
        if vr == "SQ" or (vr in (None, "UN") and getattr(elem, "length", 0) == 0xFFFFFFFF):
            if explicit_le and vr == "SQ" and isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) \
                    and _sequence_is_sound(elem.value):
                continue
            value = ds[elem.tag].value
            if isinstance(value, Sequence):
                for item in value:
                    _parse_sequences(item, explicit_le=explicit_le)


# Hand-written because pydicom's reading of a sequence builds a Dataset per item and a data
# element per element: decoding the sequences of an instance cost a third of its header parse
# (0.8 of 2.3 ms for the STOW-RS benchmark's files), while checking that their bytes nest
# properly is a few struct reads per element. The walk only vouches: anything it does not
# fully understand (a VR it does not know, an element of undefined length other than a
# sequence, a stray delimiter, a length past the end) sends the sequence to pydicom, which
# decides as before. tests/test_ingest_fast_parse.py checks both give the same outcome over the
# corpus and over mutated files.
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000FFFE, 0xE00DFFFE, 0xE0DDFFFE  # (FFFE,eeee) read as "<L"
_u32 = struct.Struct("<L").unpack_from
_tag_length = struct.Struct("<LL").unpack_from  # an item: tag, length
_tag_vr_length = struct.Struct("<L2sH").unpack_from  # an element: tag, VR, 16-bit length


def _sequence_is_sound(value: bytes) -> bool:
    """True if ``value``, the bytes of an Explicit VR Little Endian sequence of defined length,
    is a run of well-formed items that ends exactly at its end; False when in doubt."""
    return _walk_items(value, 0, len(value), defined=True) == len(value)


def _walk_items(buf: bytes, pos: int, end: int, *, defined: bool) -> int:
    """Offset after the items from ``pos`` (up to ``end`` for a sequence of defined length,
    through its Sequence Delimitation Item otherwise); -1 when in doubt."""
    while pos < end:
        if pos + 8 > end:
            return -1
        tag, length = _tag_length(buf, pos)
        pos += 8
        if tag == _SEQUENCE_END and not defined:
            return pos
        if tag != _ITEM:
            return -1
        if length == _UNDEFINED:
            pos = _walk_elements(buf, pos, end, defined=False)
        elif pos + length > end:
            return -1
        else:
            pos = -1 if _walk_elements(buf, pos, pos + length, defined=True) < 0 else pos + length
        if pos < 0:
            return -1
    return pos if defined else -1


def _walk_elements(buf: bytes, pos: int, end: int, *, defined: bool) -> int:
    """Offset after an item's elements from ``pos`` (up to ``end`` for an item of defined
    length, through its Item Delimitation Item otherwise); -1 when in doubt."""
    while pos < end:
        if pos + 8 > end:
            return -1
        tag, vr, length = _tag_vr_length(buf, pos)
        if (tag & 0xFFFF) == 0xFFFE:  # group FFFE: only an item's end belongs here
            return pos + 8 if tag == _ITEM_END and not defined else -1
        if vr not in _VR_NAMES:
            return -1
        if vr in _EXPLICIT_LONG_VRS:
            if pos + 12 > end:
                return -1
            (length,) = _u32(buf, pos + 8)
            pos += 12
        else:
            pos += 8
        if length == _UNDEFINED:
            if vr != b"SQ":
                return -1
            pos = _walk_items(buf, pos, end, defined=False)
            if pos < 0:
                return -1
        elif pos + length > end:
            return -1
        else:
            if vr == b"SQ" and _walk_items(buf, pos, pos + length, defined=True) != pos + length:
                return -1
            pos += length
    return pos if defined else -1
