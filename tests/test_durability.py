"""Crash durability: a real ``radsight import`` killed with SIGKILL at random points.

After each kill the archive is opened again (as a restarted process would) and must hold:
every index row has its complete file of the right size, no temporary file is left in
the spool, every file under a storage key is a complete copy of a source file, and every
instance the process acknowledged (``--log-stored`` lines, flushed after the commit) is
indexed. Files stored but not yet indexed when the kill came are orphans, which
``radsight check --repair`` removes (they were never acknowledged).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select
from tests.conftest import free_port, make_settings

from radsight.archive import Archive
from radsight.check import check_archive
from radsight.datasets import nifti_to_ct_series
from radsight.index.models import Instance
from radsight.ingest.importer import import_paths
from radsight.ingest.parse import file_meta_end, parse_file

RADSIGHT = Path(sys.executable).with_name("radsight")


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    folder = tmp_path_factory.mktemp("src")
    nifti_to_ct_series(shared_data / "ct" / "totalsegmentator" / "example_ct.nii.gz", folder / "ct")
    return folder


def _digest(data: bytes) -> str:
    """Digest of the data set (what follows the file meta group): C-STORE writes its own file
    meta, but the data set bytes are stored exactly as sent."""
    return hashlib.sha256(data[file_meta_end(io.BytesIO(data), 132, len(data)):]).hexdigest()


def _import_and_kill(
    home: Path, db_url: str, folder: Path, *, kill_after_stored: int, rng: random.Random
) -> tuple[set[str], int]:
    """Run ``radsight import --log-stored``; SIGKILL it after that many new 'stored' lines (plus a
    random few milliseconds). Returns the acknowledged SOP Instance UIDs and the exit status."""
    env = {**os.environ, "RADSIGHT_HOME": str(home), "RADSIGHT_DATABASE_URL": db_url}
    proc = subprocess.Popen([str(RADSIGHT), "import", "--log-stored", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked: set[str] = set()
    stored = threading.Semaphore(0)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("stored", "duplicate", "overwritten"):
                acked.add(parts[1])
                if parts[0] == "stored":
                    stored.release()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for _ in range(kill_after_stored):
        if not stored.acquire(timeout=60):
            break
    time.sleep(rng.uniform(0, 0.03))
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait(timeout=120)
    reader.join(10)
    return acked, rc


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


class _ServerKill:
    """SIGKILL the server's main process, as a crash would; ``wait`` then also waits for its other
    processes (HTTP, AI workers), which die with it but a few milliseconds later: like systemd,
    which restarts a service only once its whole control group is gone."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.others: list[int] = []

    def __call__(self) -> None:
        self.others = _descendants(self.proc.pid)
        self.proc.kill()

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in self.others):
            assert time.monotonic() < deadline, "a process of the killed server lives on"
            time.sleep(0.05)
        return code


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _assert_restart_consistent(home: Path, db_url: str, acked: set[str], sources: set[str]) -> None:
    archive = Archive.open(make_settings(home, db_url))  # a restart: cleans the spool
    try:
        # The killed server's AI worker processes notice within a second and release their own
        # (empty) spool folders; only then is this archive the only one open.
        deadline = time.monotonic() + 15
        while archive.storage.spool_leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not archive.storage.spool_leftovers(), "temporary files survived the restart"
        report = check_archive(archive)
        assert report.missing_files == [] and report.size_mismatches == []
        with archive.db.session() as s:
            indexed = set(s.scalars(select(Instance.sop_instance_uid)))
        assert acked <= indexed, f"acknowledged but lost: {sorted(acked - indexed)[:3]}"
        # No partly written object under any storage key: each is a complete source file.
        for key in archive.storage.keys():  # noqa: SIM118 (Storage is not a dict)
            path = archive.storage.local_path(key)
            assert path is not None
            assert _digest(path.read_bytes()) in sources, f"{key} is not a complete copy of a source data set"
            parse_file(path)
        # Never-acknowledged orphans (if any) go; no other process has the archive open now.
        check_archive(archive, repair=True, repair_min_age_seconds=0)
        assert check_archive(archive).ok
    finally:
        archive.close()


