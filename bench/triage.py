#!/usr/bin/env python
"""Triage benchmark (issue 6): time from arrival to read for studies with a critical finding,
when readers take studies from the top of RadSight's prioritised worklist versus first in,
first out.

A simulated reading shift is replayed, time-compressed (``--scale`` real seconds per simulated
minute), into a real ``radsight serve`` (subprocess, SQLite, fresh home, its worklist
background tasks running), twice with the same arrivals, images, AI outputs and reading times:

- Arrivals: ``--studies`` one-image chest X-ray studies (real images from
  ``shared/data/cxr/kermany224/train``, written as DX by ``radsight.datasets.cxr``) sent by
  STOW-RS as a Poisson stream over ``--hours``. ``--critical`` of them have a critical finding
  (PNEUMONIA images); the rest are NORMAL images; ``--stat`` of those carry a STAT order
  (RequestedProcedurePriority), read from the DICOM by the worklist.
- AI: a job per study through the real job path (``ai_job`` queue, ``WorkerPool``, findings,
  the worklist hook, alerts), in this process like a separate AI worker, with the model's
  output simulated at a stated operating point (``--sensitivity``, ``--specificity``):
  critical studies get a probability >= 0.9 (the package's critical threshold) with the given
  sensitivity, normal ones stay below 0.7 except for the false positives. The inference itself
  takes ``--ai-minutes`` plus the queue.
- Readers: ``--readers`` HTTP clients; each reads one study at a time for a drawn time
  (log-normal, mean ``--read-minutes``): claim, look at the findings, accept them, sign.
  "AI" readers take the top of ``GET /api/worklist?status=unread``; "FIFO" readers take the
  oldest unread study of the same list.
- ``--model cxr-pneumonia``: instead of the simulated operating point, each study's
  probability is the shipped model's output on that study's DICOM pixels (serving's own
  preprocessing and ONNX Runtime, computed before the shift), the worklist levels come from the
  package's own urgency thresholds, and the images come only from the model's validation split
  (patient-grouped, seed 0, 15 %: images it never trained on). The job still takes
  ``--ai-minutes`` of simulated time: running the real job inside the compressed clock would
  count each real second of inference as 5 simulated minutes (the real arrival-to-result
  latency is ``bench/ai.py``'s).
- Both modes run at once (two servers, same schedule), so the machine's load weighs on both alike.
- Reported from ``GET /api/turnaround`` (server timestamps): arrival-to-sign in simulated
  minutes for the truly critical studies (median, p90, mean) and for all the others, per mode,
  and the ratio AI / FIFO.

    .venv/bin/python bench/triage.py            # 300 studies over a 12 h shift, ~4 min
    .venv/bin/python bench/triage.py --quick    # 120 studies over 4.8 h, ~2 min
    .venv/bin/python bench/triage.py --model cxr-pneumonia   # the shipped model decides
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
DATA = Path(os.environ.get("RADSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
CXR = DATA / "cxr" / "kermany224" / "train"
BOUNDARY = "RadSight-Triage-Bench"
MODEL = "sim-cxr-triage"
READER_PASSWORD = "reader-password-1"
_OPEN_LOCK = threading.Lock()


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


@dataclass
class Study:
    index: int
    path: Path
    study_uid: str
    series_uid: str
    critical: bool
    stat: bool
    arrival_minute: float
    read_minutes: float
    probability: float


def plan(args: argparse.Namespace, work: Path) -> list[Study]:
    """The shift: arrivals, images, orders, AI outputs and reading times (seeded, shared by both modes)."""
    from radsight.datasets.cxr import cxr_to_dicom

    rng = random.Random(args.seed)
    if args.model:
        normal, pneumonia = validation_images()
    else:
        normal = sorted((CXR / "NORMAL").glob("*.jp*g"))
        pneumonia = sorted((CXR / "PNEUMONIA").glob("*.jp*g"))
    # Images are shuffled by their own generator, so that the shift (arrivals, orders, AI outputs,
    # reading times) is the same whichever image set (--model or not) it draws from.
    image_rng = random.Random(f"images-{args.seed}")
    image_rng.shuffle(normal)
    image_rng.shuffle(pneumonia)
    rate = args.studies / (args.hours * 60)
    t = 0.0
    sigma = 0.5  # log-normal spread of reading times
    studies: list[Study] = []
    for i in range(args.studies):
        t += rng.expovariate(rate)
        critical = rng.random() < args.critical
        stat = not critical and rng.random() < args.stat
        jpeg = pneumonia[i % len(pneumonia)] if critical else normal[i % len(normal)]
        if critical:
            detected = rng.random() < args.sensitivity
            p = rng.uniform(0.9, 0.999) if detected else rng.uniform(0.3, 0.69)
        else:
            false_positive = rng.random() >= args.specificity
            p = rng.uniform(0.9, 0.99) if false_positive else rng.uniform(0.01, 0.5)
        read = rng.lognormvariate(0, sigma) * args.read_minutes / (2.718281828 ** (sigma**2 / 2))
        path = work / "dicom" / f"{i:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = cxr_to_dicom(
            jpeg,
            path,
            label="PNEUMONIA" if critical else "NORMAL",
            patient_id=f"TRIAGE-{i:04d}",
            accession_number=f"T{i:06d}",
        )
        if stat:
            ds.RequestedProcedurePriority = "STAT"
            ds.save_as(path, enforce_file_format=True)
        studies.append(Study(i, path, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), critical, stat, t, read, p))
    if args.model:
        for st, p in zip(studies, model_probabilities(args.model, [st.path for st in studies]), strict=True):
            st.probability = p
    return studies


def model_probabilities(model: str, paths: list[Path]) -> list[float]:
    """The shipped model's probability for each DICOM file, through serving's preprocessing."""
    import numpy as np

    from radsight.ai.package import load_package
    from radsight.ai.registry import builtin_dir
    from radsight.train import data as datalib
    from radsight.train.evaluate import _run_onnx  # the pipeline's reading of the outputs, batched

    package = load_package(builtin_dir() / model)
    inputs = np.stack([datalib.network_input(datalib.read_grey(p), package.metadata.input) for p in paths])
    probs, _ = _run_onnx(package, inputs)
    return [float(p) for p in probs]


def validation_images() -> tuple[list[Path], list[Path]]:
    """NORMAL and PNEUMONIA images of the shipped model's validation split (see its model card)."""
    from radsight.train import data as datalib

    samples = datalib.discover(CXR, read_dicom_attributes=False)
    targets = datalib.binary_targets(samples, "PNEUMONIA")
    _, val_idx = datalib.split_by_group(samples, targets, val_fraction=0.15, seed=0)
    normal = sorted(samples[i].path for i in val_idx if targets[i] == 0)
    pneumonia = sorted(samples[i].path for i in val_idx if targets[i] == 1)
    return normal, pneumonia


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aging_rules(scale: float) -> list[dict[str, Any]]:
    """In real minutes: a routine study waiting over 240 simulated minutes rises to urgent."""
    return [{"from_level": "routine", "to_level": "urgent", "after_minutes": 240 * scale / 60}]


