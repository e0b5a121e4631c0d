"""The ingest parser's own readers (``fast_header.read_header``, ``fast_header.sequence_is_sound``)
decide and read as pydicom does, and only under the pydicom releases they are tested with.

Both only take what they fully understand; everything else is read by pydicom as before. So:
over the bad-input corpus and over mutated files, parsing with them and without them gives the
same outcome; the data set the fast reader builds equals pydicom's, element for element; and
whatever the sequence walk vouches for, pydicom reads without error.
"""

from __future__ import annotations

import importlib
import io
import logging
import re
import struct
import tomllib
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from tests.test_bad_input import corpus
from tests.test_fuzz import FUZZ, SEEDS, _mutate, mutation

from radsight.ingest import IngestError, fast_header
from radsight.ingest import parse as parse_mod
from radsight.ingest.parse import PART10_PREFIX_LENGTH, parse_bytes


def _shape(ds: Dataset) -> list[tuple[object, ...]]:
    """``ds`` comparable whatever pydicom had decoded already (it decodes some elements as a side
    effect of others, e.g. Pixel Representation when a sequence is decoded): each element's tag
    and VR, and its value decoded now (or the error decoding it), a sequence item by item."""
    out: list[tuple[object, ...]] = []
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception as exc:
            out.append((tag, "error", type(exc).__name__))
            continue
        if elem.VR == "SQ":
            out.append((tag, "SQ", [_shape(item) for item in elem.value]))
        else:
            out.append((tag, elem.VR, repr(elem.value)))
    return out


def _outcome(data: bytes, *, with_dataset: bool = False) -> tuple[object, ...]:
    """What parse_bytes makes of ``data``; ``with_dataset``: the header and file meta too."""
    try:
        p = parse_bytes(data)
    except IngestError as exc:
        return ("refused", exc.reason, exc.message)
    out = ("ok", p.sop_instance_uid, p.study_instance_uid, p.file_size, p.pixel_data_offset, p.transfer_syntax_uid)
    return (*out, _shape(p.dataset), _shape(p.file_meta), p.dataset.original_encoding) if with_dataset else out


def _both_ways(
    data: bytes, monkeypatch: pytest.MonkeyPatch, vouched: list[int], *, with_dataset: bool = False
) -> tuple[tuple[object, ...], ...]:
    walk = fast_header.sequence_is_sound

    def counting(value: bytes) -> bool:
        ok = walk(value)
        vouched[0] += ok
        return ok

    with monkeypatch.context() as m:
        m.setattr(fast_header, "sequence_is_sound", counting)
        with_walk = _outcome(data, with_dataset=with_dataset)
        m.setattr(fast_header, "sequence_is_sound", lambda value: False)
        m.setattr(fast_header, "read_header", lambda data, meta_end: None)
        pydicom_only = _outcome(data, with_dataset=with_dataset)
    return with_walk, pydicom_only


