"""``radsight serve`` with more than one HTTP process (``http_workers``), as real processes.

Instances stored through any process are indexed once, reach the worklist and trigger the AI
(the stability trigger lives in the main process); an HTTP process that dies is replaced; all
of them die with the main process (its port is free at once) and stop with it on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import free_port, make_settings

from radsight.archive import Archive
from radsight.datasets.cxr import cxr_to_dicom, pick_chest_xrays, synthetic_patient
from radsight.http_workers import PROCESS_NAME
from radsight.index.models import AIJob, Instance, WorklistStudy

RADSIGHT = Path(sys.executable).with_name("radsight")
AUTH = ("admin", "admin-pass-1")


def _http_children(served: Served) -> list[int]:
    """The server's extra HTTP processes (named by prctl; the AI workers are children too)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if int(rest.split()[1]) == served.proc.pid and name == PROCESS_NAME.decode() and rest.split()[0] != "Z":
                out.append(int(entry.name))
    return sorted(out)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    http_port: int
    home: Path
    db_url: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def _start(tmp_path: Path, db_url: str, *, ai: bool) -> Served:
    home = tmp_path / "home"
    env = {**os.environ, "RADSIGHT_HOME": str(home), "RADSIGHT_DATABASE_URL": db_url, "RADSIGHT_HTTP_WORKERS": "2",
           "RADSIGHT_AI_ENABLED": "true" if ai else "false", "RADSIGHT_AI_STABLE_SECONDS": "1"}
    subprocess.run([str(RADSIGHT), "user", "add", AUTH[0], "--role", "admin", "--password-stdin"],
                   input=AUTH[1] + "\n", text=True, env=env, check=True, capture_output=True, timeout=120)
    http_port = free_port()
    proc = subprocess.Popen([str(RADSIGHT), "serve", "--http-port", str(http_port), "--dicom-port", str(free_port())],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = Served(proc, http_port, home, db_url)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "radsight serve exited"
        try:
            # Both HTTP processes up: the extra one is a spawned child of the server.
            if httpx.get(f"{served.base}/health", timeout=1).status_code == 200 and _http_children(served):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "radsight serve did not start"
        time.sleep(0.2)
    time.sleep(1.0)  # the extra process imports the application after it is spawned
    return served


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Served]:
    s = _start(tmp_path, db_url, ai=False)
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def _stow(base: str, data: bytes) -> int:
    # A new connection per request: the kernel hands connections to the processes, not requests.
    with httpx.Client(auth=AUTH, timeout=60) as c:
        r = c.post(f"{base}/dicomweb/studies", content=data, headers={"Content-Type": "application/dicom"})
        return r.status_code


def _chest_xrays(folder: Path, shared_data: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (jpeg, label) in enumerate(pick_chest_xrays(shared_data / "cxr" / "kermany224" / "train", n)):
        name, pid, birth, sex = synthetic_patient(i)
        path = folder / f"cxr-{i}.dcm"
        cxr_to_dicom(jpeg, path, label=label, patient_id=pid, patient_name=name, birth_date=birth, sex=sex,
                     study_date=date(2024, 3, 1), accession_number=f"MPCXR{i:04d}")
        paths.append(path)
    return paths


def _send_all(base: str, files: list[Path]) -> list[int]:
    codes: list[int] = []
    lock = threading.Lock()
    todo = iter(files)

    def client() -> None:
        while True:
            with lock:
                path = next(todo, None)
            if path is None:
                return
            code = _stow(base, path.read_bytes())
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return codes


def test_both_processes_store_and_every_instance_is_indexed_once(served: Served, shared_data: Path,
                                                                 tmp_path: Path) -> None:
    children = _http_children(served)
    assert len(children) == 1, children  # http_workers=2: the main process and one more
    child = children[0]
    files = _chest_xrays(tmp_path / "cxr", shared_data, 24)
    before = _cpu_ticks(child)
    codes = _send_all(served.base, files + files[:6])  # 6 sent twice: duplicates, whichever process
    assert codes.count(200) == 24 + 6  # a duplicate is reported in the response body, with 200
    # The extra process handled part of the load (it is idle otherwise: ~10 ms per STOW-RS).
    assert _cpu_ticks(child) - before >= 5
    archive = Archive.open(make_settings(served.home, served.db_url), migrate=False)
    try:
        with archive.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Instance)) == 24
            # The worklist rows come from each process's own ingest listener.
            assert s.scalar(select(func.count()).select_from(WorklistStudy)) == 24
    finally:
        archive.close()
    r = httpx.get(f"{served.base}/dicomweb/studies", params={"limit": 100}, auth=AUTH)
    assert r.status_code == 200 and len(r.json()) == 24