def test_sigkill_during_import_loses_nothing_acknowledged(tmp_path: Path, db_url: str, source_folder: Path) -> None:
    rng = random.Random(20261127)
    home = tmp_path / "home"
    sources = {_digest(p.read_bytes()) for p in source_folder.rglob("*.dcm")}
    all_acked: set[str] = set()
    kills = 0
    for _round in range(3):
        acked, rc = _import_and_kill(home, db_url, source_folder, kill_after_stored=rng.randint(1, 25), rng=rng)
        if rc == -signal.SIGKILL:
            kills += 1
        all_acked |= acked
        _assert_restart_consistent(home, db_url, acked, sources)
    assert kills >= 2, "the import finished before it could be killed: the test proves nothing"
    # Finally an import that runs to the end: the whole series is there once, and consistent.
    archive = Archive.open(make_settings(home, db_url))
    try:
        summary = import_paths(archive.ingest, [source_folder])
        assert summary.counts["stored"] + summary.counts["duplicate"] == 112
        assert summary.counts["duplicate"] >= len(all_acked) > 0
        report = check_archive(archive)
        assert report.ok and report.instances == report.files == 112
    finally:
        archive.close()


def test_sigkill_of_the_server_during_c_store(tmp_path: Path, db_url: str, source_folder: Path) -> None:
    """``radsight serve`` killed while a C-STORE association sends the series: every instance
    that got a Success response is there after the restart."""
    rng = random.Random(7)
    home = tmp_path / "home"
    files = sorted(source_folder.rglob("*.dcm"))
    dicom_port = free_port()
    env = {**os.environ, "RADSIGHT_HOME": str(home), "RADSIGHT_DATABASE_URL": db_url,
           "RADSIGHT_ALLOW_ANY_CALLING_AE": "true"}
    proc = subprocess.Popen([str(RADSIGHT), "serve", "--http-port", str(free_port()), "--dicom-port", str(dicom_port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ae = AE(ae_title="DURABILITY")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        deadline = time.monotonic() + 60
        while True:
            assoc = ae.associate("127.0.0.1", dicom_port, ae_title="RADSIGHT")
            if assoc.is_established:
                break
            assert proc.poll() is None and time.monotonic() < deadline, "radsight serve did not start"
            time.sleep(0.3)
        kill_at = rng.randint(5, 40)
        acked: set[str] = set()
        kill = _ServerKill(proc)
        for i, path in enumerate(files):
            if i == kill_at:
                threading.Timer(rng.uniform(0, 0.02), kill).start()
            ds = pydicom.dcmread(path)
            try:
                status = assoc.send_c_store(ds)
            except RuntimeError:  # the association went down between two sends
                break
            if status and status.get("Status") == 0:
                acked.add(ds.SOPInstanceUID)
            if not assoc.is_established:
                break
        assoc.abort()
        assert kill.wait() == -signal.SIGKILL
        assert kill_at <= len(acked) < len(files)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    _assert_restart_consistent(home, db_url, acked, {_digest(p.read_bytes()) for p in files})


def test_sigkill_of_the_server_during_concurrent_stow(tmp_path: Path, db_url: str, source_folder: Path) -> None:
    """``radsight serve`` killed while 4 STOW-RS clients send one instance per request (their
    instances share group commits): every instance listed in a response's ReferencedSOPSequence
    is there, with its bytes, after the restart."""
    home = tmp_path / "home"
    files = sorted(source_folder.rglob("*.dcm"))
    http_port = free_port()
    env = {**os.environ, "RADSIGHT_HOME": str(home), "RADSIGHT_DATABASE_URL": db_url}
    subprocess.run([str(RADSIGHT), "user", "add", "stow", "--role", "technologist", "--password-stdin"],
                   input="stow-password\n", text=True, env=env, check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([str(RADSIGHT), "serve", "--http-port", str(http_port), "--dicom-port", str(free_port())],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http_port}/dicomweb/studies"
    kill = _ServerKill(proc)
    acked: set[str] = set()
    lock = threading.Lock()
    todo = iter(files)

    def client() -> None:
        with httpx.Client(auth=("stow", "stow-password"), timeout=30) as c:
            while True:
                with lock:
                    path = next(todo, None)
                if path is None:
                    return
                try:
                    r = c.post(url, content=path.read_bytes(), headers={"Content-Type": "application/dicom"})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    uids = [item["00081155"]["Value"][0] for item in r.json()["00081199"]["Value"]]
                    with lock:
                        acked.update(uids)
                        if len(acked) == 20:  # kill in the middle of the load
                            threading.Timer(random.Random(3).uniform(0, 0.02), kill).start()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "radsight serve did not start"
            time.sleep(0.3)
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert kill.wait() == -signal.SIGKILL
        assert 20 <= len(acked) < len(files)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    _assert_restart_consistent(home, db_url, acked, {_digest(p.read_bytes()) for p in files})
