"""The byte walk of sequences on ingest (``parse._sequence_is_sound``) decides as pydicom does.

The walk only vouches for a sequence; what it does not vouch for is decoded by pydicom as
before. So: over the bad-input corpus and over mutated files, parsing with the walk and
without it gives the same outcome, and whatever the walk vouches for, pydicom reads without
error.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from tests.test_bad_input import corpus
from tests.test_fuzz import FUZZ, _mutate, mutation

from radsight.ingest import IngestError
from radsight.ingest import parse as parse_mod
from radsight.ingest.parse import parse_bytes


def _outcome(data: bytes) -> tuple[object, ...]:
    try:
        p = parse_bytes(data)
    except IngestError as exc:
        return ("refused", exc.reason, exc.message)
    return ("ok", p.sop_instance_uid, p.study_instance_uid, p.file_size, p.pixel_data_offset)


def _both_ways(data: bytes, monkeypatch: pytest.MonkeyPatch, vouched: list[int]) -> tuple[tuple[object, ...], ...]:
    walk = parse_mod._sequence_is_sound

    def counting(value: bytes) -> bool:
        ok = walk(value)
        vouched[0] += ok
        return ok

    with monkeypatch.context() as m:
        m.setattr(parse_mod, "_sequence_is_sound", counting)
        with_walk = _outcome(data)
        m.setattr(parse_mod, "_sequence_is_sound", lambda value: False)
        pydicom_only = _outcome(data)
    return with_walk, pydicom_only


def test_same_outcomes_as_pydicom_over_the_corpus(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vouched = [0]
    differ = []
    files = corpus(shared_data)
    for path in files:
        data = path.read_bytes()
        with_walk, pydicom_only = _both_ways(data, monkeypatch, vouched)
        if with_walk != pydicom_only:
            differ.append(f"{path.name}: walk {with_walk} != pydicom {pydicom_only}")
    assert not differ, "\n".join(differ[:20])
    assert vouched[0] > 200, "the walk vouched for almost no sequence: it is not being used"


def _sequence_bytes(*items: bytes, undefined: bool = False) -> bytes:
    out = b""
    for item in items:
        out += struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item
    return out + (struct.pack("<HHL", 0xFFFE, 0xE0DD, 0) if undefined else b"")


def _element(group: int, elem: int, vr: bytes, value: bytes, *, undefined: bool = False) -> bytes:
    length = 0xFFFFFFFF if undefined else len(value)
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL", b"OV", b"SV", b"UV"):
        return struct.pack("<HH2sHL", group, elem, vr, 0, length) + value
    return struct.pack("<HH2sH", group, elem, vr, length) + value


def _undefined_item(*elements: bytes) -> bytes:
    return (struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + b"".join(elements)
            + struct.pack("<HHL", 0xFFFE, 0xE00D, 0))


CODE = _element(0x0008, 0x0100, b"SH", b"T-D4000 ") + _element(0x0008, 0x0104, b"LO", b"Abdomen ")
NESTED_UNDEFINED = _element(0x0008, 0x2218, b"SQ", _undefined_item(CODE) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0),
                            undefined=True)


@pytest.mark.parametrize(
    ("value", "sound"),
    [
        (_sequence_bytes(CODE), True),
        (_sequence_bytes(CODE, CODE + _element(0x0008, 0x0102, b"SH", b"SRT ")), True),
        (_sequence_bytes(), True),
        (_sequence_bytes(CODE + _element(0x0040, 0xA043, b"SQ", _sequence_bytes(CODE))), True),  # nested
        (_undefined_item(CODE), True),  # an item of undefined length in a sequence of defined length
        (_sequence_bytes(NESTED_UNDEFINED), True),  # a sequence of undefined length inside an item
        (_sequence_bytes(CODE)[:-1], False),  # cut inside the last element
        (_sequence_bytes(CODE) + b"\x00", False),  # a stray byte after the last item
        (struct.pack("<HHL", 0x0008, 0x0100, len(CODE)) + CODE, False),  # not an item tag
        (_sequence_bytes(CODE + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"), False),  # sequence end inside an item
        (_sequence_bytes(_element(0x0008, 0x0100, b"ZZ", b"AB")), False),  # not a VR
        (_sequence_bytes(_element(0x0009, 0x1010, b"OB", b"", undefined=True)), False),  # undefined-length OB
        (_sequence_bytes(CODE)[:8].replace(struct.pack("<L", len(CODE)), struct.pack("<L", len(CODE) + 40))
         + CODE, False),  # item length past the end
        (_undefined_item(CODE)[:-8], False),  # undefined-length item without its end
    ],
)
def test_walk_on_hand_made_sequences(value: bytes, sound: bool) -> None:
    assert parse_mod._sequence_is_sound(value) is sound
    if sound:
        _decodes_with_pydicom(value)


def _decodes_with_pydicom(value: bytes) -> int:
    """Decode ``value`` as an Explicit VR Little Endian sequence with pydicom, every nested
    sequence included (the ingest path without the walk); the number of items."""
    ds = Dataset()
    ds.set_original_encoding(False, True, "iso8859")
    ds._dict[Tag(0x00081032)] = RawDataElement(Tag(0x00081032), "SQ", len(value), value, 0, False, True)
    real = parse_mod._sequence_is_sound
    try:
        parse_mod._sequence_is_sound = lambda v: False  # type: ignore[assignment]
        parse_mod._parse_sequences(ds, explicit_le=True)
    finally:
        parse_mod._sequence_is_sound = real  # type: ignore[assignment]
    return len(ds[0x00081032].value)


def _real_sequences() -> list[bytes]:
    """Raw bytes of the defined-length sequences of real Explicit VR Little Endian files."""
    out = []
    for name in ("CT_small.dcm", "JPEG2000.dcm", "examples_overlay.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        path = get_testdata_file(name)
        assert path is not None, name
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out += [e.value for e in ds.values()
                if isinstance(e, RawDataElement) and e.VR == "SQ" and isinstance(e.value, bytes) and e.value]
    out += [_sequence_bytes(NESTED_UNDEFINED, CODE), _sequence_bytes(_undefined_item(CODE, NESTED_UNDEFINED))]
    assert len(out) >= 4
    return out


REAL_SEQUENCES = _real_sequences()


@FUZZ
@given(seed=st.sampled_from(range(len(REAL_SEQUENCES))), ops=st.lists(mutation, min_size=1, max_size=3))
def test_what_the_walk_vouches_for_pydicom_reads(seed: int, ops: list[tuple[str, float, int]]) -> None:
    value = _mutate(REAL_SEQUENCES[seed], ops)
    if parse_mod._sequence_is_sound(value):
        _decodes_with_pydicom(value)


SEED_FILE = Path(get_testdata_file("JPEG2000.dcm") or "")  # explicit VR LE, several sequences


@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_file_same_outcome_with_and_without_the_walk(
    ops: list[tuple[str, float, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _mutate(SEED_FILE.read_bytes()[:4096], ops)
    with_walk, pydicom_only = _both_ways(data, monkeypatch, [0])
    assert with_walk == pydicom_only

