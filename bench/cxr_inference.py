"""Chest X-ray model latency: the shipped ``cxr-pneumonia`` package through ONNX Runtime on CPU.

Per image, batch of one, as the AI worker runs it: 200 real Kermany images (both classes,
deterministic choice) pre-processed by serving's own functions (resize + min-max), then
``session.run`` for both outputs (logits and the CAM heatmap). Reported for 1 and 2 intra-op
threads: p50 / p95 / mean of the ONNX Runtime call alone, and of pre-processing + call, with
the ratio to the 50 ms budget (< 1 is within budget). Warm-up runs are not counted.

    .venv/bin/python bench/cxr_inference.py [--images 200] [--package DIR] [--json bench/results/cxr_inference.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from radsight.ai import preprocess
from radsight.ai.package import load_package

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "radsight" / "models" / "cxr-pneumonia"
SHARED = Path(os.environ.get("RADSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))
BUDGET_MS = 50.0
WARMUP = 10


def _images(count: int) -> list[np.ndarray]:
    root = SHARED / "cxr" / "kermany224" / "train"
    files = sorted((root / "NORMAL").glob("*.jpeg"))[: count // 2] + sorted((root / "PNEUMONIA").glob("*.jpeg"))[
        : count - count // 2
    ]
    if len(files) < count:
        raise SystemExit(f"need {count} images under {root}")
    out = []
    for f in files:
        with Image.open(f) as img:
            out.append(np.asarray(img.convert("L"), dtype=np.float32))
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(package: Path, threads: int, images: list[np.ndarray]) -> dict[str, float]:
    pkg = load_package(package)
    spec = pkg.metadata.input
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(pkg.weights), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    run_ms: list[float] = []
    total_ms: list[float] = []
    for i, image in enumerate([*images[:WARMUP], *images]):
        t0 = time.perf_counter()
        x = preprocess.intensity(preprocess.to_shape(image, spec.size, order=1), spec)[None, None]
        t1 = time.perf_counter()
        sess.run(names, {spec.input_name: x})
        t2 = time.perf_counter()
        if i >= WARMUP:
            run_ms.append((t2 - t1) * 1000)
            total_ms.append((t2 - t0) * 1000)
    return {
        "threads": threads,
        "images": len(images),
        "onnx_p50_ms": _pct(run_ms, 50),
        "onnx_p95_ms": _pct(run_ms, 95),
        "onnx_mean_ms": statistics.fmean(run_ms),
        "with_preprocessing_p50_ms": _pct(total_ms, 50),
        "with_preprocessing_p95_ms": _pct(total_ms, 95),
        "p95_budget_ratio": _pct(total_ms, 95) / BUDGET_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--package", type=Path, default=PACKAGE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = _images(args.images)
    pkg = load_package(args.package)
    print(f"{pkg.metadata.name} {pkg.metadata.version}: input {pkg.metadata.input.size}, "
          f"{pkg.weights.stat().st_size / 1e6:.1f} MB, ONNX Runtime {ort.__version__}, "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    results = []
    for threads in (1, 2):
        r = measure(args.package, threads, images)
        results.append(r)
        print(f"threads {threads}: ONNX p50 {r['onnx_p50_ms']:.1f} ms, p95 {r['onnx_p95_ms']:.1f} ms; "
              f"with pre-processing p50 {r['with_preprocessing_p50_ms']:.1f} ms, "
              f"p95 {r['with_preprocessing_p95_ms']:.1f} ms = {r['p95_budget_ratio']:.2f} x the "
              f"{BUDGET_MS:.0f} ms budget")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"package": pkg.metadata.name, "sha256": pkg.metadata.sha256,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