def _simulated_model(archive: Any) -> Any:
    """A model row without a package: the bench's ``execute`` returns its probabilities."""
    from radsight.index.models import AIModel

    meta = {
        "name": MODEL,
        "version": "1.0",
        "labels": [{"name": "Pneumonia", "urgency": {"critical": 0.9, "urgent": 0.7}}],
    }
    model = AIModel(
        name=MODEL,
        version="1.0",
        task="classification",
        sha256="0" * 64,
        package_dir="",
        metadata_json=json.dumps(meta),
        enabled=True,
        added_at=datetime.now(UTC),
    )
    with archive.db.session() as s:
        s.add(model)
        s.commit()
        s.expunge(model)
    return model


def run_mode(
    mode: str, studies: list[Study], args: argparse.Namespace, work: Path, barrier: threading.Barrier
) -> list[dict[str, Any]]:
    from radsight.ai import jobs, registry
    from radsight.ai.pipeline import FindingData, PipelineResult
    from radsight.ai.worker import WorkerPool
    from radsight.api.auth import add_user
    from radsight.archive import Archive
    from radsight.config import Settings
    from radsight.index.models import AIModel

    home = work / f"home-{mode}"
    env = {k: v for k, v in os.environ.items() if k not in ("RADSIGHT_CONFIG", "RADSIGHT_DATABASE_URL")}
    env |= {
        "RADSIGHT_HOME": str(home),
        "RADSIGHT_AI_ENABLED": "false",  # the AI worker is this process (see module docstring)
        "RADSIGHT_AI_BUILTIN_MODELS": "false",
        "RADSIGHT_WORKLIST_AGING": json.dumps(aging_rules(args.scale)),
    }
    with _OPEN_LOCK:  # Alembic's migration environment is not thread-safe
        archive = Archive.open(
            Settings(home=home, database_url=None, ai_enabled=False, worklist_aging=aging_rules(args.scale))
        )
    readers = [f"reader{i + 1}" for i in range(args.readers)]
    with archive.db.session() as s:
        for name in readers:
            add_user(s, name, READER_PASSWORD, "radiologist")
    if args.model:
        installed = registry.install(archive, registry.builtin_dir() / args.model)
        with archive.db.session() as s:
            model = s.get(AIModel, installed.id)
            assert model is not None
            s.expunge(model)
    else:
        model = _simulated_model(archive)
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "radsight"), "serve", "--http-port", str(port), "--dicom-port", str(free_port())],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=(work / f"serve-{mode}.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    truth = {st.study_uid: st for st in studies}

    threshold = next((lab.get("threshold") for lab in json.loads(model.metadata_json)["labels"]), None) or 0.5

    def execute(_archive: Any, job: Any) -> PipelineResult:
        time.sleep(args.ai_minutes * args.scale)
        p = truth[job.study_instance_uid].probability
        return PipelineResult(findings=[FindingData("Pneumonia", p, p >= threshold)])

    pool = WorkerPool(archive, 1, execute=execute, poll_seconds=0.05)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"radsight serve did not start; see {work / f'serve-{mode}.log'}")
            time.sleep(0.2)
        pool.start()
        arrivals_done = threading.Event()
        barrier.wait()  # both modes replay the shift at the same time: the machine's load hits both
        start = time.monotonic()

        def arrive() -> None:
            with httpx.Client(base_url=base, auth=(readers[0], READER_PASSWORD), timeout=60) as c:
                for st in studies:
                    delay = start + st.arrival_minute * args.scale - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    body = (
                        f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                        + st.path.read_bytes()
                        + f"\r\n--{BOUNDARY}--\r\n".encode()
                    )
                    r = c.post(
                        "/dicomweb/studies",
                        content=body,
                        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
                    )
                    r.raise_for_status()
                    with archive.db.session() as s:
                        jobs.enqueue(
                            s,
                            study_instance_uid=st.study_uid,
                            series_instance_uid=st.series_uid,
                            model=model,
                            trigger="api",
                        )
                        s.commit()
                    pool.wake()
            arrivals_done.set()

        def next_study(c: httpx.Client) -> str | None:
            if mode == "ai":
                items = c.get("/api/worklist", params={"status": "unread", "limit": 1}).json()["items"]
                return items[0]["StudyInstanceUID"] if items else None
            items = c.get("/api/worklist", params={"status": "unread", "limit": 1000}).json()["items"]
            return min(items, key=lambda i: i["arrived_at"])["StudyInstanceUID"] if items else None

        def read(name: str) -> None:
            # A read takes exactly its drawn time, the reader's own HTTP calls included (picking,
            # claiming, signing): on a loaded machine those would otherwise add to every read.
            sign_seconds = 0.0  # running estimate of the time the sign-off calls take
            with httpx.Client(base_url=base, auth=(name, READER_PASSWORD), timeout=60) as c:
                while True:
                    began = time.monotonic()
                    uid = next_study(c)
                    if uid is None:
                        if arrivals_done.is_set():
                            return
                        time.sleep(0.02)
                        continue
                    if c.post(f"/api/worklist/{uid}/claim").status_code == 409:
                        continue  # another reader took it first
                    busy = truth[uid].read_minutes * args.scale - (time.monotonic() - began) - sign_seconds
                    time.sleep(max(0.0, busy))
                    signing = time.monotonic()
                    for _ in range(5):  # accept the findings there are now (an AI result may land meanwhile)
                        pending = [f for f in c.get(f"/api/studies/{uid}/findings").json() if f["status"] == "pending"]
                        decisions = [{"finding_id": f["id"], "status": "accepted"} for f in pending]
                        if c.post(f"/api/worklist/{uid}/sign", json={"decisions": decisions}).status_code == 200:
                            break
                    sign_seconds = 0.8 * sign_seconds + 0.2 * (time.monotonic() - signing)

        threads = [threading.Thread(target=arrive)] + [threading.Thread(target=read, args=(n,)) for n in readers]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        log(f"{mode}: shift replayed in {time.monotonic() - start:.0f} s")
        with httpx.Client(base_url=base, auth=(readers[0], READER_PASSWORD), timeout=60) as c:
            rows: list[dict[str, Any]] = c.get("/api/turnaround").json()["studies"]
        return rows
    finally:
        pool.stop()
        proc.terminate()
        proc.wait(30)
        archive.close()


