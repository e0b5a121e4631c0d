#!/usr/bin/env python3
"""Archive benchmark: RadSight against Orthanc on the same machine and the same files.

Run from the repository root::

    .venv/bin/python bench/archive.py            # full run (about 10 minutes on 2 cores)
    .venv/bin/python bench/archive.py --quick    # smoke run (small N, about 1-2 minutes)

Both servers are started here, each in its own temporary directory, on free ports:

- Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``): its own configuration file, SQLite
  index and file storage, ``StorageCompression: false``, DICOMweb plugin enabled,
  HTTP Basic authentication enabled with one registered user, any calling AE accepted
  for C-STORE; every other setting at Orthanc's default.
- RadSight: ``radsight serve`` with a fresh home (SQLite index and file storage),
  ``RADSIGHT_ALLOW_ANY_CALLING_AE=true`` and one admin user, HTTP Basic authentication.

Measured, for both servers in the same run (servers alternate, A-B-B-A, to cancel drift):

1. STOW-RS ingest, instances/s, 4 parallel HTTP clients; one instance per request and
   batches of 10 instances per request.
2. C-STORE ingest, instances/s, dcmtk ``storescu`` sending a folder in one association.
3. QIDO-RS study search latency p50/p95 over a fixed query mix, on 10,000+ studies.
4. WADO-RS series retrieval, MB/s, as stored (``transfer-syntax=*``), repeated.

Instances are generated before any timing from real files in the shared data
(``RADSIGHT_SHARED_DATA``, default ``../shared/data``): UIDs (and for the search set the
patient and study attributes) are rewritten with pydicom so that every instance is unique.

Results: ``bench/results/archive-<timestamp>.json`` and a Markdown table on stdout
(pasted into ``docs/benchmarks.md``). Timing thresholds never go into the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.dataset import Dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RADSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS_DIR = REPO / "bench" / "results"
VENV_BIN = Path(sys.executable).parent
USER = "bench"
PASSWORD = "bench-password-1"
CLIENTS = 4
SCU_AET = "BENCHSCU"
DICOM_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


# --------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    stow_single: int  # instances STOWed one per request (per server)
    stow_batch: int  # instances STOWed 10 per request (per server)
    batch_size: int
    cstore: int  # instances sent with storescu (per server)
    qido_studies: int  # studies in the search set (each one tiny instance)
    qido_queries: int  # timed queries per server
    wado_large: int  # instances in the large WADO series
    wado_repeats: int  # retrievals of each series per server


# STOW-RS sets: each server's half of a set is timed alone, and halves of 400-800 instances
# took about a second, too short a window on a shared 2-core machine (one half moved between
# 270 and 392 instances/s in one run); 1,200-2,000 instances per half take 3-5 s.
FULL = Plan(stow_single=2400, stow_batch=4000, batch_size=10, cstore=600, qido_studies=10000,
            qido_queries=300, wado_large=100, wado_repeats=8)
QUICK = Plan(stow_single=80, stow_batch=160, batch_size=10, cstore=80, qido_studies=400,
             qido_queries=42, wado_large=20, wado_repeats=2)


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port(avoid: set[int]) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            avoid.add(port)
            return port
    raise RuntimeError("no free port")


# --------------------------------------------------------------------------------------
# data generation (before any timing)
# --------------------------------------------------------------------------------------
_uid_counter = 0
_uid_lock = threading.Lock()
_UID_ROOT = f"2.25.{uuid.uuid4().int >> 64}"


def new_uid() -> str:
    """A unique UID for this run, always 64 characters: 2.25.<random>.1<zero-padded counter>."""
    global _uid_counter
    with _uid_lock:
        _uid_counter += 1
        width = 64 - len(_UID_ROOT) - 2
        return f"{_UID_ROOT}.1{_uid_counter:0{width}d}"


class Template:
    """A real file written once with fixed-length placeholders in chosen attributes.

    Each copy is that file with the placeholders replaced byte for byte in the header (the
    bytes before Pixel Data): value lengths do not change, so no re-encoding is needed and
    ten thousand files take a second. Text values are padded with spaces, UIDs with NULs.
    """

    def __init__(self, ds: Dataset, lengths: dict[str, int]) -> None:
        ds = copy.deepcopy(ds)
        self.lengths = lengths
        self.placeholders: dict[str, bytes] = {}
        for i, (keyword, length) in enumerate(lengths.items()):
            if length % 2:
                raise ValueError(f"{keyword}: placeholder length must be even")
            vr = pydicom.datadict.dictionary_VR(keyword)
            if vr == "UI":
                head = f"9.{i + 1}."
                ph = head + "9" * (length - len(head))
            elif vr == "DA":
                ph = f"18{i + 10:02d}0101"
            elif vr == "TM":
                ph = f"01{i + 10:02d}01"
            elif length == 2:
                ph = "Q" + chr(ord("A") + i)
            else:
                ph = (f"Q{i:02d}Q" + "Z" * length)[:length]
            if len(ph) != length:
                raise ValueError(f"{keyword}: {vr} placeholders are {len(ph)} characters, not {length}")
            setattr(ds, keyword, ph)
            self.placeholders[keyword] = ph.encode()
        if "SOPInstanceUID" in lengths:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
        cut = data.find(b"\xe0\x7f\x10\x00")  # Pixel Data (7FE0,0010), little endian
        cut = len(data) if cut < 0 else cut
        self.header, self.tail = data[:cut], data[cut:]
        for keyword, placeholder in self.placeholders.items():
            want = 2 if keyword == "SOPInstanceUID" else 1
            if self.header.count(placeholder) != want:
                raise ValueError(f"placeholder for {keyword} found {self.header.count(placeholder)} times, "
                                 f"not {want}")

    def render(self, **values: str) -> bytes:
        header = self.header
        for keyword, value in values.items():
            length = self.lengths[keyword]
            raw = value.encode("ascii")
            if len(raw) > length:
                raise ValueError(f"{keyword}={value!r} longer than {length}")
            pad = b"\0" if pydicom.datadict.dictionary_VR(keyword) == "UI" else b" "
            header = header.replace(self.placeholders[keyword], raw.ljust(length, pad))
        return header + self.tail


def ingest_templates() -> list[list[Path]]:
    """Real series used as templates for the ingest sets (each list: one series)."""
    d = SHARED / "dicom"
    groups = [
        sorted((d / "dcmqi" / "segmentations" / "23x38x3" / "image").glob("*.dcm")),  # CT, 3 KB
        sorted((d / "dcmqi" / "segmentations" / "24x38x3" / "image").glob("*.dcm")),  # CT, 3 KB
        sorted((d / "dcmqi" / "paramaps" / "701-ADCb500").glob("*.dcm")),  # MR 256x256, 133 KB
        sorted((SHARED / "ct" / "totalsegmentator" / "example_ct_dicom").glob("CT*")),  # CT J2K, ~150 KB
        sorted((d / "dcmqi" / "segmentations" / "ct-3slice").glob("*.dcm")),  # CT 512x512, 526 KB
        [d / "wg04" / "REF" / n for n in ("CT1_UNC", "CT2_UNC", "MR1_UNC", "MR3_UNC", "MR4_UNC")],  # 530 KB
    ]
    groups = [[p for p in g if p.is_file()] for g in groups]
    groups = [g for g in groups if g]
    if not groups:
        raise SystemExit(f"no template DICOM files under {SHARED} (set RADSIGHT_SHARED_DATA)")
    return groups


def _read(path: Path) -> Dataset:
    ds = pydicom.dcmread(path)
    # Some real files (the Siemens CT) have an empty SOP Class UID but a correct file meta;
    # the generated sets are about speed, not that edge case, so make them consistent.
    if not str(ds.get("SOPClassUID", "") or ""):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    return ds


def _save(ds: Dataset, path: Path) -> int:
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


_UIDS = {"StudyInstanceUID": 64, "SeriesInstanceUID": 64, "SOPInstanceUID": 64}


def make_ingest_set(out: Path, n: int, seed: int, patient_prefix: str) -> tuple[list[Path], int]:
    """``n`` unique instances cycling over the template series (one new study and series per pass)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    groups = ingest_templates()
    templates: dict[Path, Template] = {}
    paths: list[Path] = []
    total = 0
    g = 0
    while len(paths) < n:
        group = groups[g % len(groups)]
        g += 1
        study, series = new_uid(), new_uid()
        pid = f"{patient_prefix}{g:05d}"
        name = f"BENCH^{patient_prefix}{rng.randrange(10**6):06d}"
        for src in group:
            if len(paths) >= n:
                break
            if src not in templates:
                templates[src] = Template(_read(src), {**_UIDS, "PatientID": 16, "PatientName": 24})
            data = templates[src].render(StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=new_uid(),
                                         PatientID=pid, PatientName=name)
            path = out / f"{len(paths):06d}.dcm"
            path.write_bytes(data)
            total += len(data)
            paths.append(path)
    return paths, total


