"""Worker pools open the installed models' ONNX sessions at start, with cores / workers threads."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.ai_testmodels import make_classification_package

from radsight.ai import inference, registry
from radsight.ai.worker import WorkerPool, intra_op_threads
from radsight.archive import Archive


def test_pool_start_opens_sessions_before_any_job(archive: Archive, tmp_path: Path) -> None:
    pkg_dir = make_classification_package(tmp_path / "pkg", name="warm-cls", gain=7.25)
    registry.install(archive, pkg_dir)
    sha = registry.get_package(archive, "warm-cls").metadata.sha256
    inference._sessions.pop(sha, None)
    pool = WorkerPool(archive, 2, poll_seconds=0.1)
    pool.start()
    try:
        deadline = time.monotonic() + 20
        while sha not in inference._sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sha in inference._sessions, "the model's session was not opened at start-up"
        opts = inference._sessions[sha].get_session_options()
        assert opts.intra_op_num_threads == intra_op_threads(2) == max(1, (os.cpu_count() or 1) // 2)
        assert pool.completed == 0
    finally:
        pool.stop()
        inference.configure(intra_op_threads=0)
