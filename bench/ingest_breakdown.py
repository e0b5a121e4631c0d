#!/usr/bin/env python3
"""Where one instance's ingest time goes, in process (no HTTP, no DIMSE), one thread.

    .venv/bin/python bench/ingest_breakdown.py [N]

Ingests N generated instances (the STOW-RS benchmark's set) into a fresh archive with
``IngestService.ingest_file`` and times its stages by wrapping them: ``parse_file``
(header read and checks), the duplicate pre-check, ``Storage.put_file`` (fsync, rename,
directory fsync) and ``_index`` (the index transaction, commit included). Prints ms per
instance for each stage, wall and CPU. For the ingest code owners; not a test.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import archive as bench
from radsight import archive as archive_mod
from radsight.config import Settings
from radsight.ingest import service as service_mod

WALL: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            WALL[name] += time.perf_counter() - w
            CPU[name] += time.thread_time() - c

    return wrapper


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory(prefix="radsight-ingest-") as tmp:
        paths, size = bench.make_ingest_set(Path(tmp) / "set", n, 1, "S")
        arch = archive_mod.Archive.open(Settings(home=Path(tmp) / "home"))  # type: ignore[call-arg]
        try:
            svc = arch.ingest
            service_mod.parse_file = timed("parse_file", service_mod.parse_file)  # type: ignore[assignment]
            svc.index.existing_key = timed("duplicate pre-check", svc.index.existing_key)  # type: ignore[method-assign]
            arch.storage.put_file = timed("storage put_file", arch.storage.put_file)  # type: ignore[method-assign]
            svc._index = timed("index transaction", svc._index)  # type: ignore[method-assign]
            total = timed("total ingest_file", svc.ingest_file)
            for p in paths:
                result = total(p)
                if not result.ok:
                    print(f"refused {p.name}: {result.message}", file=sys.stderr)
                    return 1
        finally:
            arch.close()
    print(f"{n} instances, mean {size / n / 1024:.0f} KB, one thread, in process\n")
    print("| stage | wall ms/instance | CPU ms/instance |")
    print("|---|---:|---:|")
    for name in ("parse_file", "duplicate pre-check", "storage put_file", "index transaction", "total ingest_file"):
        print(f"| {name} | {1000 * WALL[name] / n:.2f} | {1000 * CPU[name] / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