LAST_NAMES = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
              "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE",
              "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ",
              "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN",
              "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL", "RIVERA", "CAMPBELL", "MITCHELL",
              "CARTER", "ROBERTS", "MULLER", "SCHMIDT", "DUBOIS", "ROSSI", "JANSSENS", "PEETERS", "KOWALSKI",
              "NOVAK", "HORVATH", "SILVA"]
FIRST_NAMES = ["JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID",
               "ELIZABETH", "WILLIAM", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS", "SARAH",
               "CHARLES", "KAREN", "ANNA", "PIERRE", "MARIE", "LUCA", "SOFIA", "HANS", "EMMA", "OLIVER",
               "NOAH", "ZOE"]
MODALITIES = ["CT"] * 30 + ["MR"] * 20 + ["CR"] * 15 + ["DX"] * 10 + ["US"] * 10 + ["MG"] * 7 + ["PT"] * 4 + ["NM"] * 4
DATE0 = date(2019, 1, 1)
DAYS = 5 * 365


@dataclass
class SearchSet:
    paths: list[Path]
    patients: list[tuple[str, str]]  # (PatientID, PatientName)
    accessions: list[str]
    bytes: int


def make_search_set(out: Path, n_studies: int, seed: int) -> SearchSet:
    """``n_studies`` studies of one tiny real CT instance each, with varied patient/study attributes."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    src = _read(SHARED / "dicom" / "dcmqi" / "segmentations" / "23x38x3" / "image" / "IMG0001.dcm")
    template = Template(src, {**_UIDS, "PatientID": 10, "PatientName": 40, "PatientSex": 2, "PatientBirthDate": 8,
                              "StudyDate": 8, "SeriesDate": 8, "ContentDate": 8, "StudyTime": 6, "SeriesTime": 6,
                              "AccessionNumber": 12, "Modality": 2, "StudyDescription": 32, "StudyID": 6})
    n_patients = max(1, n_studies // 4)
    patients = [(f"PID{i:06d}", f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}") for i in range(n_patients)]
    paths: list[Path] = []
    accessions: list[str] = []
    total = 0
    for i in range(n_studies):
        pid, name = patients[rng.randrange(n_patients)] if i >= n_patients else patients[i]
        number = int(pid[3:])
        day = (DATE0 + timedelta(days=rng.randrange(DAYS))).strftime("%Y%m%d")
        tm = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        modality = rng.choice(MODALITIES)
        accession = f"ACC{i:08d}"
        data = template.render(
            StudyInstanceUID=new_uid(), SeriesInstanceUID=new_uid(), SOPInstanceUID=new_uid(),
            PatientID=pid, PatientName=name, PatientSex="MF"[number % 2],
            PatientBirthDate=(date(1930, 1, 1) + timedelta(days=number * 7 % 25000)).strftime("%Y%m%d"),
            StudyDate=day, SeriesDate=day, ContentDate=day, StudyTime=tm, SeriesTime=tm,
            AccessionNumber=accession, Modality=modality, StudyDescription=f"{modality} BENCH STUDY {i % 37}",
            StudyID=str(i % 10000))
        path = out / f"{i:06d}.dcm"
        path.write_bytes(data)
        total += len(data)
        paths.append(path)
        accessions.append(accession)
    return SearchSet(paths, patients, accessions, total)


@dataclass
class SeriesRef:
    name: str
    paths: list[Path]
    study_uid: str
    series_uid: str
    bytes: int


def make_wado_series(out: Path, n_large: int) -> list[SeriesRef]:
    """The real 20-slice CT (JPEG 2000 lossless) and a series of ``n_large`` 512x512 uncompressed CT instances.

    The real CT's files have an empty SOP Class UID that Orthanc refuses over STOW-RS, so both
    series are copies with the SOP Class UID taken from the file meta and new UIDs; pixel data
    and every other attribute are unchanged.
    """
    out.mkdir(parents=True, exist_ok=True)
    refs: list[SeriesRef] = []
    ct = sorted((SHARED / "ct" / "totalsegmentator" / "example_ct_dicom").glob("CT*"))
    srcs = sorted((SHARED / "dicom" / "dcmqi" / "segmentations" / "ct-3slice").glob("*.dcm"))
    srcs += [p for p in (SHARED / "dicom" / "wg04" / "REF" / n for n in ("CT1_UNC", "CT2_UNC")) if p.is_file()]
    for name, files, n in ((f"CT {len(ct)}x512x512 J2K lossless", ct, len(ct)),
                           (f"CT {n_large}x512x512 uncompressed", srcs, n_large)):
        if not files or not n:
            continue
        folder = out / f"series{len(refs)}"
        folder.mkdir()
        study, series = new_uid(), new_uid()
        cache: dict[Path, Dataset] = {}
        paths, total = [], 0
        for i in range(n):
            src = files[i % len(files)]
            if src not in cache:
                cache[src] = _read(src)
            ds = cache[src]
            ds.PatientID, ds.PatientName = "BENCHWADO", "BENCH^WADO"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, new_uid()
            ds.InstanceNumber = i + 1
            path = folder / f"{i:04d}.dcm"
            total += _save(ds, path)
            paths.append(path)
        refs.append(SeriesRef(name, paths, study, series, total))
    return refs


# --------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    base_url: str
    dicomweb: str  # DICOMweb root URL, no trailing slash
    dicom_port: int
    aet: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    version: str = ""
    count_instances: Callable[[], int] = field(default=lambda: -1)

    def cpu_seconds(self) -> float:
        """CPU time of the server process (and children, e.g. under py-spy) so far."""
        return process_tree_cpu(self.proc.pid) if self.proc is not None else float("nan")

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(auth=(USER, PASSWORD), timeout=timeout)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        log(f"stopping {self.name} (pid {proc.pid})")
        proc.send_signal(signal.SIGINT if self.name == "RadSight" else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop in 20 s: killing")
            proc.kill()
            proc.wait(timeout=10)


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo, seen = [pid], set[int]()
    while todo and len(seen) < 1000:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def _wait_healthy(server: Server, url: str, auth: bool, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; see {server.log_path}")
        try:
            r = httpx.get(url, auth=(USER, PASSWORD) if auth else None, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not healthy after {timeout:.0f} s ({last}); see {server.log_path}")


def wait_settled(server: Server, timeout: float = 90.0, busy: float = 0.05) -> float:
    """Wait until the server's process tree uses under ``busy`` of a core over a second, so that
    start-up work (RadSight: the AI worker processes loading their models; Orthanc: its plugins)
    does not land in the first timed round. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c0 = server.cpu_seconds()
        time.sleep(1.0)
        if server.cpu_seconds() - c0 < busy:
            break
    return time.monotonic() - t0


