#!/usr/bin/env python
"""AI engine benchmark: arrival-to-result latency and jobs per minute (issue 4).

What it does, against a real ``radsight serve`` (subprocess, SQLite, fresh home):

1. Latency: one chest X-ray (a real image from the shared data, written as DX) and the
   112-slice real CT (``example_ct.nii.gz`` written as a CT series) are sent with dcmtk's
   ``storescu``. The clock starts when storescu returns (the last instance was received and
   acknowledged) and stops when the AI's SR appears in QIDO-RS. The stability wait
   (``--stable`` seconds, the trigger's "no new instance for this long") is part of that
   latency and is reported separately.
2. Throughput: ``--cxr-jobs`` chest X-ray studies and ``--ct-jobs`` CT studies, sent at once,
   with 1 and then 2 worker processes; jobs per minute = jobs / (last finished - first started),
   from the jobs' own timestamps.

The peer for each ratio: the bare model run (ONNX Runtime alone on the same pre-processed
input, measured in this process in the same run) for the engine's overhead, and 1 worker for
the 2-worker speed-up. The models are the shipped ones (``src/radsight/models``) when present,
else the test models of ``tests/ai_testmodels.py`` (printed in the report).

    .venv/bin/python bench/ai.py            # full run, ~5-10 min on 2 cores
    .venv/bin/python bench/ai.py --quick    # fewer jobs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.ai_testmodels (fallback models)
VENV_BIN = REPO / ".venv" / "bin"
DATA = Path(os.environ.get("RADSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
USER, PASSWORD = "bench", "bench-password"


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------
# data and models
# ---------------------------------------------------------------------------------------


def write_cxr_studies(out: Path, n: int) -> list[Path]:
    from radsight.datasets.cxr import cxr_to_dicom, pick_chest_xrays

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (jpeg, label) in enumerate(pick_chest_xrays(DATA / "cxr" / "kermany224" / "train", max(n, 2), seed=7)[:n]):
        path = out / f"cxr-{i:04d}.dcm"
        cxr_to_dicom(jpeg, path, label=label, patient_id=f"BENCH-CXR-{i:04d}")
        files.append(path)
    return files


def write_ct_studies(out: Path, n: int) -> list[Path]:
    from radsight.datasets.ct import nifti_to_ct_series

    folders = []
    for i in range(n):
        folder = out / f"ct-{i:02d}"
        nifti_to_ct_series(DATA / "ct" / "totalsegmentator" / "example_ct.nii.gz", folder,
                           patient_id=f"BENCH-CT-{i:02d}")
        folders.append(folder)
    return folders


@dataclass
class Models:
    source: str  # "shipped" or "test"
    folders: list[Path]


def pick_models(work: Path) -> Models:
    from radsight.ai.registry import builtin_packages

    shipped = builtin_packages()
    if shipped:
        return Models("shipped", shipped)
    from tests.ai_testmodels import make_classification_package, make_segmentation_package

    cls = make_classification_package(work / "models" / "cls", name="bench-cls", modality=("DX", "CR"))
    seg = make_segmentation_package(work / "models" / "seg", name="bench-seg", patch=(32, 96, 96), spacing=[3, 3, 3])
    return Models("test (tests/ai_testmodels.py: no model ships in src/radsight/models yet)", [cls, seg])


def bare_inference_seconds(models: Models, cxr: Path, ct: Path, repeats: int = 3) -> dict[str, float]:
    """The model alone: pre-processing + ONNX Runtime (+ sliding window), no queue, no DICOM results."""
    import pydicom

    from radsight.ai import inference, preprocess
    from radsight.ai.package import Task, load_package

    out: dict[str, float] = {}
    ct_files = sorted(ct.iterdir())
    slices = [pydicom.dcmread(f) for f in ct_files]
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vol = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices]).astype(
        np.float32
    )
    dz = abs(float(slices[1].ImagePositionPatient[2]) - float(slices[0].ImagePositionPatient[2]))
    spacing = (dz, *(float(v) for v in slices[0].PixelSpacing))
    image = pydicom.dcmread(cxr).pixel_array.astype(np.float32)
    for folder in models.folders:
        pkg = load_package(folder)
        meta, spec = pkg.metadata, pkg.metadata.input
        sess = inference.session_for(pkg)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            if meta.task is Task.SEGMENTATION:
                x = preprocess.intensity(preprocess.resample(vol, preprocess.spacing_factors(spacing, spec.spacing),
                                                             order=1), spec)
                out_name = next(o.name for o in meta.outputs if o.kind in ("probabilities", "logits"))
                inference.sliding_window(sess, spec.input_name, out_name, x, spec.size,
                                         overlap=spec.sliding_window_overlap)
            else:
                x = preprocess.intensity(preprocess.to_shape(image, spec.size, order=1), spec)
                inference.run(sess, spec.input_name, np.repeat(x[None, None], spec.channels, axis=1))
            times.append(time.perf_counter() - t0)
        out[meta.task.value] = statistics.median(times)
    return out


# ---------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------


class Server:
    def __init__(self, work: Path, models: Models, *, workers: int, stable: float) -> None:
        self.home = work / "home"
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        env = {**os.environ, "RADSIGHT_HOME": str(self.home), "RADSIGHT_ALLOW_ANY_CALLING_AE": "true",
               "RADSIGHT_AI_WORKERS": str(workers), "RADSIGHT_AI_WORKER_PROCESSES": "true",
               "RADSIGHT_AI_STABLE_SECONDS": str(stable), "RADSIGHT_AI_BUILTIN_MODELS": "false"}
        for k in ("RADSIGHT_CONFIG", "RADSIGHT_DATABASE_URL"):
            env.pop(k, None)
        radsight = str(VENV_BIN / "radsight")
        subprocess.run([radsight, "user", "add", USER, "--role", "admin", "--password-stdin"], input=PASSWORD + "\n",
                       text=True, env=env, check=True, capture_output=True, timeout=120)
        for folder in models.folders:
            subprocess.run([radsight, "model", "add", str(folder)], env=env, check=True, capture_output=True,
                           timeout=120)
        self.log_file = open(work / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([radsight, "serve", "--http-port", str(self.http_port), "--dicom-port",
                                      str(self.dicom_port)], env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, auth=(USER, PASSWORD), timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.log_file.flush()
                tail = (work / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"server did not start:\n{tail}")
            time.sleep(0.1)

    def send(self, paths: list[Path]) -> float:
        """storescu (one association); returns the time it returned (all instances acknowledged)."""
        args = ["storescu", "-aec", "RADSIGHT", "+sd", "+r", "127.0.0.1", str(self.dicom_port), *map(str, paths)]
        subprocess.run(args, check=True, capture_output=True, timeout=600)
        return time.monotonic()

    def wait_sr(self, study_uid: str, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.client.get(f"/dicomweb/studies/{study_uid}/series", params={"Modality": "SR"})
            if r.status_code == 200 and r.json():
                return time.monotonic()
            time.sleep(0.02)
        raise TimeoutError(f"no SR for study {study_uid} after {timeout} s: {self.jobs(study_uid)}")

    def wait_done(self, study_uid: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The study's jobs once none is queued or running (the SR is stored just before a job is done)."""
        deadline = time.monotonic() + timeout
        while True:
            views = self.jobs(study_uid)
            if all(j["state"] in ("done", "failed") for j in views) or time.monotonic() > deadline:
                return views
            time.sleep(0.05)

    def jobs(self, study_uid: str) -> list[dict[str, Any]]:
        return list(self.client.get(f"/api/studies/{study_uid}/jobs").json())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.client.close()
        self.log_file.close()


