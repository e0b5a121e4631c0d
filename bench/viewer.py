"""Viewer speed in Chromium: RadSight's viewer against OHIF, same server, same run.

A real ``radsight serve`` (fresh home, SQLite) holds two CT series: the real 20-slice
Siemens CT (JPEG 2000 lossless) and a 112-slice CT written from ``example_ct.nii.gz``
(uncompressed). OHIF (npm ``@ohif/app``'s built ``dist/``, fetched as in tests/test_ohif.py)
is served from its own port with RadSight's ``/dicomweb`` passed through, so both viewers read
the same server. Each run uses a fresh browser context (cold HTTP cache); viewers alternate
A-B-B-A. Both are measured the same way, in the page:

- first image: time from navigation start until a canvas shows a non-blank image of the study
  (pixel SD above a threshold, sampled every 10 ms: late when the main thread is busy right after
  the draw): a Cornerstone canvas, or RadSight's preview canvas (the first image drawn by the
  page's first script before Cornerstone is loaded); "drawn": the same test made in the
  2D-context call (drawImage / putImageData) that put the image on the canvas;
- Cornerstone image: the same, Cornerstone's canvases only (what "first image" meant before
  RadSight's preview);
- interactive: RadSight's ``__radsight.firstImageMs`` (Cornerstone has drawn the image and the
  tools are bound: W/L drag, scroll); for OHIF (no such hook) its Cornerstone image, its tools
  being loaded before it draws;
- all slices: time until the last of the series' frames arrived (Resource Timing of the
  WADO-RS ``/frames/`` requests), once every slice has been fetched;
- repeat visit: first image and interactive when the same page is opened again in the same
  browser context (HTTP cache and V8 code cache warm: what a reader opening the next study sees).

    .venv/bin/python bench/viewer.py [--runs 3] [--json bench/results/viewer.json]

Before / after a viewer change in the same run: keep a copy of the earlier build
(``cp -r src/radsight/api/static/viewer /tmp/baseline-viewer``), build the new one, then

    .venv/bin/python bench/viewer.py --baseline /tmp/baseline-viewer --viewers RadSight,baseline,OHIF

``baseline`` is a second ``radsight serve`` (its own home, the same files imported) running a
copy of this source tree whose ``api/static/viewer`` is that earlier build. With three viewers
the order is A-B-C-C-B-A (each viewer ``--runs`` cold loads per series).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_ohif import CHROMIUM, CHROMIUM_ARGS, ohif_dist, serve_ohif  # noqa: E402

SHARED = Path(os.environ.get("RADSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
BIN = REPO / ".venv" / "bin"
USER, PASSWORD = "bench", "bench-password-1"

# Records, in the page, when a canvas first shows a real image: `firstImage` by sampling the
# canvases every 10 ms (late when the page's main thread is busy right after the draw, e.g.
# compiling the next chunk), `firstDraw` in the 2D context call that put the image on the canvas
# (Cornerstone draws in an animation frame, so that frame shows it). Both count Cornerstone's
# canvases and RadSight's preview (canvas.radsight-preview); `cornerstone` only the former.
PROBE = """
performance.setResourceTimingBufferSize(5000);
window.__bench = {};
const sd = (c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0;
  for (let i = 0; i < d.length; i += 64) { const v = d[i]; n++; s += v; s2 += v * v; }
  const m = s / n;
  return Math.sqrt(Math.max(0, s2 / n - m * m));
};
const IMAGE = 'canvas.cornerstone-canvas, canvas.radsight-preview';
const shows = (sel) => [...document.querySelectorAll(sel)].some((c) => c.width && c.height && sd(c) > 10);
const timer = setInterval(() => {
  const now = performance.now();
  if (window.__bench.firstImage === undefined && shows(IMAGE)) window.__bench.firstImage = now;
  if (shows('canvas.cornerstone-canvas')) {
    window.__bench.firstImage ??= now;
    window.__bench.cornerstone = now;
    clearInterval(timer);
  }
}, 10);
for (const name of ['drawImage', 'putImageData']) {
  const proto = CanvasRenderingContext2D.prototype;
  const orig = proto[name];
  proto[name] = function (...args) {
    const r = orig.apply(this, args);
    const c = this.canvas;
    if (window.__bench.firstDraw === undefined && c.matches && c.matches(IMAGE)
        && c.width && c.height && sd(c) > 10) {
      window.__bench.firstDraw = performance.now();
    }
    return r;
  };
}
"""
FRAMES_DONE = """(n) => {
  const urls = new Map();
  for (const e of performance.getEntriesByType('resource')) {
    if (e.name.includes('/frames/')) urls.set(e.name, Math.max(urls.get(e.name) || 0, e.responseEnd));
  }
  return urls.size >= n ? Math.max(...urls.values()) : null;
}"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A NIfTI-1 volume (x, y, z) and its voxel size; enough of the format for this file."""
    raw = gzip.decompress(path.read_bytes())
    dim = struct.unpack_from("<8h", raw, 40)
    datatype = struct.unpack_from("<h", raw, 70)[0]
    pixdim = struct.unpack_from("<8f", raw, 76)
    vox_offset = int(struct.unpack_from("<f", raw, 108)[0])
    slope, inter = struct.unpack_from("<2f", raw, 112)
    dtype = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 512: np.uint16}[datatype]
    shape = tuple(dim[1 : 1 + dim[0]])
    data = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=vox_offset).reshape(shape, order="F")
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data * slope + inter
    return data, (pixdim[1], pixdim[2], pixdim[3])