def test_same_outcomes_as_pydicom_over_the_corpus(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vouched = [0]
    differ = []
    files = corpus(shared_data)
    for path in files:
        data = path.read_bytes()
        with_walk, pydicom_only = _both_ways(data, monkeypatch, vouched)
        if with_walk != pydicom_only:
            differ.append(f"{path.name}: fast {with_walk} != pydicom {pydicom_only}")
    assert not differ, "\n".join(differ[:20])
    assert vouched[0] > 200, "the walk vouched for almost no sequence: it is not being used"


def _same_elements(got: Dataset, want: Dataset) -> list[str]:
    """Differences between two data sets as read (raw elements compared field by field)."""
    diffs = []
    if list(got.keys()) != list(want.keys()):
        return [f"tags differ: {sorted(set(got.keys()) ^ set(want.keys()))[:5]}"]
    for g, w in zip(got.values(), want.values(), strict=True):
        if type(g) is not type(w) or g != w or (isinstance(g, DataElement) and g.file_tell != w.file_tell):
            diffs.append(f"{w.tag}: {g!r:.120} != {w!r:.120}")
    return diffs


def test_fast_reader_builds_pydicoms_data_set_over_the_corpus(shared_data: Path) -> None:
    read = 0
    failures: list[str] = []
    for path in corpus(shared_data):
        data = path.read_bytes()
        fh = io.BytesIO(data)
        try:
            meta_end = parse_mod.file_meta_end(fh, PART10_PREFIX_LENGTH if data[128:132] == b"DICM" else 0, len(data))
        except IngestError:
            continue
        fast = fast_header.read_header(data, meta_end)
        if fast is None:
            continue
        got, stopped = fast
        fh.seek(0)
        want = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        diffs = _same_elements(got, want) + _same_elements(got.file_meta, want.file_meta)
        diffs += [f"{name}: {getattr(got, name)!r} != {getattr(want, name)!r}"
                  for name in ("preamble", "is_little_endian", "is_implicit_VR", "original_encoding",
                               "original_character_set", "_character_set")
                  if getattr(got, name) != getattr(want, name)]
        if stopped != fh.tell():
            diffs.append(f"stopped at {stopped}, pydicom at {fh.tell()}")
        failures += [f"{path.name}: {d}" for d in diffs]
        read += 1
    assert not failures, "\n".join(failures[:30])
    assert read > 300, "the fast reader read almost no file: it is not being used"


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
    assert fast_header.sequence_is_sound(value) is sound
    if sound:
        _decodes_with_pydicom(value)


def _decodes_with_pydicom(value: bytes) -> int:
    """Decode ``value`` as an Explicit VR Little Endian sequence with pydicom, every nested
    sequence included (the ingest path without the walk); the number of items."""
    ds = Dataset()
    ds.set_original_encoding(False, True, "iso8859")
    ds._dict[Tag(0x00081032)] = RawDataElement(Tag(0x00081032), "SQ", len(value), value, 0, False, True)
    real = fast_header.sequence_is_sound
    try:
        fast_header.sequence_is_sound = lambda v: False  # type: ignore[assignment]
        parse_mod._parse_sequences(ds, explicit_le=True)
    finally:
        fast_header.sequence_is_sound = real  # type: ignore[assignment]
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
    if fast_header.sequence_is_sound(value):
        _decodes_with_pydicom(value)


@FUZZ
@given(seed=st.sampled_from(range(len(SEEDS))), ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_file_same_outcome_with_and_without_the_fast_readers(
    seed: int, ops: list[tuple[str, float, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _mutate(SEEDS[seed], ops)
    with_walk, pydicom_only = _both_ways(data, monkeypatch, [0], with_dataset=True)
    assert with_walk == pydicom_only



@pytest.mark.parametrize(
    ("version", "tested"),
    [("3.0.0", True), ("3.0.2", True), ("3.1.0.dev0", True), ("3.12", True),
     ("2.4.4", False), ("4.0.0", False), ("4.0.0rc1", False), ("10.0", False), ("", False), ("dev", False)],
)
def test_tested_pydicom_range(version: str, tested: bool) -> None:
    assert fast_header.pydicom_is_tested(version) is tested


def test_tested_pydicom_range_is_the_one_the_project_requires() -> None:
    """Widening pyproject's pydicom requirement needs the fast reader re-tested, then widened too."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    [requirement] = [r for r in pyproject["project"]["dependencies"] if re.match(r"pydicom\b(?!-)", r)]
    low, high = fast_header.TESTED_PYDICOM
    assert requirement.replace(" ", "") == f"pydicom>={low[0]}.{low[1]},<{high[0]}", requirement


def test_outside_the_tested_pydicom_range_every_header_is_read_by_dcmread(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = get_testdata_file("CT_small.dcm")  # Explicit VR Little Endian, with a sequence
    assert path is not None
    data = Path(path).read_bytes()
    real_dcmread = pydicom.dcmread
    dcmread_calls = [0]

    def counting_dcmread(*args: object, **kwargs: object) -> object:
        dcmread_calls[0] += 1
        return real_dcmread(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pydicom, "dcmread", counting_dcmread)
    assert fast_header.ENABLED, "the installed pydicom is outside the range the fast reader is tested with"
    in_range = _outcome(data, with_dataset=True)
    assert dcmread_calls[0] == 0, "the fast reader was not used in the tested range"
    try:
        with monkeypatch.context() as m, caplog.at_level(logging.WARNING, logger=fast_header.__name__):
            m.setattr(pydicom, "__version__", "4.0.0")
            importlib.reload(fast_header)  # the check runs when the module is imported
            assert fast_header.ENABLED is False
            assert "outside the range" in caplog.text
            meta_end = parse_mod.file_meta_end(io.BytesIO(data), PART10_PREFIX_LENGTH, len(data))
            assert fast_header.read_header(data, meta_end) is None
            assert fast_header.sequence_is_sound(REAL_SEQUENCES[0]) is False
            outside = _outcome(data, with_dataset=True)
            assert dcmread_calls[0] == 1, "outside the tested range the header must be read by dcmread"
    finally:
        importlib.reload(fast_header)
    assert fast_header.ENABLED
    assert outside == in_range
