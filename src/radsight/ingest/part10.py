"""The DICOM Part 10 file layout (PS3.10 7.1): a 128-byte preamble, the 'DICM' prefix, the
File Meta Information (group 0002, Explicit VR Little Endian), then the data set.

Ingest stores what the sender sent, byte for byte; the only bytes it ever writes itself are
the framing below, for data that arrives without it (a C-STORE data set, a file written
without its preamble).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

PREAMBLE_LENGTH = 128
PART10_PREFIX = bytes(PREAMBLE_LENGTH) + b"DICM"  # a zero preamble and the prefix
PART10_PREFIX_LENGTH = len(PART10_PREFIX)
# The VRs whose explicit VR element header has a 32-bit length (PS3.5 7.1.2), as bytes.
EXPLICIT_LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)


def framed_bytes(data: bytes) -> bytes:
    """``data``, a file that starts with its File Meta Information, with the preamble and
    prefix in front."""
    return PART10_PREFIX + data


def write_framed_copy(source: Path, target: Path) -> None:
    """Write ``source`` (a file that starts with its File Meta Information) to ``target`` with
    the preamble and prefix in front; ``target`` is removed if writing fails."""
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            dst.write(PART10_PREFIX)
            shutil.copyfileobj(src, dst, 1024 * 1024)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def write_framed_dataset(target: Path, file_meta: FileMetaDataset, dataset: bytes) -> None:
    """Write the Part 10 file of ``dataset`` (encoded as ``file_meta`` says, as received
    without framing by C-STORE) to ``target``: preamble, prefix, File Meta Information, then
    ``dataset`` unchanged; ``target`` is removed if writing fails (``OSError``, or file meta
    that cannot be encoded)."""
    try:
        with open(target, "wb") as fh:
            fh.write(PART10_PREFIX)
            write_file_meta_info(fh, file_meta, enforce_standard=True)  # type: ignore[arg-type]
            fh.write(dataset)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