def write_ct_series(nifti: Path, out: Path) -> int:
    """One CT Image Storage file per axial slice of the NIfTI volume (uncompressed)."""
    vol, (sx, sy, sz) = read_nifti(nifti)
    out.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for z in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(out / f"{z:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.Modality = "TotalSegmentator^CT112", "TS-CT112", "20240101", "CT"
        ds.StudyDescription, ds.SeriesDescription = "Abdomen CT (from example_ct.nii.gz)", "CT 112 slices"
        ds.SeriesNumber, ds.InstanceNumber = 1, z + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(z * sz)]
        ds.SliceThickness, ds.PixelSpacing = sz, [sy, sx]
        pixels = np.ascontiguousarray(np.clip(vol[:, :, z].T, -1024, 3071)).astype(np.int16)
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = 0, 1, 40, 400
        ds.PixelData = pixels.tobytes()
        ds.save_as(out / f"{z:04d}.dcm", enforce_file_format=True)
    return int(vol.shape[2])


def baseline_tree(work: Path, assets: Path) -> Path:
    """A copy of src/radsight whose built viewer is ``assets`` (an earlier build)."""
    root = work / "baseline-src"
    shutil.copytree(
        REPO / "src" / "radsight", root / "radsight", ignore=shutil.ignore_patterns("__pycache__", "viewer")
    )
    shutil.copytree(assets, root / "radsight" / "api" / "static" / "viewer")
    return root


