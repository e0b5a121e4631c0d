#!/usr/bin/env python
"""ct-abdomen-organs on the 112-slice real CT: ``pipeline.run_model`` time, and what each per-label
parametric map costs (build + store), in a fresh archive (SQLite) in this process.

    .venv/bin/python bench/seg_maps.py [RUNS]

Before / after a change, alternate it with an earlier tree of the package in the same session:

    git archive REV src | tar -x -C /tmp/base
    for i in 1 2 3 4 5; do PYTHONPATH=/tmp/base/src .venv/bin/python bench/seg_maps.py 2; \\
        .venv/bin/python bench/seg_maps.py 2; done

(an earlier tree without ``sibling_parametric_map`` prints run_model only).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid
from sqlalchemy import select

from radsight.ai import pipeline
from radsight.ai.package import load_package
from radsight.ai.results import ResultUIDs
from radsight.ai.volume import load_series
from radsight.archive import Archive
from radsight.config import Settings
from radsight.datasets.ct import nifti_to_ct_series
from radsight.index.models import Series
from radsight.ingest.importer import import_paths

REPO = Path(__file__).resolve().parent.parent
CT = REPO.parent / "shared" / "data" / "ct" / "totalsegmentator" / "example_ct.nii.gz"


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp())
    paths = nifti_to_ct_series(CT, tmp / "ct")
    archive = Archive.open(Settings(home=tmp / "home", database_url=f"sqlite:///{tmp}/index.sqlite"))
    import_paths(archive.ingest, paths)
    with archive.db.session() as s:
        series = s.scalars(select(Series)).one()
        study_uid, series_uid = series.study.study_instance_uid, series.series_instance_uid
    package = load_package(REPO / "src" / "radsight" / "models" / "ct-abdomen-organs")
    wall, cpu = [], []
    for i in range(runs):
        c, t = time.process_time(), time.perf_counter()
        pipeline.run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=i)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(f"run_model s: {[round(x, 3) for x in wall]} median {median(wall)}; cpu s median {median(cpu)}")
    try:
        from radsight.ai.results.pmap import build_parametric_map, sibling_parametric_map
    except ImportError:
        return
    meta = package.metadata
    volume = load_series(archive, series_uid)
    values = np.random.default_rng(0).random(volume.array.shape, dtype=np.float32)
    first_t, again_t, sibling_t = [], [], []
    for i in range(runs):
        uids = ResultUIDs.for_job(1000 + i, series_uid, meta)
        t = time.perf_counter()
        first = build_parametric_map(volume, values, meta, uids, label=meta.labels[1])
        pipeline.store(archive, first)
        first_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        other = build_parametric_map(
            volume, values, meta, uids, label=meta.labels[2], sop_instance_uid=generate_uid(), instance_number=2
        )
        pipeline.store(archive, other)
        again_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        sop = uids.pmap_sop_for(2, first=False)
        sibling = sibling_parametric_map(
            first, values, volume, meta, label=meta.labels[2], sop_instance_uid=sop, instance_number=2
        )
        pipeline.store(archive, sibling)
        sibling_t.append(time.perf_counter() - t)
    print(
        f"one map, build + store, s: first (highdicom) {median(first_t)}; another by highdicom {median(again_t)};"
        f" another sharing the first's frames {median(sibling_t)}"
    )
    archive.close()


if __name__ == "__main__":
    main()
