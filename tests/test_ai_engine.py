"""The AI engine end to end, on SQLite and PostgreSQL: stability trigger, a real server with the
engine (C-STORE with dcmtk's storescu -> stable -> job -> SEG/SR stored, seen by QIDO-RS), a
worker killed with SIGKILL mid-job, on-demand runs through REST and the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import BACKENDS, REPO, RunningServer, _pg_database, make_settings, start_server
from tests.test_ai_jobs import (
    assert_one_result_set,
    ct_files_fixture,  # noqa: F401  (the ct_files fixture)
    ingest_all,
    install_seg,
    job_state,
    uids_of,
    wait_for,
)
from typer.testing import CliRunner

from radsight.ai import jobs, registry, routing
from radsight.ai.stability import StabilityMonitor
from radsight.ai.worker import WorkerPool
from radsight.archive import Archive
from radsight.cli import app
from radsight.index.models import AIFinding, AIJob
from radsight.index.types import utcnow

STABLE_SECONDS = 1.0


def study_jobs(archive: Archive, study_uid: str) -> list[AIJob]:
    with archive.db.session() as s:
        return jobs.jobs_for_study(s, study_uid)


# -- stability, with an explicit clock ---------------------------------------------------------


def test_stability_waits_for_quiet_then_queues_one_job_per_matching_model(
    archive: Archive, tmp_path: Path, ct_files: Callable[[str], list[Path]]
) -> None:
    install_seg(archive, tmp_path)
    monitor = StabilityMonitor(archive, stable_seconds=100.0)
    archive.ingest.subscribe(monitor.on_stored)
    files = ct_files("STAB")
    t0 = time.monotonic()
    study, series = ingest_all(archive, files[:20])
    assert monitor.pending() == [series]
    assert monitor.check(now=t0 + 50) == []
    ingest_all(archive, files[20:])  # arrivals restart the quiet period
    t1 = time.monotonic()
    assert monitor.check(now=t1 + 99) == [] and study_jobs(archive, study) == []
    queued = monitor.check(now=t1 + 100.5)
    assert [(j.series_instance_uid, j.model_name, j.trigger) for j in queued] == [(series, "test-seg", "stable")]
    assert monitor.pending() == [] and monitor.check(now=t1 + 1000) == []
    # The job runs; its SEG/SR/parametric map arrive through ingest and are never watched.
    pool = WorkerPool(archive, 1, poll_seconds=0.1)
    pool.start()
    try:
        wait_for(lambda: job_state(archive, queued[0].id).state == jobs.DONE, 120, "the job")
    finally:
        pool.stop()
    assert monitor.pending() == []
    # A restart: recovery watches the recent series again; the done job covers them, so none is added.
    fresh = StabilityMonitor(archive, stable_seconds=100.0)
    assert fresh.recover() == 1
    again = fresh.check(now=time.monotonic() + 101)
    assert [j.id for j in again] == [queued[0].id]
    assert [j.id for j in study_jobs(archive, study)] == [queued[0].id]


def test_series_stable_in_one_pass_share_one_read_of_the_routing_table(
    archive: Archive, tmp_path: Path, ct_files: Callable[[str], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_seg(archive, tmp_path)
    monitor = StabilityMonitor(archive, stable_seconds=100.0)
    archive.ingest.subscribe(monitor.on_stored)
    reads: list[int] = []
    real = routing.routing_table
    monkeypatch.setattr(routing, "routing_table", lambda a: reads.append(1) or real(a))
    first = [ingest_all(archive, ct_files(f"SHARE{i}")) for i in range(3)]
    queued = monitor.check(now=time.monotonic() + 101)
    assert sorted(j.series_instance_uid for j in queued) == sorted(series for _, series in first)
    assert len(reads) == 1
    assert monitor.check(now=time.monotonic() + 1000) == [] and len(reads) == 1  # nothing stable: no read
    # A model disabled between passes: the next pass reads the table again and queues nothing.
    assert registry.set_enabled(archive, "test-seg", False)
    ingest_all(archive, ct_files("SHARE3"))
    assert monitor.check(now=time.monotonic() + 101) == [] and len(reads) == 2


def test_recovery_queues_a_series_stored_while_the_engine_was_down(
    archive: Archive, tmp_path: Path, ct_files: Callable[[str], list[Path]]
) -> None:
    install_seg(archive, tmp_path)
    _study, series = ingest_all(archive, ct_files("RECOVER"))  # no monitor: the event is "lost"
    monitor = StabilityMonitor(archive, stable_seconds=100.0)
    assert monitor.recover() == 1
    queued = monitor.check(now=time.monotonic() + 101)
    assert [(j.series_instance_uid, j.state) for j in queued] == [(series, jobs.QUEUED)]


# -- a real server with the engine ---------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def ai_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("ai-server")
    gen = None
    if request.param == "postgres":
        gen = _pg_database()
        url = next(gen)
    else:
        url = f"sqlite:///{home / 'index.sqlite'}"
    # The model is installed before the engine starts, as an operator would.
    a = Archive.open(make_settings(home / "home", url))
    install_seg(a, home)
    a.close()
    running, stop, _ = start_server(
        home / "home", url, ai=True, ai_stable_seconds=STABLE_SECONDS, ai_retry_backoff_seconds=0.2
    )
    try:
        yield running
    finally:
        stop()  # type: ignore[operator]
        if gen is not None:
            gen.close()


def test_storescu_series_turns_stable_and_its_results_are_stored_in_the_study(
    ai_server: RunningServer, ct_files: Callable[[str], list[Path]]
) -> None:
    storescu = shutil.which("storescu")
    assert storescu is not None, "dcmtk's storescu is needed"
    files = ct_files("E2E")
    study, series = uids_of(files)
    sent = subprocess.run(
        [storescu, "-aet", "AITEST", "-aec", ai_server.ae_title, "127.0.0.1", str(ai_server.dicom_port),
         *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert sent.returncode == 0, sent.stderr
    archive = ai_server.archive
    wait_for(lambda: [j for j in study_jobs(archive, study) if j.state == jobs.DONE], 180, "a done job")
    time.sleep(STABLE_SECONDS * 2)  # the results' own arrival must not trigger anything
    (job,) = study_jobs(archive, study)
    view = jobs.JobView.of(job)
    assert (view.series_instance_uid, view.model, view.trigger, view.attempts) == (series, "test-seg", "stable", 1)
    assert view.result is not None
    assert_one_result_set(archive, study, series, view.result)
    with ai_server.client() as c:
        qido = c.get(f"/dicomweb/studies/{study}/series", headers={"Accept": "application/dicom+json"})
        assert qido.status_code == 200
        shown = {item["0020000E"]["Value"][0]: item["00080060"]["Value"][0] for item in qido.json()}
        assert set(shown) == {series, *view.result["result_series_uids"]}
        assert {"SEG", "SR"} <= set(shown.values())
        listed = c.get(f"/api/studies/{study}/jobs").json()
        assert [(j["id"], j["state"], j["result"]) for j in listed] == [(job.id, "done", view.result)]
        assert c.get(f"/api/jobs/{job.id}").json()["state"] == "done"


def test_instances_still_arriving_keep_the_series_unstable(
    ai_server: RunningServer, ct_files: Callable[[str], list[Path]]
) -> None:
    """Through the real ingest path, an instance every 0.25 s for 3 s (3 x the stable time): no job
    until they stop, then exactly one."""
    archive = ai_server.archive
    files = ct_files("TRICKLE")[:12]
    study, _series = uids_of(files)
    seen_early: list[int] = []
    for f in files:
        assert archive.ingest.ingest_file(f).ok
        seen_early += [j.id for j in study_jobs(archive, study)]
        time.sleep(STABLE_SECONDS / 4)
    assert seen_early == [], "a job was queued while instances were still arriving"
    wait_for(lambda: study_jobs(archive, study), 30, "the stable series' job")
    wait_for(lambda: study_jobs(archive, study)[0].state == jobs.DONE, 180, "the job to finish")
    time.sleep(STABLE_SECONDS * 2)
    assert len(study_jobs(archive, study)) == 1


# -- a worker killed mid-job ----------------------------------------------------------------------

_DOOMED_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from radsight.ai.worker import WorkerPool, execute_job
    from radsight.archive import Archive
    from radsight.config import Settings

    archive = Archive.open(Settings(home=Path(sys.argv[1]), database_url=sys.argv[2]))

    def store_then_hang(archive, job):
        execute_job(archive, job)  # the real pipeline: SEG, SR, parametric map stored
        print("STORED", job.id, flush=True)
        time.sleep(600)  # killed here: results stored, job not completed, findings not recorded

    pool = WorkerPool(archive, 1, execute=store_then_hang, poll_seconds=0.1, lease_seconds=2.0)
    pool.start()
    time.sleep(600)
    """
)