def start_radsight(work: Path, data: list[Path], pythonpath: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "RADSIGHT_HOME": str(work / "home")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cli = [str(BIN / "python"), "-m", "radsight"]
    env.pop("RADSIGHT_DATABASE_URL", None)
    env.pop("RADSIGHT_CONFIG", None)
    subprocess.run(
        [*cli, "user", "add", USER, "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*cli, "import", "--fill-missing-uids", *map(str, data)],
        env=env,
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [*cli, "serve", "--http-port", str(port), "--dicom-port", str(free_port())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("radsight serve did not start")


# Cornerstone has drawn the image, and (RadSight) the tools are bound.
INTERACTIVE = """() => {
  if (!window.__bench || window.__bench.cornerstone === undefined) return null;
  if (!window.__radsight) return window.__bench.cornerstone;
  const t = window.__radsight.firstImageMs;
  return t === undefined ? null : Math.max(t, window.__bench.cornerstone);
}"""


def open_viewer(page: Any, url: str) -> tuple[float, float]:
    """Load ``url``: first image (any canvas) and interactive, ms since navigation start."""
    page.goto(url)
    page.wait_for_function("window.__bench && window.__bench.firstImage !== undefined", timeout=120_000)
    page.wait_for_function(f"({INTERACTIVE})() !== null", timeout=120_000)
    return page.evaluate("window.__bench.firstImage"), page.evaluate(f"({INTERACTIVE})()")


def measure(browser: Any, url: str, frames: int, cookie: dict[str, Any] | None) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        if cookie:
            context.add_cookies([cookie])
        context.add_init_script(PROBE)
        page = context.new_page()
        first, interactive = open_viewer(page, url)
        drawn = page.evaluate("window.__bench.firstDraw ?? null")
        cornerstone = page.evaluate("window.__bench.cornerstone")
        # RadSight's own milestones (ms since navigation), where the first image's time went.
        marks = page.evaluate("(s => s ? { ...s.marks, renderer: s.renderer } : null)(window.__radsight)")
        try:
            page.wait_for_function(f"({FRAMES_DONE})({frames}) !== null", timeout=120_000)
            all_loaded = page.evaluate(f"({FRAMES_DONE})({frames})")
        except Exception:
            all_loaded = None  # the viewer did not fetch every slice
        repeat, repeat_interactive = open_viewer(page, url)
        return {
            "first_image_ms": first,
            "first_draw_ms": drawn,
            "cornerstone_image_ms": cornerstone,
            "interactive_ms": interactive,
            "all_slices_ms": all_loaded,
            "repeat_first_image_ms": repeat,
            "repeat_interactive_ms": repeat_interactive,
            "marks": marks,
        }
    finally:
        context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "viewer.json")
    ap.add_argument("--baseline", type=Path, help="an earlier build of the viewer (a copy of api/static/viewer)")
    ap.add_argument(
        "--viewers", default="RadSight,OHIF", help="two or three of RadSight, OHIF, baseline (A-B-B-A, A-B-C-C-B-A)"
    )
    args = ap.parse_args()
    viewers = args.viewers.split(",")
    if len(viewers) < 2 or len(set(viewers)) != len(viewers) or not set(viewers) <= {"RadSight", "OHIF", "baseline"}:
        ap.error("--viewers: two or three of RadSight, OHIF, baseline")
    if "baseline" in viewers and not args.baseline:
        ap.error("--viewers baseline needs --baseline DIR")
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="radsight-viewer-bench-"))
    ct112 = work / "ct112"
    n112 = write_ct_series(SHARED / "ct/totalsegmentator/example_ct.nii.gz", ct112)
    proc, base = start_radsight(work, [SHARED / "ct/totalsegmentator/example_ct_dicom", ct112])
    results: dict[str, Any] = {"runs": args.runs, "series": {}, "load_average_start": os.getloadavg()}
    log(f"load average at start: {os.getloadavg()}")
    procs = [proc]
    try:
        if "baseline" in viewers:
            (work / "b").mkdir()
            bproc, bbase = start_radsight(
                work / "b", [SHARED / "ct/totalsegmentator/example_ct_dicom", ct112], baseline_tree(work, args.baseline)
            )
            procs.append(bproc)
            btoken = httpx.post(f"{bbase}/api/auth/token", json={"username": USER, "password": PASSWORD}).json()
            bcookie = {"name": "radsight_token", "value": btoken["access_token"], "url": bbase}
        token = httpx.post(f"{base}/api/auth/token", json={"username": USER, "password": PASSWORD}).json()
        cookie = {"name": "radsight_token", "value": token["access_token"], "url": base}
        httpd = None
        if "OHIF" in viewers:
            ohif_origin, httpd = serve_ohif(ohif_dist(), base)
        auth = (USER, PASSWORD)
        lookup = {
            "CT 20 slices, JPEG 2000 lossless": {"StudyDate": "20221208"},
            f"CT {n112} slices, uncompressed": {"PatientID": "TS-CT112"},
        }
        series = {
            name: (httpx.get(f"{base}/dicomweb/studies", params=q, auth=auth).json()[0]["0020000D"]["Value"][0], n)
            for (name, q), n in zip(lookup.items(), (20, n112), strict=True)
        }
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name, (uid, frames) in series.items():
                urls: dict[str, tuple[str, dict[str, Any] | None]] = {
                    "RadSight": (f"{base}/viewer?StudyInstanceUIDs={uid}", cookie)
                }
                if "OHIF" in viewers:
                    urls["OHIF"] = (f"{ohif_origin}/viewer?StudyInstanceUIDs={uid}&token={token['access_token']}", None)
                if "baseline" in viewers:
                    # The same study in the second server (its UIDs may be filled differently).
                    buid = httpx.get(f"{bbase}/dicomweb/studies", params=lookup[name], auth=auth).json()[0]["0020000D"][
                        "Value"
                    ][0]
                    urls["baseline"] = (f"{bbase}/viewer?StudyInstanceUIDs={buid}", bcookie)
                runs: dict[str, list[dict[str, Any]]] = {k: [] for k in viewers}
                order = (viewers + viewers[::-1]) * ((args.runs + 1) // 2)
                for v in viewers:
                    if v != "OHIF":
                        measure(browser, urls[v][0], frames, urls[v][1])  # warm the server's caches once
                for viewer in order[: len(viewers) * args.runs]:
                    r = measure(browser, urls[viewer][0], frames, urls[viewer][1])
                    runs[viewer].append(r)
                    log(
                        f"{name:32} {viewer:8} first {r['first_image_ms']:.0f} ms "
                        f"(drawn {fmt_mark(r['first_draw_ms'])}, Cornerstone {fmt_mark(r['cornerstone_image_ms'])}), "
                        f"interactive {fmt_mark(r['interactive_ms'])}, all {fmt_mark(r['all_slices_ms'])}, "
                        f"repeat visit first {r['repeat_first_image_ms']:.0f} / "
                        f"interactive {fmt_mark(r['repeat_interactive_ms'])} ms"
                    )
                    if r["marks"]:
                        log(" " * 42 + " ".join(f"{k} {fmt_mark(v)}" for k, v in r["marks"].items()))
                summary: dict[str, Any] = {}
                for viewer, rs in runs.items():
                    summary[viewer] = {f"{k}_median": median(rs, k) for k in rs[0] if k != "marks"} | {"runs": rs}
                results["series"][name] = summary
            browser.close()
        if httpd is not None:
            httpd.shutdown()
    finally:
        for server in procs:
            server.terminate()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()
    log(f"load average at end: {os.getloadavg()}")
    results["machine"] = {"cpus": os.cpu_count(), "chromium": CHROMIUM, "pydicom": pydicom.__version__}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(
        "| series | viewer | first image | first image drawn | Cornerstone image | interactive | all slices loaded"
        " | repeat visit: first image | repeat visit: interactive |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, summary in results["series"].items():
        for viewer, s in summary.items():
            keys = (
                "first_image_ms",
                "first_draw_ms",
                "cornerstone_image_ms",
                "interactive_ms",
                "all_slices_ms",
                "repeat_first_image_ms",
                "repeat_interactive_ms",
            )
            cells = [s[f"{k}_median"] for k in keys]
            print(f"| {name} | {viewer} | " + " | ".join("n/a" if c is None else f"{c:.0f} ms" for c in cells) + " |")


def fmt_mark(v: Any) -> str:
    return f"{v:.0f}" if isinstance(v, float | int) else "n/a" if v is None else str(v)


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [v for r in runs if (v := r[key]) is not None]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    main()