def study_uid_of(path: Path) -> str:
    import pydicom

    f = path if path.is_file() else next(iter(sorted(path.iterdir())))
    return str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)


def warm(server: Server, studies: list[Path]) -> None:
    """Steady state, as a server that has run for a while: worker processes started, libraries
    imported, each model's ONNX session open (not timed). With several workers each needs one."""
    for path in studies:
        server.send([path])
    for path in studies:
        server.wait_sr(study_uid_of(path))
        server.wait_done(study_uid_of(path))


def latency(work: Path, models: Models, cxr: Path, ct: Path, stable: float, warm_up: list[Path]) -> dict[str, float]:
    server = Server(work / "latency", models, workers=1, stable=stable)
    try:
        warm(server, warm_up)
        out: dict[str, float] = {}
        for name, path in (("cxr", cxr), ("ct", ct)):
            server.send([path])
            arrived = datetime.now(UTC)  # storescu returned: the last instance is acknowledged
            uid = study_uid_of(path)
            server.wait_sr(uid)
            views = server.wait_done(uid)
            job = max(views, key=lambda j: j["created_at"])  # the run on the complete series
            created, started, finished = (datetime.fromisoformat(job[k]) for k in ("created_at", "started_at",
                                                                                    "finished_at"))
            if created < arrived:
                log(f"warning: the {name} job was queued {(arrived - created).total_seconds():.1f} s before the last"
                    f" instance arrived (gap between instances longer than --stable {stable} s)")
            out[name] = (finished - arrived).total_seconds()
            out[f"{name}_queued"] = (created - arrived).total_seconds()
            out[f"{name}_waiting"] = (started - created).total_seconds()
            out[f"{name}_running"] = (finished - started).total_seconds()
            log(f"latency {name}: {out[name]:.2f} s = job queued after {out[f'{name}_queued']:.2f} s (stability),"
                f" claimed after {out[f'{name}_waiting']:.2f} s, ran {out[f'{name}_running']:.2f} s")
        return out
    finally:
        server.stop()


