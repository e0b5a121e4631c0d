"""Helpers for the DIMSE tests: running DCMTK tools, a DCMTK storescp peer, data set bytes."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import free_port

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


def require_dcmtk(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"DCMTK tools not installed: {', '.join(missing)} (apt-get install dcmtk)")


def dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool; its output (stdout + stderr) is in ``.stdout``."""
    require_dcmtk(args[0])
    return subprocess.run(
        list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False
    )


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information: the data set as encoded."""
    data = Path(path).read_bytes()
    if data[128:132] != b"DICM":
        raise ValueError(f"{path} is not a DICOM Part 10 file")
    pos = 132
    while pos + 8 <= len(data):
        group = struct.unpack("<H", data[pos : pos + 2])[0]
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length = struct.unpack("<L", data[pos + 8 : pos + 12])[0]
            pos += 12 + length
        else:
            length = struct.unpack("<H", data[pos + 6 : pos + 8])[0]
            pos += 8 + length
    return data[pos:]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@dataclass
class StoreSCP:
    """A running DCMTK storescp: files arrive bit-preserved in ``directory``."""

    ae_title: str
    port: int
    directory: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())


@contextmanager
def dcmtk_storescp(directory: Path, ae_title: str = "DEST", syntaxes: str = "+xa") -> Iterator[StoreSCP]:
    """DCMTK's storescp on a free port, writing the data sets exactly as received (+B); by
    default it accepts every transfer syntax it knows (``+xi``: Implicit VR Little Endian only)."""
    require_dcmtk("storescp")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", ae_title, syntaxes, "+B", "-od", str(directory), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield StoreSCP(ae_title, port, directory)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
