"""Transcoding a stored instance to Explicit VR Little Endian (uncompressed).

pydicom does the work: ``pydicom.pixels.decompress`` for compressed syntaxes (colour
comes out as RGB with the Photometric Interpretation updated), a re-encode for Implicit
VR and Deflated files. Where the Python decoders fail, DCMTK writes the Explicit VR
Little Endian file itself (see :mod:`radsight.imaging.decode`).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.pixels.utils import decompress
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from radsight.imaging.decode import DCMTK_DECODERS, DecodeError, _describe, decompressed_copy, is_encapsulated

log = logging.getLogger(__name__)

_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_words(ds: Dataset) -> None:
    """Byte-swap the big endian binary values pydicom leaves as raw bytes (recursively)."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
        elif elem.VR in _WORD_SIZES and elem.value and elem.tag != 0x7FE00010:
            size = _WORD_SIZES[elem.VR]
            raw = bytes(elem.value)
            usable = len(raw) - len(raw) % size
            arr = np.frombuffer(raw[:usable], dtype=f">u{size}")
            elem.value = arr.astype(f"<u{size}").tobytes() + raw[usable:]


def to_explicit_little(path: Path, *, dcmtk_fallback: bool = True) -> bytes:
    """The instance at ``path`` encoded as an Explicit VR Little Endian Part 10 file."""
    ds = pydicom.dcmread(path)
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts == ExplicitVRLittleEndian:
        return Path(path).read_bytes()
    if is_encapsulated(ts):
        try:
            decompress(ds, as_rgb=True, generate_instance_uid=False)
        except Exception as exc:  # decoder plugins raise many kinds
            python_error = _describe(exc)
            if not dcmtk_fallback or ts not in DCMTK_DECODERS:
                raise DecodeError(f"cannot decode {UID(ts).name}: {python_error}") from exc
            log.info("python decoders failed on %s (%s); transcoding with DCMTK", path.name, python_error)
            try:
                with decompressed_copy(Path(path), ts) as copy:
                    return copy.read_bytes()
            except DecodeError as dcmtk_exc:
                raise DecodeError(
                    f"cannot decode {UID(ts).name}: python decoders: {python_error}; DCMTK: {dcmtk_exc}"
                ) from dcmtk_exc
    elif ts == ExplicitVRBigEndian:
        if "PixelData" in ds:
            arr = ds.pixel_array
            _swap_words(ds)
            ds.PixelData = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        else:
            _swap_words(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
