"""Property-based robustness of the parser and the ingest service (hypothesis).

Random bytes and random mutations (bit flips, cuts, inserted and deleted bytes) of real
valid files: parse_file either returns or raises IngestError, ingest_file always returns
a result (stored, or refused with a reason), the spool is left empty, and the archive
stays consistent (``radsight check``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from tests.test_bad_input import stored_bytes

from radsight.archive import Archive
from radsight.check import check_archive
from radsight.ingest import IngestError, Outcome
from radsight.ingest.parse import parse_bytes, parse_file

SEED_NAMES = [
    "CT_small.dcm",  # explicit VR LE, native pixels
    "MR_small_bigendian.dcm",  # explicit VR BE
    "image_dfl.dcm",  # deflated
    "SC_rgb_jpeg_dcmtk.dcm",  # encapsulated JPEG
    "rtplan.dcm",  # implicit VR, sequences, no pixels (refused: UID mismatch)
    "examples_overlay.dcm",  # icon image sequence
]


def _seeds() -> list[bytes]:
    out = []
    for name in SEED_NAMES:
        found = get_testdata_file(name)
        assert found is not None, name
        out.append(Path(found).read_bytes())
    out.append(out[0][132:])  # a Part 10 file without preamble (accepted, see parse.py)
    return out


SEEDS = _seeds()
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,  # deterministic examples; nothing to remember between runs (no .hypothesis folder)
)

# One mutation: (kind, where as a fraction of the length, a byte value / bit / length)
mutation = st.tuples(
    st.sampled_from(["flip", "cut", "insert", "delete", "set"]),
    st.floats(min_value=0, max_value=1, allow_nan=False),
    st.integers(min_value=0, max_value=255),
)


def _mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in ops:
        if not buf:
            break
        # Most of a file is pixel data: aim half of the mutations at the header.
        pos = int(where * (len(buf) - 1)) if value % 2 else int(where * min(len(buf) - 1, 1500))
        if kind == "flip":
            buf[pos] ^= 1 << (value % 8)
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([value]) * (1 + value % 5)
        elif kind == "delete":
            del buf[pos:pos + 1 + value % 5]
        else:
            buf[pos] = value
    return bytes(buf)


def _ingest_and_check(archive: Archive, data: bytes) -> None:
    """Both ways in (a file: C-STORE, import; memory: STOW-RS) parse ``data`` alike, and ingest
    it alike: stored as received or refused with a reason, the second time a duplicate."""
    with tempfile.NamedTemporaryFile(suffix=".dcm") as tmp:
        tmp.write(data)
        tmp.flush()
        path = Path(tmp.name)
        outcomes = []
        for parse in (lambda: parse_file(path), lambda: parse_bytes(data)):
            try:
                parsed = parse()
                outcomes.append(("ok", parsed.sop_instance_uid, parsed.file_size, parsed.pixel_data_offset))
            except IngestError as exc:
                assert exc.reason is not None and exc.message
                outcomes.append(("refused", exc.reason, exc.message))
        assert outcomes[0] == outcomes[1], "parse_file and parse_bytes disagree"
        first = archive.ingest.ingest_bytes(data)
        second = archive.ingest.ingest_file(path)
        for r in (first, second):
            assert r.outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.OVERWRITTEN, Outcome.REFUSED)
            if r.outcome is Outcome.REFUSED:
                assert r.reason is not None and r.message
        if first.outcome is Outcome.STORED:
            assert second.outcome is Outcome.DUPLICATE
            expected = data if data[128:132] == b"DICM" else b"\x00" * 128 + b"DICM" + data
            assert stored_bytes(archive, first.sop_instance_uid) == expected
        elif first.outcome is Outcome.REFUSED:
            assert (second.outcome, second.reason) == (Outcome.REFUSED, first.reason)
    assert not any(archive.storage.spool_dir().iterdir()), "ingest left a file in the spool"


@FUZZ
@given(seed=st.sampled_from(range(len(SEEDS))), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_real_files_are_stored_or_refused(
    archive: Archive, seed: int, ops: list[tuple[str, float, int]]
) -> None:
    _ingest_and_check(archive, _mutate(SEEDS[seed], ops))


@FUZZ
@given(
    prefix=st.sampled_from([b"", b"\x00" * 128 + b"DICM", b"\x00" * 128 + b"DICM\x02\x00\x10\x00UI", b"\x02\x00"]),
    body=st.binary(max_size=600),
)
def test_random_bytes_are_refused(archive: Archive, prefix: bytes, body: bytes) -> None:
    _ingest_and_check(archive, prefix + body)


@pytest.fixture(autouse=True)
def _archive_consistent_after(archive: Archive) -> object:
    yield
    report = check_archive(archive)
    assert report.ok, report