def test_a_worker_killed_mid_job_finishes_after_restart_with_one_result_set(
    tmp_path: Path, db_url: str, ct_files: Callable[[str], list[Path]]
) -> None:
    home = tmp_path / "home"
    archive = Archive.open(make_settings(home, db_url))
    proc: subprocess.Popen[str] | None = None
    pool: WorkerPool | None = None
    try:
        model = install_seg(archive, tmp_path)
        study, series = ingest_all(archive, ct_files("CRASH"))
        with archive.db.session() as s:
            job_id = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model).id
            s.commit()
        proc = subprocess.Popen(
            [sys.executable, "-c", _DOOMED_WORKER, str(home), db_url],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 180
        while not line.startswith("STORED") and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert line.split() == ["STORED", str(job_id)], f"worker did not store results: {line!r}"
        held = job_state(archive, job_id)
        assert held.state == jobs.RUNNING and held.worker.split(":")[1] == str(proc.pid)
        first_results = {k: sorted(v) for k, v in _results(archive, study, series).items()}
        assert first_results, "the killed worker had stored its result instances"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # "Restart": a new pool takes the job once the dead worker's lease (2 s) has expired.
        pool = WorkerPool(archive, 1, poll_seconds=0.1, lease_seconds=5.0)
        pool.start()
        wait_for(lambda: job_state(archive, job_id).state == jobs.DONE, 180, "the job to finish after restart")
        job = job_state(archive, job_id)
        assert job.attempts == 2 and job.worker.startswith(pool.prefix)
        view = jobs.JobView.of(job)
        assert view.result is not None
        assert_one_result_set(archive, study, series, view.result)
        assert {k: sorted(v) for k, v in _results(archive, study, series).items()} == first_results
        with archive.db.session() as s:
            n_findings = s.scalar(select(func.count()).select_from(AIFinding).where(AIFinding.job_pk == job_id))
            n_jobs = s.scalar(select(func.count()).select_from(AIJob).where(AIJob.study_instance_uid == study))
        assert n_jobs == 1 and n_findings == 1  # the test model has one label
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if pool is not None:
            pool.stop()
        archive.close()


def _results(archive: Archive, study: str, series: str) -> dict[str, list[str]]:
    from tests.test_ai_jobs import result_instances

    return result_instances(archive, study, series)


# -- on demand: REST and CLI ------------------------------------------------------------------


def test_rest_runs_a_study_on_demand_and_reports_its_jobs(
    server: RunningServer, tmp_path: Path, ct_files: Callable[[str], list[Path]]
) -> None:
    """The plain server (no engine): the REST call queues; a worker pool then runs the job."""
    archive = server.archive
    with archive.db.session() as s:
        installed = any(m.name == "test-seg" for m in __import__("radsight.ai.registry").ai.registry.list_models(s))
    if not installed:
        install_seg(archive, tmp_path)
    study, series = ingest_all(archive, ct_files("REST"))
    with server.client() as c:
        assert httpx.post(f"{server.base_url}/api/studies/{study}/ai/run").status_code == 401
        r = c.post(f"/api/studies/{study}/ai/run")
        assert r.status_code == 202, r.text
        body = r.json()
        (job_id,) = body["job_ids"]
        assert body["jobs"][0]["state"] == "queued" and body["jobs"][0]["series_instance_uid"] == series
        again = c.post(f"/api/studies/{study}/ai/run", json={"model": "test-seg"})
        assert again.status_code == 202 and again.json()["job_ids"] == [job_id], "a queued job is reused"
        assert c.post("/api/studies/1.2.3.999/ai/run").status_code == 404
        missing_model = c.post(f"/api/studies/{study}/ai/run", json={"model": "no-such-model"})
        assert missing_model.status_code == 404 and "no-such-model" in missing_model.json()["detail"]
        assert c.get("/api/jobs/987654").status_code == 404
        listed = c.get(f"/api/studies/{study}/jobs").json()
        assert [(j["id"], j["model"], j["version"], j["state"], j["attempts"]) for j in listed] == [
            (job_id, "test-seg", "1.0", "queued", 0)
        ]
        assert c.get("/api/studies/1.2.3.999/jobs").json() == []
        pool = WorkerPool(archive, 1, poll_seconds=0.1)
        pool.start()
        try:
            wait_for(lambda: c.get(f"/api/jobs/{job_id}").json()["state"] == "done", 180, "the job over REST")
        finally:
            pool.stop()
        done = c.get(f"/api/jobs/{job_id}").json()
        assert done["attempts"] == 1 and done["error"] == "" and done["finished_at"] and done["started_at"]
        assert done["result"]["seg_sop_instance_uid"] and done["result"]["sr_sop_instance_uid"]
        # Run again on demand: a done job is not reused.
        rerun = c.post(f"/api/studies/{study}/ai/run")
        assert rerun.status_code == 202 and rerun.json()["job_ids"] != [job_id]
        assert rerun.json()["jobs"][0]["trigger"] == "api"


def test_cli_runs_a_study_and_waits_then_lists_its_jobs(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, ct_files: Callable[[str], list[Path]]
) -> None:
    import json

    monkeypatch.setenv("RADSIGHT_DATABASE_URL", db_url)
    monkeypatch.delenv("RADSIGHT_CONFIG", raising=False)
    home = tmp_path / "home"
    archive = Archive.open(make_settings(home, db_url))
    try:
        install_seg(archive, tmp_path)
        study, series = ingest_all(archive, ct_files("CLI"))
    finally:
        archive.close()
    runner = CliRunner()
    bad = runner.invoke(app, ["ai", "run", "1.2.3.999", "--home", str(home)])
    assert bad.exit_code == 1 and "not in the archive" in bad.output
    bad_model = runner.invoke(app, ["ai", "run", study, "--model", "nope", "--home", str(home)])
    assert bad_model.exit_code == 1 and "nope" in bad_model.output
    res = runner.invoke(app, ["ai", "run", study, "--model", "test-seg", "--wait", "--json", "--home", str(home)])
    assert res.exit_code == 0, res.output
    (ran,) = json.loads(res.stdout)
    assert (ran["series_instance_uid"], ran["model"], ran["state"], ran["trigger"]) == (
        series, "test-seg", "done", "manual"
    )
    assert ran["result"]["seg_sop_instance_uid"]
    listed = runner.invoke(app, ["ai", "jobs", study, "--json", "--home", str(home)])
    assert listed.exit_code == 0
    assert [j["id"] for j in json.loads(listed.stdout)] == [ran["id"]]
    table = runner.invoke(app, ["ai", "jobs", study, "--home", str(home)])
    assert table.exit_code == 0 and "test-seg" in table.stdout and "done" in table.stdout


def test_engine_stop_leaves_a_running_job_to_the_next_start(
    tmp_path: Path, db_url: str, ct_files: Callable[[str], list[Path]]
) -> None:
    """A clean stop (SIGTERM) during a job: no result recorded, lease expired at once, next start runs it."""
    from radsight.ai.engine import AIEngine
    from radsight.ai.worker import execute_job

    archive = Archive.open(make_settings(tmp_path / "home", db_url, ai_lease_seconds=300))
    try:
        model = install_seg(archive, tmp_path)
        study, series = ingest_all(archive, ct_files("STOP"))
        started = threading.Event()
        release = threading.Event()

        def slow(a: Archive, job: AIJob) -> object:
            started.set()
            release.wait(30)
            raise RuntimeError("interrupted by shutdown")

        engine = AIEngine(archive, workers=1)
        engine.pool.execute = slow
        engine.start()
        with archive.db.session() as s:
            job_id = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model).id
            s.commit()
        assert started.wait(30)
        engine.stop(timeout=0.5)
        release.set()
        held = job_state(archive, job_id)
        assert held.state == jobs.RUNNING and held.result_json is None
        assert held.lease_expires_at is not None and held.lease_expires_at <= utcnow()  # UTC-aware on every database
        restarted = AIEngine(archive, workers=1)
        restarted.pool.execute = execute_job
        restarted.start()
        try:
            wait_for(lambda: job_state(archive, job_id).state == jobs.DONE, 180, "the job after restart")
        finally:
            restarted.stop()
        assert job_state(archive, job_id).attempts == 2
    finally:
        archive.close()


