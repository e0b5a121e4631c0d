#!/usr/bin/env python3
"""STOW-RS ingest of two RadSight builds in the same run (A-B-B-A), for before/after figures.

    git archive REV src | tar -x -C /tmp/before          # the earlier build's sources
    .venv/bin/python bench/stow_ab.py /tmp/before/src [N [CLIENTS]]

Starts ``radsight serve`` twice (fresh homes, SQLite): "after" from this checkout, "before"
with ``PYTHONPATH`` set to the given ``src`` folder (the editable install is a plain path
entry, so PYTHONPATH wins). Waits until both are idle after start-up, then STOWs N generated
instances (``bench/archive.py``'s set) with CLIENTS clients (default 4), one per request and ten per request,
halves alternating A-B-B-A, and prints instances/s and server CPU ms per instance for each.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import archive as bench


def main() -> int:
    before_src = Path(sys.argv[1]).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else bench.CLIENTS
    tmp = Path(tempfile.mkdtemp(prefix="radsight-stow-ab-"))
    sets = {per: bench.make_ingest_set(tmp / f"set{per}", n, per, "A")[0] for per in (1, 10)}
    ports: set[int] = set()
    after = bench.start_radsight(tmp / "after", ports, None)
    after.name = "after"
    os.environ["PYTHONPATH"] = str(before_src)
    try:
        before = bench.start_radsight(tmp / "before", ports, None)
    finally:
        del os.environ["PYTHONPATH"]
    before.name = "before"
    try:
        bench.wait_settled(after)
        bench.wait_settled(before)
        print(f"load average {os.getloadavg()[0]:.1f}; {n} instances per server and batch size, {clients} clients")
        for per, files in sets.items():
            halves = [files[: len(files) // 2], files[len(files) // 2:]]
            acc = {s.name: [0, 0.0, 0.0] for s in (after, before)}
            for half, server in ((0, after), (0, before), (1, before), (1, after)):
                cpu0 = server.cpu_seconds()
                run = bench.stow(server, halves[half], per, clients)
                cpu = server.cpu_seconds() - cpu0
                if run.stored != run.instances or run.errors:
                    raise SystemExit(f"{server.name}: {run}")
                a = acc[server.name]
                a[0], a[1], a[2] = a[0] + run.instances, a[1] + run.seconds, a[2] + cpu
            rate = {k: v[0] / v[1] for k, v in acc.items()}
            cpu_ms = {k: 1000 * v[2] / v[0] for k, v in acc.items()}
            print(f"{per}/request: after {rate['after']:.1f} inst/s, {cpu_ms['after']:.2f} ms CPU/inst | "
                  f"before {rate['before']:.1f} inst/s, {cpu_ms['before']:.2f} ms CPU/inst | "
                  f"after/before {rate['after'] / rate['before']:.2f}; load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        after.stop()
        before.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
