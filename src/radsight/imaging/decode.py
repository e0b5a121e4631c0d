"""Decoding pixel data of every transfer syntax the archive may hold.

pydicom's pixel API does the work (it picks among pylibjpeg, GDCM, pyjpegls and Pillow).
Where all of those fail and DCMTK knows the syntax, DCMTK's command-line decoders
(``dcmdjpeg``, ``dcmdjpls``, ``dcmdrle``) decompress a copy into a temporary file that
pydicom then reads: the WG04 lossy 12-bit JPEG files, for instance, decode only there.
When nothing can decode the data, :class:`DecodeError` says which decoders were tried
and why each failed: never a blank image.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

log = logging.getLogger(__name__)

NATIVE_SYNTAXES = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
)

# DCMTK's decoder for each syntax it supports (it has no JPEG 2000 decoder in its free toolkit).
DCMTK_DECODERS: dict[str, str] = {
    JPEGBaseline8Bit: "dcmdjpeg",
    JPEGExtended12Bit: "dcmdjpeg",
    JPEGLossless: "dcmdjpeg",
    JPEGLosslessSV1: "dcmdjpeg",
    JPEGLSLossless: "dcmdjpls",
    JPEGLSNearLossless: "dcmdjpls",
    RLELossless: "dcmdrle",
}

_DCMTK_TIMEOUT_S = 120


class DecodeError(Exception):
    """No available decoder could decode the pixel data; the message says why."""


class NoPixelData(Exception):
    """The instance has no Pixel Data element (a report, a presentation state...)."""


def is_encapsulated(transfer_syntax_uid: str) -> bool:
    """True for the compressed (encapsulated) transfer syntaxes."""
    uid = UID(transfer_syntax_uid)
    if transfer_syntax_uid in NATIVE_SYNTAXES:
        return False
    return bool(uid.is_transfer_syntax and uid.is_encapsulated) or not uid.is_transfer_syntax


def read_header(path: Path) -> Dataset:
    """The data set without its pixel data (pydicom stops before reading it)."""
    return pydicom.dcmread(path, stop_before_pixels=True)


def number_of_frames(header: Dataset) -> int:
    try:
        return max(int(header.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def decoded_photometric(header: Dataset) -> str:
    """The photometric interpretation of what :func:`decode_frames` returns.

    pydicom converts YBR_FULL / YBR_FULL_422 to RGB, and the JPEG 2000 decoders undo the
    YBR_ICT / YBR_RCT component transforms, so colour comes back as RGB.
    """
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if int(header.get("SamplesPerPixel", 1) or 1) == 3 and photometric.startswith("YBR"):
        return "RGB"
    return photometric


def _python_decode(path: Path, indices: Sequence[int], transfer_syntax_uid: str = "") -> list[np.ndarray]:
    if transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        # pixel_array reads a file without inflating it: a deflated data set is read whole.
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            raise NoPixelData("the instance has no Pixel Data")
        return [pixel_array(ds, index=i) for i in indices]
    # From the path, pydicom reads only the frames asked for.
    return [pixel_array(path, index=i) for i in indices]


def dcmtk_decompress(path: Path, transfer_syntax_uid: str, dest: Path) -> None:
    """Decompress ``path`` into ``dest`` (Explicit VR Little Endian) with DCMTK."""
    tool = DCMTK_DECODERS.get(transfer_syntax_uid)
    if tool is None:
        raise DecodeError(f"DCMTK has no decoder for {UID(transfer_syntax_uid).name}")
    exe = shutil.which(tool)
    if exe is None:
        raise DecodeError(f"DCMTK's {tool} is not installed")
    try:
        # DCMTK is lenient by default: it warns about odd scan parameters and decodes.
        proc = subprocess.run(
            [exe, str(path), str(dest)], capture_output=True, text=True, timeout=_DCMTK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(f"{tool} took more than {_DCMTK_TIMEOUT_S} s") from exc
    if proc.returncode != 0 or not dest.is_file():
        message = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        # Clients see this message: no server paths in it.
        message = message.replace(str(path), path.name).replace(str(dest), dest.name)
        raise DecodeError(f"{tool} failed (exit {proc.returncode}): {message}")
    if proc.stderr.strip():
        log.info("%s on %s: %s", tool, path.name, proc.stderr.strip())


@contextmanager
def decompressed_copy(path: Path, transfer_syntax_uid: str) -> Iterator[Path]:
    """A temporary DCMTK-decompressed copy of ``path``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="radsight-dcmtk-") as tmp:
        dest = Path(tmp) / "decoded.dcm"
        dcmtk_decompress(path, transfer_syntax_uid, dest)
        yield dest


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


def decode_frames(
    path: Path, header: Dataset, indices: Sequence[int], *, dcmtk_fallback: bool = True
) -> list[np.ndarray]:
    """Decode the frames at 0-based ``indices`` of the instance stored at ``path``.

    Each array is (rows, columns) or (rows, columns, samples), in the photometric
    interpretation :func:`decoded_photometric` gives.
    """
    ts = str(header.file_meta.get("TransferSyntaxUID", ""))
    frames = number_of_frames(header)
    for i in indices:
        if not 0 <= i < frames:
            raise IndexError(f"frame {i + 1} is out of range (the instance has {frames})")
    try:
        return _python_decode(path, indices, ts)
    except NoPixelData:
        raise
    except AttributeError as exc:
        if "no 'Pixel Data'" in str(exc):
            raise NoPixelData("the instance has no Pixel Data") from exc
        python_error = _describe(exc)
    except Exception as exc:  # the decoder plugins raise many kinds on data they cannot handle
        python_error = _describe(exc)
    name = UID(ts).name if ts else "an unknown transfer syntax"
    if not dcmtk_fallback or ts not in DCMTK_DECODERS:
        raise DecodeError(f"cannot decode {name}: {python_error}")
    log.info("python decoders failed on %s (%s); trying DCMTK", path.name, python_error)
    try:
        with decompressed_copy(path, ts) as copy:
            return _python_decode(copy, indices)
    except DecodeError as exc:
        raise DecodeError(f"cannot decode {name}: python decoders: {python_error}; DCMTK: {exc}") from exc
    except Exception as exc:
        raise DecodeError(
            f"cannot decode {name}: python decoders: {python_error}; DCMTK output: {_describe(exc)}"
        ) from exc
