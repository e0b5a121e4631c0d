"""The live worklist against a real server with the AI engine, on SQLite and PostgreSQL:
Server-Sent Events (study-added within seconds of a STOW-RS upload, ai-result and alert after
a real model run on a real chest X-ray in an AI worker process, resume with Last-Event-ID), and the critical-finding
webhook: a local HTTP receiver answers 500 then 200, so the alert is retried and delivered on
the second attempt; acknowledging it records the user and the time."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from ai_testmodels import make_classification_package
from conftest import BACKENDS, RunningServer, _pg_database, start_server
from radsight.ai import registry
from radsight.datasets.cxr import cxr_to_dicom
from radsight.index.models import WorklistAlert
from radsight.worklist.tasks import WorklistTasks
from test_stow import MULTIPART, encode, multipart

CXR_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "kermany224" / "train" / "PNEUMONIA"


class Receiver:
    """A webhook endpoint that answers the given status codes in turn (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.bodies.append(json.loads(body))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SSEClient:
    """Reads ``/api/worklist/events`` on a thread; parsed events go to a queue."""

    def __init__(
        self, server: RunningServer, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ):
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        self._stop = False
        self._client = httpx.Client(
            base_url=server.base_url, auth=(server.username, server.password), timeout=httpx.Timeout(60, read=30)
        )
        self._thread = threading.Thread(target=self._run, args=(headers or {}, params or {}), daemon=True)
        self._thread.start()
        assert self.connected.wait(15), "event stream did not open"

    def _run(self, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            self._read(headers, params)
        except httpx.HTTPError:
            if not self._stop:  # closing the client from the test ends the read with an error
                raise

    def _read(self, headers: dict[str, str], params: dict[str, str]) -> None:
        with self._client.stream("GET", "/api/worklist/events", headers=headers, params=params) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            self.connected.set()
            event: dict[str, Any] = {}
            for line in r.iter_lines():
                if self._stop:
                    return
                if line == "":
                    if "event" in event:
                        event["at"] = time.monotonic()
                        self.events.put(event)
                    event = {}
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(": ")
                    if field == "data":
                        event["data"] = json.loads(value)
                    elif field in ("id", "event"):
                        event[field] = int(value) if field == "id" else value

    def wait_for(self, type_: str, study_uid: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_} event for the study within {timeout} s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e["event"] == type_ and e["data"].get("StudyInstanceUID") == study_uid:
                return e

    def close(self) -> None:
        """Stop reading; the daemon thread ends at the next line (keep-alive) or when the server stops."""
        self._stop = True
        self._client.close()


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Receiver]]:
    """A server with the AI engine (a worker process) and the worklist's background tasks, its
    webhook a Receiver."""
    receiver = Receiver([500])
    home = tmp_path_factory.mktemp("live")
    gen = _pg_database() if request.param == "postgres" else None
    url = next(gen) if gen is not None else f"sqlite:///{home / 'index.sqlite'}"
    running, stop, _ = start_server(
        home / "home",
        url,
        ai=True,
        ai_stable_seconds=1.0,
        alert_webhook_url=receiver.url,
        alert_retry_base_seconds=0.5,
        ai_worker_processes=True,  # the AI result is written by another process: the feed reads the database
    )
    tasks = WorklistTasks(running.archive, running.worklist_listener, interval_seconds=0.2)
    tasks.start()
    try:
        yield running, receiver
    finally:
        tasks.stop()
        stop()  # type: ignore[operator]
        receiver.close()
        if gen is not None:
            gen.close()


def bright_or_dark_cxr() -> tuple[Path, float]:
    """A real chest X-ray whose min-max scaled mean is far from 0.5, and a gain that makes the
    test classifier's probability (sigmoid(gain * (mean - 0.5))) at least 0.99."""
    for jpeg in sorted(CXR_DIR.glob("*.jp*g")):
        grey = np.asarray(Image.open(jpeg).convert("L"), dtype=np.float64)
        mean = float(((grey - grey.min()) / max(1.0, grey.max() - grey.min())).mean())
        if abs(mean - 0.5) > 0.1:
            return jpeg, 60.0 if mean > 0.5 else -60.0
    raise AssertionError("no suitable image")


