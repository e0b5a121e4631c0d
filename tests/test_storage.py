"""File-system storage: spool folders of running processes survive another process opening
the archive; those of dead processes are removed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from radsight.storage import FileSystemStorage

HOLDER = """
import sys, time
from pathlib import Path
from radsight.storage import FileSystemStorage
s = FileSystemStorage(Path(sys.argv[1]))
(s.spool_dir() / "in-flight.part").write_bytes(b"half an instance")
print(s.spool_dir(), flush=True)
time.sleep(60)
"""


def test_open_by_another_process_keeps_in_flight_files(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        their_spool = Path(holder.stdout.readline().strip())
        in_flight = their_spool / "in-flight.part"
        assert in_flight.exists()
        other = FileSystemStorage(tmp_path)  # e.g. `radsight check` while `serve` receives
        assert other.clean_spool() == 0
        assert in_flight.read_bytes() == b"half an instance", "a running process's spool file was removed"
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait(10)
        deadline = time.monotonic() + 5
        while other.clean_spool() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not their_spool.exists() and not other.spool_leftovers()
        other.close()
        assert not any((tmp_path / "tmp").iterdir())
    finally:
        holder.kill()


def test_put_file_moves_spool_files_and_copies_others(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "store")
    try:
        spooled = storage.spool_dir() / "in-a.part"
        spooled.write_bytes(b"spooled instance")
        key = storage.put_file(spooled, move=True)  # taken over by rename; its key folder created on the way
        assert storage.open(key).read() == b"spooled instance" and not spooled.exists()
        # The same spool folder spelled another way is still recognised (and renamed, not copied).
        odd = storage.spool_dir() / ".." / storage.spool_dir().name / "in-b.part"
        odd.write_bytes(b"second")
        key2 = storage.put_file(odd, move=True)
        assert storage.open(key2).read() == b"second" and not odd.exists()
        outside = tmp_path / "outside.dcm"
        outside.write_bytes(b"imported file")
        key3 = storage.put_file(outside, move=False)  # copied; the source stays
        assert storage.open(key3).read() == b"imported file" and outside.read_bytes() == b"imported file"
        assert len({key, key2, key3}) == 3 and sorted(storage.keys()) == sorted([key, key2, key3])
        for k in (key, key2, key3):  # <UTC day>/<two hex digits>/<uuid>.dcm
            day = k.split("/")[0]
            assert re.fullmatch(r"\d{8}/[0-9a-f]{2}/[0-9a-f]{32}\.dcm", k), k
            assert abs(time.mktime(time.strptime(day, "%Y%m%d")) - time.time()) < 2 * 86400
        assert not list(storage.spool_dir().iterdir())  # no temporary file left behind
    finally:
        storage.close()