def throughput(work: Path, models: Models, cxrs: list[Path], cts: list[Path], workers: int,
               stable: float, warm_up: list[Path]) -> dict[str, float]:
    server = Server(work / f"throughput-{workers}", models, workers=workers, stable=stable)
    try:
        warm(server, warm_up)
        out: dict[str, float] = {}
        for name, paths in (("cxr", cxrs), ("ct", cts)):
            if not paths:
                continue
            server.send(paths)
            uids = [study_uid_of(p) for p in paths]
            for uid in uids:
                server.wait_sr(uid)
            views = [j for uid in uids for j in server.wait_done(uid)]
            done = [j for j in views if j["state"] == "done"]
            started = min(datetime.fromisoformat(j["started_at"]) for j in done)
            finished = max(datetime.fromisoformat(j["finished_at"]) for j in done)
            span = (finished - started).total_seconds()
            out[name] = 60.0 * len(done) / span
            log(f"{workers} worker(s), {name}: {len(done)} jobs in {span:.1f} s = {out[name]:.1f} jobs/min")
        return out
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer jobs (CI-sized)")
    ap.add_argument("--cxr-jobs", type=int, default=40)
    ap.add_argument("--ct-jobs", type=int, default=4)
    ap.add_argument("--stable", type=float, default=3.0,
                    help="ai_stable_seconds of the benchmarked server (3 s: the product's default)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.cxr_jobs, args.ct_jobs = 10, 2
    if shutil.which("storescu") is None:
        raise SystemExit("storescu not found: apt-get install dcmtk (make setup does)")
    work = Path(tempfile.mkdtemp(prefix="radsight-bench-ai-"))
    try:
        log(f"writing {args.cxr_jobs} chest X-ray studies and {args.ct_jobs} 112-slice CT studies in {work}")
        cxrs = write_cxr_studies(work / "cxr", args.cxr_jobs + 3)
        cts = write_ct_studies(work / "ct", args.ct_jobs + 3)
        models = pick_models(work)
        log(f"models: {models.source}: {', '.join(p.name for p in models.folders)}")
        bare = bare_inference_seconds(models, cxrs[0], cts[0])
        lat = latency(work, models, cxrs[0], cts[0], args.stable, warm_up=[cxrs[1], cts[1]])
        warm_up = [cxrs[1], cxrs[2], cts[1], cts[2]]  # two of each: one per worker
        tput = {w: throughput(work, models, cxrs[3:], cts[3:], w, args.stable, warm_up) for w in (1, 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"date": datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or
               platform.machine(), "cores": os.cpu_count(), "models": models.source, "stable_seconds": args.stable,
               "bare_model_seconds": bare, "latency_seconds": lat, "jobs_per_minute": tput}
    cls_bare, seg_bare = bare.get("classification", float("nan")), bare.get("segmentation", float("nan"))
    print()
    print(f"## AI engine ({results['date']}, {results['cores']} cores, models: {models.source})")
    print()
    print("| measure | RadSight | reference | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| CXR arrival-to-SR latency (s) | {lat['cxr']:.2f} | bare model {cls_bare:.3f} s + stable wait "
          f"{args.stable:.1f} s | {lat['cxr'] / (cls_bare + args.stable):.2f}x |")
    print(f"| CT 112-slice arrival-to-SR latency (s) | {lat['ct']:.2f} | bare model {seg_bare:.2f} s + stable wait "
          f"{args.stable:.1f} s | {lat['ct'] / (seg_bare + args.stable):.2f}x |")
    for name in ("cxr", "ct"):
        print(f"| {name.upper()} latency parts (s): stability / queue / run | {lat[f'{name}_queued']:.2f} / "
              f"{lat[f'{name}_waiting']:.2f} / {lat[f'{name}_running']:.2f} | | |")
    for name in ("cxr", "ct"):
        one, two = tput[1].get(name), tput[2].get(name)
        if one and two:
            print(f"| {name.upper()} jobs/min, 2 workers vs 1 | {two:.1f} | {one:.1f} | {two / one:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