def test_sse_shows_arrival_ai_result_and_alert_and_the_webhook_is_retried(
    live: tuple[RunningServer, Receiver], tmp_path: Path
) -> None:
    server, receiver = live
    jpeg, gain = bright_or_dark_cxr()
    registry.install(server.archive, make_classification_package(tmp_path / "pkg", name="cxr-live", gain=gain))
    ds = cxr_to_dicom(jpeg, tmp_path / "cxr.dcm", label="PNEUMONIA", patient_id=f"LIVE-{uuid.uuid4().hex[:8]}")
    uid = str(ds.StudyInstanceUID)
    feed = SSEClient(server)
    try:
        with server.client() as c:
            sent = time.monotonic()
            r = c.post("/dicomweb/studies", content=multipart([encode(ds)]), headers={"Content-Type": MULTIPART})
            assert r.status_code == 200, r.text
            added = feed.wait_for("study-added", uid, timeout=10)
            assert added["at"] - sent < 5.0
            assert added["data"]["priority"] == "routine" and added["data"]["status"] == "unread"
            result = feed.wait_for("ai-result", uid, timeout=120)
            assert result["data"]["priority"] == "critical"
            assert result["data"]["ai"]["model"] == "cxr-live" and result["data"]["ai"]["probability"] >= 0.99
            assert result["data"]["reason"].startswith("Critical: Pneumonia 0.99, cxr-live v1.0") or result["data"][
                "reason"
            ].startswith("Critical: Pneumonia 1.00, cxr-live v1.0")
            alert = feed.wait_for("alert", uid, timeout=10)
            assert alert["data"]["level"] == "critical" and alert["data"]["item"]["priority"] == "critical"
            top = c.get("/api/worklist", params={"status": "unread"}).json()["items"][0]
            assert top["StudyInstanceUID"] == uid and top["alert"]["id"] == alert["data"]["id"]

            # The webhook: 500 first, then 200 after the back-off.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with server.archive.db.session() as s:
                    row = s.scalar(select(WorklistAlert).where(WorklistAlert.study_instance_uid == uid))
                if row is not None and row.webhook_state == "delivered":
                    break
                time.sleep(0.2)
            assert row is not None and (row.webhook_state, row.attempts) == ("delivered", 2)
            assert row.last_error == "HTTP 500" and row.delivered_at is not None
            mine = [b for b in receiver.bodies if b["StudyInstanceUID"] == uid]
            assert len(mine) == 2 and mine[0] == mine[1]
            assert mine[0]["type"] == "critical-finding" and mine[0]["label"] == "Pneumonia"
            assert mine[0]["AccessionNumber"] is None or isinstance(mine[0]["AccessionNumber"], str)
            assert "PatientName" not in mine[0]

            acked = c.post(f"/api/alerts/{row.id}/ack").json()
            assert acked["acknowledged_by"] == "admin" and acked["acknowledged_at"]
            assert acked["webhook"] == {
                "state": "delivered",
                "attempts": 2,
                "next_attempt_at": None,
                "last_error": "HTTP 500",
                "delivered_at": acked["webhook"]["delivered_at"],
            }
            ack_event = feed.wait_for("alert-acknowledged", uid, timeout=10)
            assert ack_event["data"]["acknowledged_by"] == "admin"
            assert c.get("/api/worklist", params={"q": uid}).json()["items"][0]["alert"]["acknowledged_by"] == "admin"
    finally:
        feed.close()

    # A client that reconnects with Last-Event-ID gets what it missed, in order, at once.
    resumed = SSEClient(server, headers={"Last-Event-ID": str(added["id"])})
    try:
        again = resumed.wait_for("ai-result", uid, timeout=5)
        assert again["id"] == result["id"]
        assert resumed.wait_for("alert", uid, timeout=5)["id"] == alert["id"]
    finally:
        resumed.close()
    by_param = SSEClient(server, params={"since": str(result["id"] - 1)})
    try:
        assert by_param.wait_for("ai-result", uid, timeout=5)["id"] == result["id"]
    finally:
        by_param.close()


def test_two_dispatchers_send_each_attempt_once(tmp_path: Path, db_url: str) -> None:
    """Two servers' background threads on one database: the receiver sees each attempt once."""
    from conftest import make_settings
    from radsight.archive import Archive
    from radsight.index.models import WorklistStudy
    from radsight.worklist import alerts
    from radsight.worklist.priority import CRITICAL, AIPriority

    receiver = Receiver([])
    archive = Archive.open(make_settings(tmp_path / "home", db_url, alert_webhook_url=receiver.url))
    try:
        now = datetime.now(UTC)
        with archive.db.session() as s:
            for i in range(5):
                row = WorklistStudy(study_instance_uid=f"1.2.826.0.1.{i}", arrived_at=now, updated_at=now)
                s.add(row)
                s.flush()
                alerts.raise_alert(s, row, AIPriority(CRITICAL, "m", "1", "Pneumonia", 0.95, 0))
            s.commit()
        start = threading.Barrier(2)

        def dispatch() -> None:
            start.wait()
            alerts.deliver_due(archive)

        threads = [threading.Thread(target=dispatch) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(b["StudyInstanceUID"] for b in receiver.bodies) == [f"1.2.826.0.1.{i}" for i in range(5)]
        with archive.db.session() as s:
            rows = s.scalars(select(WorklistAlert)).all()
        assert [(a.webhook_state, a.attempts) for a in rows] == [("delivered", 1)] * 5
    finally:
        archive.close()
        receiver.close()


def test_many_clients_get_each_event_from_one_poller(live: tuple[RunningServer, Receiver], tmp_path: Path) -> None:
    from dicom_factory import make_ct

    server, _ = live
    feeds = [SSEClient(server) for _ in range(25)]
    try:
        ds = make_ct(patient_id=f"MANY-{uuid.uuid4().hex[:8]}")
        with server.client() as c:
            sent = time.monotonic()
            r = c.post("/dicomweb/studies", content=multipart([encode(ds)]), headers={"Content-Type": MULTIPART})
            assert r.status_code == 200, r.text
        got = [f.wait_for("study-added", str(ds.StudyInstanceUID), timeout=10) for f in feeds]
        assert len({g["id"] for g in got}) == 1 and max(g["at"] for g in got) - sent < 5.0
    finally:
        for f in feeds:
            f.close()