def summarise(rows: list[dict[str, Any]], studies: list[Study], scale: float) -> dict[str, Any]:
    truth = {st.study_uid: st for st in studies}
    groups: dict[str, list[float]] = {"critical": [], "other": [], "stat": [], "all": []}
    for r in rows:
        st = truth.get(r["StudyInstanceUID"])
        sign = r["minutes"]["arrival_to_sign"]
        if st is None or sign is None:
            continue
        sim = sign * 60 / scale  # real minutes -> simulated minutes
        groups["critical" if st.critical else "other"].append(sim)
        groups["all"].append(sim)
        if st.stat:
            groups["stat"].append(sim)

    def stats(v: list[float]) -> dict[str, Any]:
        if not v:
            return {"n": 0}
        q = statistics.quantiles(v, n=10) if len(v) > 1 else [v[0]] * 9
        return {
            "n": len(v),
            "median": round(statistics.median(v), 1),
            "p90": round(q[8], 1),
            "mean": round(statistics.fmean(v), 1),
        }

    out: dict[str, Any] = {k: stats(v) for k, v in groups.items()}
    # What the AI flagged: its realised operating point at the critical level on this shift.
    flagged = [r for r in rows if r.get("priority") == "critical" and r["StudyInstanceUID"] in truth]
    out["flagged_critical"] = {
        "true_critical": sum(truth[r["StudyInstanceUID"]].critical for r in flagged),
        "of_critical": sum(st.critical for st in studies),
        "false": sum(not truth[r["StudyInstanceUID"]].critical for r in flagged),
        "of_others": sum(not st.critical for st in studies),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=300)
    ap.add_argument("--hours", type=float, default=12.0, help="length of the simulated shift")
    ap.add_argument("--critical", type=float, default=0.08, help="fraction of studies with a critical finding")
    ap.add_argument("--stat", type=float, default=0.05, help="fraction of the other studies ordered STAT")
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--read-minutes", type=float, default=4.5, help="mean reading time (simulated minutes)")
    ap.add_argument("--ai-minutes", type=float, default=1.0, help="model run time per study (simulated minutes)")
    ap.add_argument("--sensitivity", type=float, default=0.9)
    ap.add_argument("--specificity", type=float, default=0.95)
    ap.add_argument("--scale", type=float, default=0.2, help="real seconds per simulated minute")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="120 studies over 4.8 h")
    ap.add_argument("--model", help="a shipped model (e.g. cxr-pneumonia) that really runs on each study")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.studies, args.hours = 120, 4.8
    with tempfile.TemporaryDirectory(prefix="radsight-triage-") as tmp:
        work = Path(tmp)
        studies = plan(args, work)
        n_crit = sum(st.critical for st in studies)
        load = args.studies / (args.hours * 60) * args.read_minutes / args.readers
        log(f"{args.studies} studies ({n_crit} critical) over {args.hours} h, {args.readers} readers, load {load:.2f}")
        rows: dict[str, list[dict[str, Any]]] = {}
        barrier = threading.Barrier(2)

        def run(mode: str) -> None:
            try:
                rows[mode] = run_mode(mode, studies, args, work, barrier)
            except BaseException:
                barrier.abort()
                raise

        runs = [threading.Thread(target=run, args=(mode,)) for mode in ("ai", "fifo")]
        for th in runs:
            th.start()
        for th in runs:
            th.join()
        results = {mode: summarise(rows[mode], studies, args.scale) for mode in ("ai", "fifo")}
        for mode in ("ai", "fifo"):
            log(f"{mode}: {json.dumps(results[mode])}")
    crit_ai, crit_fifo = results["ai"]["critical"], results["fifo"]["critical"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "params": {k: v for k, v in vars(args).items() if k != "json"}
        | {"critical_studies": n_crit, "reader_load": round(load, 3)},
        "results": results,
        "ratio_critical_median_ai_over_fifo": round(crit_ai["median"] / crit_fifo["median"], 3),
        "ratio_critical_p90_ai_over_fifo": round(crit_ai["p90"] / crit_fifo["p90"], 3),
        # Work conservation check: reordering moves waiting between studies, it should not add any.
        "ratio_all_mean_ai_over_fifo": round(results["ai"]["all"]["mean"] / results["fifo"]["all"]["mean"], 3),
        "ratio_other_median_ai_over_fifo": round(
            results["ai"]["other"]["median"] / results["fifo"]["other"]["median"], 3
        ),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
