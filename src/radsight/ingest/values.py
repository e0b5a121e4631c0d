"""Attribute values for the index, read from a parsed header.

Most values the index takes (UIDs, codes, dates, numbers, and names in plain ASCII) are
read here straight from the raw element's bytes; anything else goes through pydicom's own
value conversion (``Dataset.get``), which decodes character sets and odd encodings.

Why this is hand-written: pydicom converts an element through its hooks, value converters
and validation (~15-25 us each); ingest needs ~10-25 attributes of every received instance,
which made conversion ~7% of the server's CPU per STOW-RS instance. The fast path only
takes values whose conversion cannot differ from pydicom's: plain ASCII bytes of the shapes
below, with no backslash (multi-valued), escape or other control character; everything
else, and any element pydicom already converted, is pydicom's. ``tests/test_ingest_values.py`` checks both
paths give the same values over every file in the shared data and pydicom's test files.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# Text the fast path may take: printable ASCII but the backslash (value delimiter), then
# optional padding. Leading and trailing spaces are removed by ``text`` anyway.
_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*[\x00 ]*")
_INTEGER = re.compile(rb" *[+-]?[0-9]{1,9} *\x00?")
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "IS", "DS"})
# Text VRs depend on the character set, but every set pydicom decodes (ISO 8859, JIS, KS X,
# GB, UTF-8; ISO 2022 only switches away from ASCII with an escape, which _PLAIN excludes)
# reads the bytes 0x20-0x7E as ASCII.
_TEXT_VRS = frozenset({"SH", "LO", "PN", "ST", "LT", "UC"})
_INT32 = 2**31 - 1

_TAGS: dict[str, tuple[int, str]] = {}


def _tag_vr(keyword: str) -> tuple[int, str]:
    found = _TAGS.get(keyword)
    if found is None:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(f"{keyword} is not a DICOM keyword")
        found = _TAGS[keyword] = (tag, dictionary_VR(tag))
    return found


def _raw_bytes(ds: Dataset, keyword: str) -> tuple[bool, bytes | None]:
    """(True, the element's bytes) where the fast path may take them (None: absent)."""
    tag, vr = _tag_vr(keyword)
    elem = ds.get_item(tag, keep_deferred=True)
    if elem is None:
        return True, None
    if not isinstance(elem, RawDataElement) or elem.value is None or elem.VR not in (None, vr):
        return False, None
    if vr in _ASCII_VRS or vr in _TEXT_VRS:
        return True, elem.value
    return False, None


def _pydicom_value(ds: Dataset, keyword: str) -> Any:
    try:
        return ds.get(keyword, None)
    except Exception:  # a value pydicom cannot decode; parsing normally refuses these first
        return None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list | tuple) else str(value)
    # PostgreSQL text holds neither NUL nor lone surrogates (from undecodable character sets).
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()


def text(ds: Dataset, keyword: str, limit: int | None = None) -> str:
    """An attribute as index text ("" when absent). Never raises: a value the index cannot
    hold is cleaned, not refused. Multiple values are joined with a backslash."""
    fast, raw = _raw_bytes(ds, keyword)
    if fast and (raw is None or _PLAIN.fullmatch(raw)):
        result = "" if raw is None else raw.decode("ascii").replace("\x00", "").strip()
    else:
        result = _as_text(_pydicom_value(ds, keyword))
    return result[:limit] if limit else result


def integer(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute (its first value), or None if absent, not a number or out of range."""
    tag, vr = _tag_vr(keyword)
    elem = ds.get_item(tag, keep_deferred=True)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.value is not None and elem.VR in (None, vr):
        raw = elem.value
        if vr == "IS" and _INTEGER.fullmatch(raw):
            return int(raw.rstrip(b"\x00"))
        if vr == "US" and len(raw) == 2:
            return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
    try:
        value = _pydicom_value(ds, keyword)
        if isinstance(value, MultiValue | list | tuple):
            value = value[0] if value else None
        number = int(value) if value not in (None, "") else None
    except Exception:
        return None
    return number if number is not None and -_INT32 <= number <= _INT32 else None


def uid(ds: Dataset, keyword: str) -> str:
    """A UID attribute as text; a multi-valued or non-text value is an invalid UID, not a crash."""
    fast, raw = _raw_bytes(ds, keyword)
    if fast and (raw is None or _PLAIN.fullmatch(raw)):
        # pydicom's UI conversion: trailing NUL and space padding removed.
        return "" if raw is None else raw.decode("ascii").rstrip("\x00 ")
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)