def test_worker_processes_run_jobs_outside_the_server_process(
    tmp_path: Path, db_url: str, ct_files: Callable[[str], list[Path]]
) -> None:
    """``ai_worker_processes``: the same claim loop in a spawned process (as a remote worker would)."""
    from radsight.ai.engine import AIEngine
    from radsight.ai.worker import ProcessWorkerPool

    archive = Archive.open(make_settings(tmp_path / "home", db_url, ai_worker_processes=True))
    engine = AIEngine(archive, workers=1)
    try:
        assert isinstance(engine.pool, ProcessWorkerPool)
        model = install_seg(archive, tmp_path)
        study, series = ingest_all(archive, ct_files("PROC"))
        engine.start()
        with archive.db.session() as s:
            job_id = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model).id
            s.commit()
        engine.pool.wake()
        wait_for(lambda: job_state(archive, job_id).state == jobs.DONE, 180, "the job in a worker process")
        job = job_state(archive, job_id)
        worker_pid = int(job.worker.split(":")[1])
        assert worker_pid in engine.pool.pids and worker_pid != os.getpid()
        assert job.result_json is not None
        assert_one_result_set(archive, study, series, jobs.JobView.of(job).result)  # type: ignore[arg-type]
    finally:
        engine.stop()
        archive.close()
    assert engine.pool.pids == []