def orthanc_plugin() -> str:
    for cand in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",):
        if Path(cand).is_file():
            return cand
    out = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if re.search(r"libOrthancDicomWeb\.so", line) and Path(line).is_file():
            return line
    raise SystemExit("Orthanc DICOMweb plugin not found (apt-get install orthanc-dicomweb)")


def start_orthanc(work: Path, ports: set[int]) -> Server:
    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(orthanc).exists():
        raise SystemExit("Orthanc not found (apt-get install orthanc orthanc-dicomweb)")
    work.mkdir(parents=True)
    http_port, dicom_port = free_port(ports), free_port(ports)
    config = {
        "Name": "bench-orthanc",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "StorageCompression": False,
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomAlwaysAllowStore": True,  # any calling AE may C-STORE (as RadSight here)
        "DicomCheckCalledAet": False,
        "Plugins": [orthanc_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    cfg = work / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    server = Server("Orthanc", f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{http_port}/dicom-web",
                    dicom_port, "ORTHANC", work, log_path=work / "orthanc.log")

    def count() -> int:
        r = httpx.get(f"{server.base_url}/statistics", auth=(USER, PASSWORD), timeout=60)
        r.raise_for_status()
        return int(r.json()["CountInstances"])

    server.count_instances = count
    with open(server.log_path, "wb") as fh:  # type: ignore[arg-type]
        server.proc = subprocess.Popen([orthanc, str(cfg)], stdout=fh, stderr=subprocess.STDOUT, cwd=work)
    _wait_healthy(server, f"{server.base_url}/system", auth=True)
    system = httpx.get(f"{server.base_url}/system", auth=(USER, PASSWORD), timeout=10).json()
    plugin = httpx.get(f"{server.base_url}/plugins/dicom-web", auth=(USER, PASSWORD), timeout=10).json()
    server.version = f"Orthanc {system.get('Version')}, DICOMweb plugin {plugin.get('Version')}"
    return server


def radsight_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return sha + ("+dirty-src" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_radsight(work: Path, ports: set[int], profile: Path | None, profile_wall: bool = True) -> Server:
    radsight = VENV_BIN / "radsight"
    if not radsight.exists():
        raise SystemExit(f"{radsight} not found (make setup)")
    home = work / "home"
    work.mkdir(parents=True)
    http_port, dicom_port = free_port(ports), free_port(ports)
    env = {**os.environ, "RADSIGHT_ALLOW_ANY_CALLING_AE": "true", "RADSIGHT_HOME": str(home)}
    env.pop("RADSIGHT_CONFIG", None)
    env.pop("RADSIGHT_DATABASE_URL", None)
    subprocess.run([str(radsight), "user", "add", USER, "--role", "admin", "--password-stdin", "--home", str(home)],
                   input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True, timeout=120)
    server = Server("RadSight", f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{http_port}/dicomweb",
                    dicom_port, "RADSIGHT", work, log_path=work / "radsight.log")

    def count() -> int:
        db = home / "index.sqlite"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
            return int(c.execute("SELECT COUNT(*) FROM instance").fetchone()[0])

    server.count_instances = count
    cmd = [str(radsight), "serve", "--home", str(home), "--http-port", str(http_port), "--dicom-port",
           str(dicom_port), "--ae-title", "RADSIGHT"]
    if profile is not None:
        fmt_ = {".svg": "flamegraph", ".json": "speedscope"}.get(profile.suffix, "raw")
        idle = ["--idle"] if profile_wall else []
        # --subprocesses: serve's extra HTTP processes and AI workers too
        cmd = [str(VENV_BIN / "py-spy"), "record", *idle, "--threads", "--subprocesses", "--rate", "100",
               "--format", fmt_, "-o", str(profile), "--", *cmd]
    with open(server.log_path, "wb") as fh:  # type: ignore[arg-type]
        server.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=work)
    _wait_healthy(server, f"{server.base_url}/health", auth=False)
    server.version = f"RadSight {radsight_commit()}"
    return server


# --------------------------------------------------------------------------------------
# DICOMweb helpers
# --------------------------------------------------------------------------------------
def multipart(parts: Sequence[bytes]) -> tuple[bytes, str]:
    boundary = f"bench{uuid.uuid4().hex}"
    b = boundary.encode()
    chunks: list[bytes] = []
    for data in parts:
        chunks += [b"--", b, b"\r\nContent-Type: application/dicom\r\n\r\n", data, b"\r\n"]
    chunks += [b"--", b, b"--\r\n"]
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def stow_counts(r: httpx.Response) -> tuple[int, int]:
    """(stored, failed) from a STOW-RS response (PS3.18 Table 10.5.3-1, JSON)."""
    try:
        body = r.json()
    except ValueError:
        return 0, 0
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        return 0, 0
    ok = len((body.get("00081199") or {}).get("Value") or [])
    failed = len((body.get("00081198") or {}).get("Value") or [])
    return ok, failed


@dataclass
class StowRun:
    instances: int
    seconds: float
    stored: int
    failed: int
    errors: list[str]


def stow(server: Server, files: Sequence[Path], per_request: int, clients: int = CLIENTS) -> StowRun:
    """POST ``files`` in requests of ``per_request`` instances from ``clients`` threads; bodies built first."""
    bodies = [multipart([p.read_bytes() for p in files[i:i + per_request]])
              for i in range(0, len(files), per_request)]
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    stored = failed = 0
    errors: list[str] = []

    def worker() -> None:
        nonlocal stored, failed
        with server.client() as c:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                body, ctype = bodies[i]
                try:
                    r = c.post(f"{server.dicomweb}/studies", content=body,
                               headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
                    ok, bad = stow_counts(r)
                    with lock:
                        stored += ok
                        failed += bad
                        if r.status_code not in (200, 202) and len(errors) < 5:
                            errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    with lock:
                        if len(errors) < 5:
                            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    seconds = time.perf_counter() - t0
    return StowRun(len(files), seconds, stored, failed, errors)


def stow_all(server: Server, files: Sequence[Path], per_request: int = 50) -> StowRun:
    """Untimed bulk load (checked): STOW-RS in batches, 4 clients."""
    return stow(server, files, per_request)


# --------------------------------------------------------------------------------------
# benchmarks
# --------------------------------------------------------------------------------------
def abba(servers: Sequence[Server]) -> list[tuple[int, Server]]:
    """Round order A B B A: (half index, server); each server gets both halves."""
    a, b = servers
    return [(0, a), (0, b), (1, b), (1, a)]


def bench_stow(servers: Sequence[Server], files: Sequence[Path], per_request: int) -> dict[str, Any]:
    halves = [files[: len(files) // 2], files[len(files) // 2:]]
    # The same files go to both servers (each its own archive); halves alternate A B B A.
    per: dict[str, dict[str, Any]] = {s.name: {"instances": 0, "seconds": 0.0, "stored": 0, "failed": 0,
                                               "errors": []} for s in servers}
    for half, server in abba(servers):
        before = server.count_instances()
        cpu0 = server.cpu_seconds()
        run = stow(server, halves[half], per_request)
        cpu = server.cpu_seconds() - cpu0
        after = server.count_instances()
        p = per[server.name]
        p["server_cpu_s"] = p.get("server_cpu_s", 0.0) + cpu
        p["instances"] += run.instances
        p["seconds"] += run.seconds
        p["stored"] += run.stored
        p["failed"] += run.failed
        p["indexed"] = p.get("indexed", 0) + (after - before)
        p["errors"] += run.errors
        log(f"  STOW x{per_request} {server.name}: {run.instances} in {run.seconds:.1f} s "
            f"= {run.instances / run.seconds:.1f}/s (stored {run.stored}, failed {run.failed}, "
            f"indexed {after - before}){' ERR ' + run.errors[0] if run.errors else ''}")
    for p in per.values():
        p["server_cpu_ms_per_instance"] = 1000 * p["server_cpu_s"] / max(1, p["instances"])
        complete = p["indexed"] == p["instances"] and not p["errors"]
        p["valid"] = complete
        p["value"] = p["instances"] / p["seconds"] if complete and p["seconds"] > 0 else None
    return per


def bench_cstore(servers: Sequence[Server], dirs: Sequence[Path], associations: int = 1) -> dict[str, Any]:
    """storescu on each half (A-B-B-A); ``associations`` storescu processes at once, one per sub-folder."""
    storescu = shutil.which("storescu")
    if storescu is None:
        return {s.name: {"value": None, "errors": ["storescu not found (apt-get install dcmtk)"]} for s in servers}
    per: dict[str, dict[str, Any]] = {s.name: {"instances": 0, "seconds": 0.0, "indexed": 0, "errors": []}
                                      for s in servers}
    for half, server in abba(servers):
        subs = sorted(d for d in dirs[half].iterdir() if d.is_dir())
        folders = [dirs[half]] if associations == 1 else subs[:associations]
        files = sum(1 for f in folders for p in f.rglob("*") if p.is_file())
        before = server.count_instances()
        cpu0 = server.cpu_seconds()
        t0 = time.perf_counter()
        # TCP_NODELAY=1: dcmtk then disables Nagle's algorithm on its socket; the same client
        # settings for both servers.
        procs = [subprocess.Popen([storescu, "-aet", SCU_AET, "-aec", server.aet, "+sd", "+r", "-R", "-xv", "-nh",
                                   "127.0.0.1", str(server.dicom_port), str(folder)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "TCP_NODELAY": "1"}) for folder in folders]
        outputs = []
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=1800)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate(timeout=30)
            outputs.append((proc.returncode, out or ""))
        seconds = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
        after = server.count_instances()
        p = per[server.name]
        p["server_cpu_s"] = p.get("server_cpu_s", 0.0) + cpu
        p["instances"] += files
        p["seconds"] += seconds
        p["indexed"] += after - before
        bad = [(rc, out) for rc, out in outputs if rc != 0]
        if bad or after - before != files:
            rc, out = bad[0] if bad else outputs[0]
            p["errors"].append(f"storescu rc={rc}, indexed {after - before}/{files}: {out[-300:]}")
        log(f"  C-STORE x{len(folders)} {server.name}: {files} in {seconds:.1f} s = {files / seconds:.1f}/s "
            f"(indexed {after - before})")
    for p in per.values():
        p["server_cpu_ms_per_instance"] = 1000 * p["server_cpu_s"] / max(1, p["instances"])
        p["valid"] = p["indexed"] == p["instances"] and not p["errors"]
        p["value"] = p["instances"] / p["seconds"] if p["valid"] else None
    return per


def make_queries(search: SearchSet, n: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    """A fixed, seeded mix of study-level queries: (kind, params)."""
    rng = random.Random(seed)
    kinds = ["PatientName wildcard", "PatientID exact", "AccessionNumber exact", "StudyDate range (10 days)",
             "ModalitiesInStudy + 30-day range", "paging limit=25 offset", "no filter limit=100"]
    out: list[tuple[str, dict[str, str]]] = []
    n_studies = len(search.paths)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "PatientName wildcard":
            name = rng.choice(search.patients)[1]
            last, first = name.split("^")
            q = {"PatientName": f"{last}^{first[0]}*"}
        elif kind == "PatientID exact":
            q = {"PatientID": rng.choice(search.patients)[0]}
        elif kind == "AccessionNumber exact":
            q = {"AccessionNumber": rng.choice(search.accessions)}
        elif kind == "StudyDate range (10 days)":
            d0 = DATE0 + timedelta(days=rng.randrange(DAYS - 10))
            q = {"StudyDate": f"{d0:%Y%m%d}-{d0 + timedelta(days=9):%Y%m%d}"}
        elif kind == "ModalitiesInStudy + 30-day range":
            d0 = DATE0 + timedelta(days=rng.randrange(DAYS - 30))
            q = {"ModalitiesInStudy": rng.choice(["CT", "MR", "CR", "US"]),
                 "StudyDate": f"{d0:%Y%m%d}-{d0 + timedelta(days=29):%Y%m%d}"}
        elif kind == "paging limit=25 offset":
            q = {"limit": "25", "offset": str(25 * rng.randrange(max(1, n_studies // 25)))}
        else:
            q = {"limit": "100"}
        out.append((kind, q))
    return out


_RAW_QUERY_VALUE = re.compile(r"^[A-Za-z0-9^*.\-]*$")


def query_url(root: str, params: dict[str, str]) -> str:
    """``root/studies?...`` with ``^`` and ``*`` sent literally, not percent-encoded.

    Orthanc 1.10.1 with DICOMweb plugin 1.7 does not percent-decode QIDO-RS query values
    (``PatientName=SMITH%5EJ%2A`` matches nothing, ``PatientName=SMITH^J*`` matches), so
    both servers get the literal characters; other characters are percent-encoded.
    """
    parts = []
    for k, v in params.items():
        parts.append(f"{k}={v if _RAW_QUERY_VALUE.match(v) else urllib.parse.quote(v, safe='')}")
    return f"{root}/studies?{'&'.join(parts)}"


def percentile(values: Sequence[float], pct: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def bench_qido(servers: Sequence[Server], queries: Sequence[tuple[str, dict[str, str]]]) -> dict[str, Any]:
    """Queries run one at a time, alternating servers query by query; latencies in ms."""
    lat: dict[str, list[float]] = {s.name: [] for s in servers}
    by_kind: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}
    counts: dict[str, list[int]] = {s.name: [] for s in servers}
    errors: dict[str, list[str]] = {s.name: [] for s in servers}
    sizes: dict[str, int] = {s.name: 0 for s in servers}
    clients = {s.name: s.client() for s in servers}
    cpu0: dict[str, float] = {}
    try:
        for i, (_kind, q) in enumerate(queries[:10]):  # warm-up (not timed)
            for s in servers:
                with contextlib.suppress(httpx.HTTPError):
                    clients[s.name].get(query_url(s.dicomweb, q), headers={"Accept": "application/dicom+json"})
            if i > 10:
                break
        cpu0 = {s.name: s.cpu_seconds() for s in servers}
        for i, (kind, q) in enumerate(queries):
            order = servers if i % 2 == 0 else list(reversed(servers))
            for s in order:
                t0 = time.perf_counter()
                try:
                    r = clients[s.name].get(query_url(s.dicomweb, q), headers={"Accept": "application/dicom+json"})
                    body = r.content
                    ms = (time.perf_counter() - t0) * 1000
                    sizes[s.name] += len(body)
                    if r.status_code == 200:
                        n = len(json.loads(body)) if body else 0
                    elif r.status_code == 204:
                        n = 0
                    else:
                        if len(errors[s.name]) < 5:
                            errors[s.name].append(f"HTTP {r.status_code} for {q}: {r.text[:200]}")
                        counts[s.name].append(-1)
                        continue
                except (httpx.HTTPError, ValueError) as exc:
                    if len(errors[s.name]) < 5:
                        errors[s.name].append(f"{exc!r} for {q}")
                    counts[s.name].append(-1)
                    continue
                lat[s.name].append(ms)
                by_kind[s.name].setdefault(kind, []).append(ms)
                counts[s.name].append(n)
    finally:
        for c in clients.values():
            c.close()
    cpu = {s.name: s.cpu_seconds() - cpu0.get(s.name, float("nan")) for s in servers}
    a, b = (s.name for s in servers)
    mismatches = [(queries[i][1], counts[a][i], counts[b][i]) for i in range(len(queries))
                  if counts[a][i] != counts[b][i]]
    out: dict[str, Any] = {}
    for s in servers:
        ok = len(lat[s.name]) == len(queries)
        out[s.name] = {
            "queries": len(queries), "answered": len(lat[s.name]), "errors": errors[s.name],
            "p50_ms": percentile(lat[s.name], 50) if ok else None,
            "p95_ms": percentile(lat[s.name], 95) if ok else None,
            "mean_results": statistics.fmean(c for c in counts[s.name] if c >= 0) if ok else None,
            "server_cpu_ms_per_query": 1000 * cpu[s.name] / len(queries),
            "mean_response_kb": sizes[s.name] / len(queries) / 1024,
            "by_kind": {k: {"n": len(v), "p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95)}
                        for k, v in by_kind[s.name].items()},
        }
    out["result_count_mismatches"] = {"count": len(mismatches), "first": [str(m) for m in mismatches[:5]]}
    return out


def fetch_multipart(client: httpx.Client, url: str) -> tuple[int, int, int]:
    """GET ``url`` as multipart DICOM, streamed in 1 MiB chunks: (status, bytes, parts).

    Streaming and counting keeps the client's own work small (building one 50 MB ``bytes``
    costs the client more than the servers' sending on this machine); parts are counted by
    their boundary delimiters, across chunk edges.
    """
    headers = {"Accept": DICOM_ACCEPT, "Accept-Encoding": "identity"}
    with client.stream("GET", url, headers=headers) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, 0, 0
        m = re.search(r'boundary="?([^";]+)"?', r.headers.get("content-type", ""))
        marker = b"\r\n--" + (m.group(1).encode() if m else b"\x00no-boundary\x00")
        total = parts = 0
        tail = b"\r\n"  # the first delimiter has no CRLF before it
        for chunk in r.iter_raw(1 << 20):
            total += len(chunk)
            buf = tail + chunk
            parts += buf.count(marker)
            tail = buf[-(len(marker) - 1):]
        return 200, total, max(0, parts - 1)  # the closing delimiter is not a part


def bench_wado(servers: Sequence[Server], series: SeriesRef, repeats: int) -> dict[str, Any]:
    """Retrieve the whole series ``repeats`` times per server, alternating; MB/s = bytes / time."""
    per: dict[str, dict[str, Any]] = {s.name: {"bytes": 0, "seconds": 0.0, "times": [], "parts": set(),
                                               "errors": []} for s in servers}
    clients = {s.name: s.client(timeout=300) for s in servers}
    cpu0: dict[str, float] = {}
    try:
        for i in range(repeats + 1):
            if i == 1:
                cpu0 = {s.name: s.cpu_seconds() for s in servers}
            order = servers if i % 2 == 0 else list(reversed(servers))
            for s in order:
                url = f"{s.dicomweb}/studies/{series.study_uid}/series/{series.series_uid}"
                t0 = time.perf_counter()
                try:
                    status, size, parts = fetch_multipart(clients[s.name], url)
                except httpx.HTTPError as exc:
                    per[s.name]["errors"].append(repr(exc))
                    continue
                seconds = time.perf_counter() - t0
                if status != 200:
                    if len(per[s.name]["errors"]) < 5:
                        per[s.name]["errors"].append(f"HTTP {status}")
                    continue
                if i == 0:
                    continue
                p = per[s.name]
                p["bytes"] += size
                p["seconds"] += seconds
                p["times"].append(seconds)
                p["parts"].add(parts)
    finally:
        for c in clients.values():
            c.close()
    for s in servers:
        p = per[s.name]
        p["server_cpu_s_per_gb"] = (s.cpu_seconds() - cpu0.get(s.name, float("nan"))) / max(p["bytes"], 1) * 1e9
        p["parts"] = sorted(p["parts"])
        p["valid"] = len(p["times"]) == repeats and p["parts"] == [len(series.paths)]
        if not p["valid"] and not p["errors"]:
            p["errors"].append(f"parts per response {p['parts']}, expected {len(series.paths)}")
        p["value"] = p["bytes"] / p["seconds"] / 1e6 if p["valid"] and p["seconds"] else None
        p["median_s"] = statistics.median(p["times"]) if p["times"] else None
        p["response_mb"] = p["bytes"] / max(1, len(p["times"])) / 1e6
        p["stored_mb"] = series.bytes / 1e6  # response = stored files + multipart framing
    return per


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def ratio_cells(rs: float | None, oc: float | None, higher_is_better: bool) -> tuple[str, str]:
    if rs is None or oc is None or rs <= 0 or oc <= 0:
        return "n/a", "not measured (see errors)"
    ratio = rs / oc
    speed = ratio if higher_is_better else 1 / ratio
    verdict = f"RadSight {speed:.2f}x faster" if speed >= 1 else f"RadSight {1 / speed:.2f}x slower"
    return f"{ratio:.2f}", verdict


def markdown(results: dict[str, Any]) -> str:
    rows: list[tuple[str, float | None, float | None, bool, int]] = []
    r = results["results"]
    plan = results["plan"]
    for key, label in (("stow_single", "STOW-RS ingest, 1 instance/request, 4 clients (inst/s)"),
                       ("stow_batch", f"STOW-RS ingest, {plan['batch_size']} instances/request, 4 clients "
                                      "(inst/s)"),
                       ("cstore", "C-STORE ingest, storescu, 1 association (inst/s)"),
                       ("cstore4", "C-STORE ingest, 4 storescu at once (inst/s)")):
        if key in r:
            rows.append((label, r[key]["RadSight"].get("value"), r[key]["Orthanc"].get("value"), True, 1))
    if "qido" in r:
        q = r["qido"]
        n = results["sets"].get("qido_studies", 0)
        rows.append((f"QIDO-RS studies, {n:,} studies: p50 (ms)", q["RadSight"]["p50_ms"], q["Orthanc"]["p50_ms"],
                     False, 1))
        rows.append((f"QIDO-RS studies, {n:,} studies: p95 (ms)", q["RadSight"]["p95_ms"], q["Orthanc"]["p95_ms"],
                     False, 1))
    for w in r.get("wado", []):
        rows.append((f"WADO-RS series, {w['series']} (MB/s)", w["RadSight"].get("value"),
                     w["Orthanc"].get("value"), True, 1))
    lines = ["| measure | RadSight | Orthanc | RadSight/Orthanc | verdict |", "|---|---:|---:|---:|---|"]
    for label, rs, oc, hib, digits in rows:
        ratio, verdict = ratio_cells(rs, oc, hib)
        lines.append(f"| {label} | {fmt(rs, digits)} | {fmt(oc, digits)} | {ratio} | {verdict} |")
    return "\n".join(lines)


def cpu_table(results: dict[str, Any]) -> str:
    """Server CPU time per unit of work (steadier than wall time on a shared machine)."""
    r = results["results"]
    rows: list[tuple[str, float | None, float | None]] = []
    for key, label in (("stow_single", "STOW-RS 1/request: CPU ms per instance"),
                       ("stow_batch", "STOW-RS 10/request: CPU ms per instance"),
                       ("cstore", "C-STORE 1 association: CPU ms per instance"),
                       ("cstore4", "C-STORE 4 associations: CPU ms per instance")):
        if key in r:
            rows.append((label, r[key]["RadSight"].get("server_cpu_ms_per_instance"),
                         r[key]["Orthanc"].get("server_cpu_ms_per_instance")))
    if "qido" in r:
        rows.append(("QIDO-RS: CPU ms per query", r["qido"]["RadSight"].get("server_cpu_ms_per_query"),
                     r["qido"]["Orthanc"].get("server_cpu_ms_per_query")))
    for w in r.get("wado", []):
        rows.append((f"WADO-RS {w['series']}: CPU s per GB", w["RadSight"].get("server_cpu_s_per_gb"),
                     w["Orthanc"].get("server_cpu_s_per_gb")))
    lines = ["| server CPU (lower is better) | RadSight | Orthanc | RadSight/Orthanc |", "|---|---:|---:|---:|"]
    for label, rs, oc in rows:
        ratio = f"{rs / oc:.2f}" if rs and oc else "n/a"
        lines.append(f"| {label} | {fmt(rs)} | {fmt(oc)} | {ratio} |")
    return "\n".join(lines)


def qido_kind_table(results: dict[str, Any]) -> str:
    q = results["results"].get("qido")
    if not q:
        return ""
    lines = ["| query kind | RadSight p50 / p95 (ms) | Orthanc p50 / p95 (ms) |", "|---|---:|---:|"]
    for kind, v in q["Orthanc"]["by_kind"].items():
        rv = q["RadSight"]["by_kind"].get(kind)
        rs = f"{rv['p50_ms']:.1f} / {rv['p95_ms']:.1f}" if rv else "n/a"
        lines.append(f"| {kind} | {rs} | {v['p50_ms']:.1f} / {v['p95_ms']:.1f} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError):
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024**2:.0f} GiB"
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": [round(x, 2) for x in load]}


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------
def _sigterm(_signo: int, _frame: Any) -> None:
    raise SystemExit(143)


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.set:
        plan = dataclasses.replace(plan, **{k: int(v) for k, _, v in (kv.partition("=") for kv in args.set)})
    only = set(args.only.split(",")) if args.only else {"stow", "cstore", "qido", "wado"}
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/archive.py", *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": plan.__dict__,
        "settings": {
            "clients": CLIENTS,
            "auth": "HTTP Basic on both (Orthanc RegisteredUsers; RadSight user 'bench', role admin)",
            "orthanc": "SQLite index + file storage in a temp dir, StorageCompression false, "
                       "DICOMweb plugin, any calling AE may store, other settings default",
            "radsight": "radsight serve, SQLite index + file storage in a temp home, "
                        "RADSIGHT_ALLOW_ANY_CALLING_AE=true, other settings default",
            "order": "servers alternate A-B-B-A (ingest halves) or request by request (QIDO, WADO)",
        },
        "sets": {},
        "results": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="radsight-bench-", dir=args.tmp))
    servers: list[Server] = []
    try:
        t0 = time.monotonic()
        log(f"generating instances under {tmp} ...")
        data = tmp / "data"
        if "stow" in only:
            single, sb = make_ingest_set(data / "stow1", plan.stow_single, 1, "S")
            batch, bb = make_ingest_set(data / "stow10", plan.stow_batch, 2, "B")
            results["sets"]["stow_single"] = {"instances": len(single), "mean_kb": sb / len(single) / 1024}
            results["sets"]["stow_batch"] = {"instances": len(batch), "mean_kb": bb / len(batch) / 1024}
        if "cstore" in only:
            # Two sets (one association; 4 at once), each split in halves (A-B-B-A) of 4 folders.
            cstore_dirs: dict[str, list[Path]] = {}
            for key, seed in (("cstore", 3), ("cstore4", 6)):
                cs, cb = make_ingest_set(data / key, plan.cstore, seed, key[-1].upper())
                cstore_dirs[key] = [data / f"{key}-a", data / f"{key}-b"]
                for i, p in enumerate(cs):
                    half = cstore_dirs[key][0 if i < len(cs) // 2 else 1]
                    sub = half / str(i * 8 // len(cs) % 4)
                    sub.mkdir(parents=True, exist_ok=True)
                    p.rename(sub / p.name)
            results["sets"]["cstore"] = {"instances": len(cs), "mean_kb": cb / len(cs) / 1024}
        search = None
        if "qido" in only:
            search = make_search_set(data / "search", plan.qido_studies, 4)
            results["sets"]["qido_studies"] = len(search.paths)
            results["sets"]["qido_patients"] = len(search.patients)
        wado_series: list[SeriesRef] = []
        if "wado" in only:
            wado_series = make_wado_series(data / "wado", plan.wado_large)
            results["sets"]["wado"] = [{"series": s.name, "instances": len(s.paths), "mb": s.bytes / 1e6}
                                       for s in wado_series]
        log(f"generated in {time.monotonic() - t0:.0f} s: {json.dumps(results['sets'])}")

        ports: set[int] = set()
        profile = Path(args.profile_radsight).resolve() if args.profile_radsight else None
        log("starting Orthanc and RadSight ...")
        servers.append(start_radsight(tmp / "radsight", ports, profile, args.profile_mode == "wall"))
        servers.append(start_orthanc(tmp / "orthanc", ports))
        results["versions"] = {s.name: s.version for s in servers}
        results["settled_s"] = {s.name: round(wait_settled(s), 1) for s in servers}
        log(f"servers idle after start-up (s waited): {results['settled_s']}")
        # Untimed warm-up: the first requests pay one-off costs (RadSight: scrypt for each new
        # connection's credentials, lazy imports, statement caches, thread-pool threads: ~1 s in
        # all, a fifth of a 400-instance round) that are not the steady rate being compared.
        warm, _ = make_ingest_set(data / "warmup", 24, 7, "W")
        for s in servers:
            warmed = stow(s, warm, 1)
            if warmed.stored != len(warm):
                raise RuntimeError(f"{s.name}: warm-up STOW failed: {warmed.errors[:1]}")
        log(f"versions: {results['versions']}")

        loadavg = results["machine"]["loadavg_by_phase"] = {}
        if "stow" in only:
            loadavg["before_stow"] = round(os.getloadavg()[0], 2)
            log(f"STOW-RS, 1 instance per request, {CLIENTS} clients ...")
            results["results"]["stow_single"] = bench_stow(servers, single, 1)
            log(f"STOW-RS, {plan.batch_size} instances per request, {CLIENTS} clients ...")
            results["results"]["stow_batch"] = bench_stow(servers, batch, plan.batch_size)
        if "cstore" in only:
            loadavg["before_cstore"] = round(os.getloadavg()[0], 2)
            log("C-STORE (storescu, one association per half) ...")
            results["results"]["cstore"] = bench_cstore(servers, cstore_dirs["cstore"], 1)
            log("C-STORE (4 storescu at once, 4 associations per half) ...")
            results["results"]["cstore4"] = bench_cstore(servers, cstore_dirs["cstore4"], 4)
        if "wado" in only:
            loadavg["before_wado"] = round(os.getloadavg()[0], 2)
            results["results"]["wado"] = []
            for ref in wado_series:
                loads: dict[str, Any] = {}
                for s in servers:
                    run_ = stow_all(s, ref.paths, per_request=10)
                    loads[s.name] = {"stored": run_.stored, "failed": run_.failed, "errors": run_.errors}
                log(f"WADO-RS {ref.name}: loaded {loads}")
                repeats = plan.wado_repeats * (3 if ref.bytes < 10e6 else 1)  # small series: more rounds
                w = bench_wado(servers, ref, repeats)
                for s in servers:
                    w[s.name]["load"] = loads[s.name]
                    log(f"  WADO {s.name}: {fmt(w[s.name]['value'])} MB/s, median {w[s.name]['median_s']} s, "
                        f"{w[s.name]['response_mb']:.1f} MB/response {w[s.name]['errors'][:1]}")
                results["results"]["wado"].append({"series": ref.name, **w})
        if search is not None:
            log(f"QIDO: loading {len(search.paths)} studies into both (STOW-RS, 50 per request, 4 clients) ...")
            # Untimed: both servers are loaded at the same time (each with 4 clients) to save wall time.
            loads = {}

            def load(s: Server) -> None:
                before = s.count_instances()
                run_ = stow_all(s, search.paths, per_request=50)
                loads[s.name] = {"seconds_concurrent": round(run_.seconds, 1), "stored": run_.stored,
                                 "indexed": s.count_instances() - before, "errors": run_.errors}
                log(f"  loaded {s.name}: {loads[s.name]}")

            loaders = [threading.Thread(target=load, args=(s,), daemon=True) for s in servers]
            for t in loaders:
                t.start()
            for t in loaders:
                t.join(timeout=3600)
            loadavg["before_qido_queries"] = round(os.getloadavg()[0], 2)
            queries = make_queries(search, plan.qido_queries, 5)
            log(f"QIDO-RS: {len(queries)} queries per server, alternating ...")
            q = bench_qido(servers, queries)
            q["load"] = loads
            results["results"]["qido"] = q
            for s in servers:
                log(f"  QIDO {s.name}: p50 {fmt(q[s.name]['p50_ms'])} ms, p95 {fmt(q[s.name]['p95_ms'])} ms "
                    f"{q[s.name]['errors'][:1]}")
            log(f"  result-count mismatches: {q['result_count_mismatches']}")
        results["duration_s"] = round(time.monotonic() - t0, 1)
    finally:
        for s in reversed(servers):
            try:
                s.stop()
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {s.name}: {exc!r}")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run of a minute or two")
    parser.add_argument("--only", help="comma-separated subset of stow,cstore,qido,wado")
    parser.add_argument("--set", action="append", metavar="FIELD=N",
                        help=f"override a size of the plan ({', '.join(f.name for f in dataclasses.fields(Plan))})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (servers' logs, data)")
    parser.add_argument("--tmp", help="parent of the temporary directory (default: system temp)")
    parser.add_argument("--profile-radsight", metavar="FILE",
                        help="run the RadSight server under py-spy record; FILE.svg: flame graph, "
                             "FILE.json: speedscope, other: collapsed stacks")
    parser.add_argument("--profile-mode", choices=("wall", "cpu"), default="wall",
                        help="wall: include waiting threads (py-spy --idle); cpu: on-CPU samples only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    results = run(args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"archive-{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\n## Archive benchmark {results['date']} ({'quick' if args.quick else 'full'})\n")
    print(f"Command: `{results['command']}`  ")
    m = results["machine"]
    print(f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']}; load average at start "
          f"{m['loadavg_at_start']}, at end {m['loadavg_at_end']}  ")
    print(f"Versions: {', '.join(results.get('versions', {}).values())}  ")
    print(f"Duration: {results.get('duration_s')} s; results: {out.relative_to(REPO)}\n")
    print(markdown(results))
    print("\n" + cpu_table(results))
    kinds = qido_kind_table(results)
    if kinds:
        print("\nQIDO-RS latency by query kind:\n")
        print(kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