def test_a_dead_http_process_is_replaced_and_all_die_with_the_main_process(served: Served) -> None:
    [child] = _http_children(served)
    spool = served.home / "storage" / "tmp"
    deadline = time.monotonic() + 30
    while len(folders_before := {p.name for p in spool.glob("proc-*") if p.is_dir()}) != 2:
        assert time.monotonic() < deadline, folders_before  # the main process's and the child's
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = _http_children(served)
        if now and now != [child]:
            break
        assert time.monotonic() < deadline, "the killed HTTP process was not replaced"
        time.sleep(0.2)
    [replacement] = now
    for _ in range(10):  # answered throughout
        assert httpx.get(f"{served.base}/dicomweb/studies", auth=AUTH).status_code in (200, 204)
    # The dead process's spool folder is removed (each open storage has one, locked while open);
    # the main process's stays.
    deadline = time.monotonic() + 10
    while len(folders_before & {p.name for p in spool.glob("proc-*") if p.is_dir()}) != 1:
        assert time.monotonic() < deadline, sorted(p.name for p in spool.iterdir())
        time.sleep(0.2)
    served.proc.kill()
    served.proc.wait(10)
    deadline = time.monotonic() + 5
    while _alive(replacement) or not _port_free(served.http_port):
        assert time.monotonic() < deadline, "an HTTP process outlived the killed server (or kept its port)"
        time.sleep(0.05)


def test_sigterm_stops_every_process_cleanly(served: Served) -> None:
    [child] = _http_children(served)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0
    assert not _alive(child)
    assert _port_free(served.http_port)


def test_instances_stored_by_any_process_trigger_the_ai(tmp_path: Path, db_url: str, shared_data: Path) -> None:
    """The shipped chest X-ray model runs on every study, whichever process received it."""
    served = _start(tmp_path, db_url, ai=True)
    try:
        [child] = _http_children(served)
        files = _chest_xrays(tmp_path / "cxr", shared_data, 8)
        before = _cpu_ticks(child)
        assert _send_all(served.base, files).count(200) == 8
        assert _cpu_ticks(child) - before >= 2  # it received some of them
        archive = Archive.open(make_settings(served.home, served.db_url), migrate=False)
        try:
            deadline = time.monotonic() + 120
            while True:
                with archive.db.session() as s:
                    done = s.execute(select(AIJob.study_instance_uid).where(AIJob.state == "done")).scalars().all()
                if len(set(done)) == 8:
                    break
                assert time.monotonic() < deadline, f"AI jobs done for {len(set(done))} of 8 studies"
                time.sleep(0.5)
        finally:
            archive.close()
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=60) == 0


def test_http_port_in_use_ends_the_start_cleanly(tmp_path: Path, db_url: str) -> None:
    """The socket is bound before any HTTP process starts: a port in use is reported, the exit
    status is uvicorn's start-up failure (3) and the DICOM listener, already started, is
    stopped (its port free)."""
    env = {**os.environ, "RADSIGHT_HOME": str(tmp_path / "home"), "RADSIGHT_DATABASE_URL": db_url,
           "RADSIGHT_HTTP_WORKERS": "2", "RADSIGHT_AI_ENABLED": "false"}
    dicom_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http_port = taken.getsockname()[1]
        r = subprocess.run([str(RADSIGHT), "serve", "--http-port", str(http_port), "--dicom-port", str(dicom_port)],
                           env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "address already in use" in r.stderr.lower() and "radsight.server: stopped" in r.stderr
    assert _port_free(dicom_port)
