"""Worker processes (serve's default) do not outlive a server killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_process_stops_when_the_server_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from radsight.archive import Archive
        from radsight.config import Settings
        from radsight.ai.worker import ProcessWorkerPool
        archive = Archive.open(Settings(home={str(tmp_path / "home")!r}, ai_builtin_models=False))
        pool = ProcessWorkerPool(archive, 1, poll_seconds=0.2)
        pool.start()
        print(*pool.pids, flush=True)
        time.sleep(120)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSIGHT_")}
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline().split()[0])
        time.sleep(1.0)
        assert _alive(worker), "the worker process did not start"
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the AI worker process runs on after its server was killed"
    finally:
        if server.poll() is None:
            server.kill()
