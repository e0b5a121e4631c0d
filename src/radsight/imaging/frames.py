"""Frames read straight from the stored file, without loading the whole pixel data.

The index keeps the byte offset of the Pixel Data element (``Instance.pixel_data_offset``),
so one frame of a large multi-frame object costs a seek and a read: for encapsulated data
pydicom's ``get_frame`` walks the Basic (or Extended) Offset Table and the fragment items
from an open file; for native data the frame's offset is computed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.utils import get_expected_length, pack_bits, unpack_bits
from pydicom.uid import UID, ExplicitVRBigEndian

from radsight.imaging.decode import decode_frames, is_encapsulated, number_of_frames

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"}


def pixel_value_position(path: Path, offset: int, transfer_syntax_uid: str) -> tuple[int, int]:
    """(start, length) of the Pixel Data value whose element starts at ``offset``.

    ``length`` is 0xFFFFFFFF for encapsulated (undefined length) data.
    """
    uid = UID(transfer_syntax_uid)
    little = uid.is_little_endian if uid.is_transfer_syntax else True
    implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False
    endian = "<" if little else ">"
    with open(path, "rb") as fh:
        fh.seek(offset)
        head = fh.read(12)
    if len(head) < 8:
        raise ValueError("the file ends inside the Pixel Data element header")
    if implicit:
        return offset + 8, struct.unpack(endian + "L", head[4:8])[0]
    if head[4:6] in _LONG_VRS:
        return offset + 12, struct.unpack(endian + "L", head[8:12])[0]
    return offset + 8, struct.unpack(endian + "H", head[6:8])[0]


_PIXEL_TAG_VRS = {0x7FE00010: "OW", 0x7FE00008: "OF", 0x7FE00009: "OD"}


def pixel_element(path: Path, offset: int, transfer_syntax_uid: str, bits_allocated: int | None) -> tuple[int, str]:
    """(tag, VR) of the pixel data element at ``offset`` (Pixel Data, Float or Double Float)."""
    uid = UID(transfer_syntax_uid)
    little = uid.is_little_endian if uid.is_transfer_syntax else True
    with open(path, "rb") as fh:
        fh.seek(offset)
        head = fh.read(6)
    group, elem = struct.unpack(("<" if little else ">") + "HH", head[:4])
    tag = group << 16 | elem
    if uid.is_transfer_syntax and uid.is_implicit_VR:
        vr = _PIXEL_TAG_VRS.get(tag, "OW")
        return tag, ("OB" if tag == 0x7FE00010 and (bits_allocated or 16) <= 8 else vr)
    return tag, head[4:6].decode("ascii", "replace") if head[4:6] in _LONG_VRS else "OB"


def stored_encapsulated_frames(path: Path, offset: int, header: Dataset, indices: Sequence[int]) -> Iterator[bytes]:
    """The compressed bytes of the frames at 0-based ``indices``, exactly as stored."""
    frames = number_of_frames(header)
    extended: tuple[bytes, bytes] | None = None
    if "ExtendedOffsetTable" in header and "ExtendedOffsetTableLengths" in header:
        extended = (bytes(header.ExtendedOffsetTable), bytes(header.ExtendedOffsetTableLengths))
    with open(path, "rb") as fh:
        # Encapsulated Pixel Data is always explicit VR: tag, 'OB', 2 reserved bytes, length.
        fh.seek(offset + 12)
        for index in indices:
            yield get_frame(fh, index, number_of_frames=frames, extended_offsets=extended)


def native_frame_length(header: Dataset) -> int | None:
    """Bytes per frame of native pixel data, or None where frames are not byte aligned (1 bit)."""
    frames = number_of_frames(header)
    if int(header.get("BitsAllocated", 8) or 8) == 1:
        pixels = int(header.Rows) * int(header.Columns) * int(header.get("SamplesPerPixel", 1) or 1)
        return pixels // 8 if pixels % 8 == 0 else None
    return int(get_expected_length(header, "bytes")) // frames


def native_frames(
    path: Path, offset: int | None, header: Dataset, indices: Sequence[int], *, dcmtk_fallback: bool = True
) -> Iterator[bytes]:
    """Uncompressed frames as Explicit VR Little Endian bytes (bit-packed where Bits Allocated is 1)."""
    ts = str(header.file_meta.TransferSyntaxUID)
    frame_length = native_frame_length(header)
    if frame_length is None and offset is not None:
        # 1-bit frames that start inside a byte: pydicom's pixel_array(index=...) cannot cut
        # them out (it reshapes the wrong number of bits), so unpack the value and re-pack.
        start, length = pixel_value_position(path, offset, ts)
        with open(path, "rb") as fh:
            fh.seek(start)
            bits = unpack_bits(fh.read(length))
        per_frame = int(header.Rows) * int(header.Columns) * int(header.get("SamplesPerPixel", 1) or 1)
        for index in indices:
            yield pack_bits(np.asarray(bits[index * per_frame : (index + 1) * per_frame]))
        return
    if frame_length is None or offset is None or ts == ExplicitVRBigEndian:
        # Big endian words need swapping and deflated files have no plain offset: let
        # pydicom read those, re-packed little endian.
        for arr in decode_frames(path, header, indices, dcmtk_fallback=dcmtk_fallback):
            if int(header.get("BitsAllocated", 8) or 8) == 1:
                yield pack_bits(arr)
            else:
                yield np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        return
    start, _length = pixel_value_position(path, offset, ts)
    with open(path, "rb") as fh:
        for index in indices:
            fh.seek(start + index * frame_length)
            data = fh.read(frame_length)
            if len(data) != frame_length:
                raise ValueError(f"frame {index + 1} is cut short in the stored file")
            yield data


def single_frame_as_stored(
    path: Path, offset: int, transfer_syntax_uid: str, *, rows: int, columns: int, bits_allocated: int
) -> bytes | None:
    """The one frame of a single-frame instance from index facts alone (no header parse), or None.

    The viewer's most frequent request (one CT/MR slice): encapsulated, the frame is the
    fragments after the offset table; native (8 bits or more, little endian), it is the value
    less any padding byte, whatever the samples per pixel (1, 2 for YBR_FULL_422, 3).
    """
    if is_encapsulated(transfer_syntax_uid):
        with open(path, "rb") as fh:
            fh.seek(offset + 12)
            return get_frame(fh, 0, number_of_frames=1)
    if bits_allocated < 8 or bits_allocated % 8 or transfer_syntax_uid == ExplicitVRBigEndian:
        return None
    start, length = pixel_value_position(path, offset, transfer_syntax_uid)
    unit = rows * columns * bits_allocated // 8
    if unit == 0 or length < unit:
        return None
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(length // unit * unit)
    return data if len(data) == length // unit * unit else None


def decoded_frame_bytes(arr: np.ndarray) -> bytes:
    """A decoded frame as native little endian bytes (colour interleaved, planar configuration 0)."""
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
