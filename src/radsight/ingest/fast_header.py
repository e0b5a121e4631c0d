"""A reader of well-formed Explicit VR Little Endian headers into pydicom's own objects, and a
walk that checks a sequence's bytes nest properly without decoding it.

Hand-written twins of pydicom's reader, kept for one measured need: together they roughly
halved the per-instance header parse on the STOW-RS path (docs/benchmarks.md, "STOW-RS: the
header read by our own loops"). They only take what they fully understand; anything else
(another transfer syntax, an unknown VR, command or file meta elements in the data set, an
element of undefined length other than a sound sequence, a file that ends inside an element)
answers None or False and pydicom reads it as before. tests/test_ingest_fast_parse.py checks
both ways give equal data sets and equal outcomes over the corpus and over mutated files.

They build pydicom's objects and follow its reader's decisions, so they are pinned to the
pydicom releases they are tested with (:data:`TESTED_PYDICOM`, as pyproject's requirement):
under any other release :data:`ENABLED` is False and every header is read by ``dcmread``.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from typing import Any, cast

import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import VR
from pydicom.values import convert_string

from radsight.ingest.part10 import EXPLICIT_LONG_VRS, PART10_PREFIX_LENGTH, PREAMBLE_LENGTH

__all__ = ["ENABLED", "TESTED_PYDICOM", "pydicom_is_tested", "read_header", "sequence_is_sound"]

log = logging.getLogger(__name__)

# The pydicom releases these readers are tested with: from 3.0 up to, not including, 4.0.
TESTED_PYDICOM = ((3, 0), (4, 0))


def pydicom_is_tested(version: str) -> bool:
    """True if pydicom ``version`` (e.g. "3.0.1", "3.1.0.dev0") is in :data:`TESTED_PYDICOM`."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return found is not None and TESTED_PYDICOM[0] <= (int(found[1]), int(found[2])) < TESTED_PYDICOM[1]


ENABLED = pydicom_is_tested(pydicom.__version__)
if not ENABLED:
    log.warning("pydicom %s is outside the range the fast header reader is tested with (%s to %s): "
                "every header is read by pydicom.dcmread", pydicom.__version__, *TESTED_PYDICOM)

_NOT_EXPLICIT_LE = frozenset({ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
                              *PrivateTransferSyntaxes})
_VR_NAMES = {vr.encode(): vr for vr in (v.value for v in VR) if len(vr) == 2}
_element_head = struct.Struct("<HH2sH").unpack_from
# The raw value pydicom gives an empty element of each VR (b"" or None).
_EMPTY_RAW: dict[str, bytes | None] = {
    vr: cast(bytes | None, empty_value_for_VR(vr, raw=True)) for vr in _VR_NAMES.values()
}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000FFFE, 0xE00DFFFE, 0xE0DDFFFE  # (FFFE,eeee) read as "<L"
_u32 = struct.Struct("<L").unpack_from
_tag_length = struct.Struct("<LL").unpack_from  # an item: tag, length
_tag_vr_length = struct.Struct("<L2sH").unpack_from  # an element: tag, VR, 16-bit length


def read_header(data: bytes, meta_end: int) -> tuple[FileDataset, int] | None:
    """``dcmread(stop_before_pixels=True, force=True)`` of the Part 10 file ``data`` whose File
    Meta Information ends at ``meta_end``, and the offset where reading stopped (the top-level
    pixel data or the end); None when pydicom must read it."""
    if not ENABLED:
        return None
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
        if vr_bytes in EXPLICIT_LONG_VRS:
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


def sequence_is_sound(value: bytes) -> bool:
    """True if ``value``, the bytes of an Explicit VR Little Endian sequence of defined length,
    is a run of well-formed items that ends exactly at its end; False when in doubt."""
    if not ENABLED:
        return False
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
        if vr in EXPLICIT_LONG_VRS:
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
