"""The durable AI job queue (radsight.ai.jobs) and the worker pool, on SQLite and PostgreSQL.

Real parts only: real CT (the TotalSegmentator crop, 30 slices) ingested through the ingest
service, the test segmentation package installed through the registry, the real pipeline.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from tests.ai_testmodels import make_segmentation_package

from radsight.ai import jobs, registry
from radsight.ai.pipeline import PipelineResult
from radsight.ai.worker import WorkerPool
from radsight.archive import Archive
from radsight.datasets.ct import nifti_to_ct_series
from radsight.index.models import AIFinding, AIJob, AIModel, Instance, Series, Study
from radsight.index.types import utcnow

SMALL_CT = "ct/totalsegmentator/example_ct_sm.nii.gz"


@pytest.fixture(scope="session", name="ct_files")
def ct_files_fixture(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Path]]:
    """Files of a real 30-slice CT series; each patient id gives a new study and series."""
    root = tmp_path_factory.mktemp("ct")
    cache: dict[str, list[Path]] = {}

    def make(patient_id: str) -> list[Path]:
        if patient_id not in cache:
            cache[patient_id] = nifti_to_ct_series(shared_data / SMALL_CT, root / patient_id, patient_id=patient_id)
        return cache[patient_id]

    return make


def uids_of(files: list[Path]) -> tuple[str, str]:
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def ingest_all(archive: Archive, files: list[Path]) -> tuple[str, str]:
    for f in files:
        assert archive.ingest.ingest_file(f).ok
    return uids_of(files)


def install_seg(archive: Archive, tmp_path: Path, name: str = "test-seg") -> AIModel:
    return registry.install(archive, make_segmentation_package(tmp_path / f"pkg-{name}", name=name))


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def job_state(archive: Archive, job_id: int) -> AIJob:
    with archive.db.session() as s:
        job = jobs.get_job(s, job_id)
        assert job is not None
        return job


def result_instances(archive: Archive, study_uid: str, source_series: str) -> dict[str, list[str]]:
    """Instances of the study's series other than the source: {Series Instance UID: [SOP Instance UIDs]}."""
    with archive.db.session() as s:
        rows = s.execute(
            select(Series.series_instance_uid, Instance.sop_instance_uid)
            .join(Instance, Instance.series_pk == Series.id)
            .join(Study, Study.id == Series.study_pk)
            .where(Study.study_instance_uid == study_uid, Series.series_instance_uid != source_series)
        ).all()
    out: dict[str, list[str]] = {}
    for series_uid, uid in rows:
        out.setdefault(series_uid, []).append(uid)
    return out


def assert_one_result_set(archive: Archive, study_uid: str, source_series: str, result: dict[str, object]) -> None:
    """The study holds exactly the job's result series, one instance each: SEG, SR (+ parametric map)."""
    found = result_instances(archive, study_uid, source_series)
    assert sorted(found) == sorted(result["result_series_uids"])  # type: ignore[call-overload]
    assert all(len(v) == 1 for v in found.values()), found
    expected = {result[k] for k in ("seg_sop_instance_uid", "sr_sop_instance_uid", "pmap_sop_instance_uid")} - {""}
    assert {v[0] for v in found.values()} == expected
    assert result["seg_sop_instance_uid"] and result["sr_sop_instance_uid"]


@pytest.fixture
def model(archive: Archive, tmp_path: Path) -> AIModel:
    return install_seg(archive, tmp_path)


def _empty_result() -> PipelineResult:
    return PipelineResult(findings=[])


# -- enqueue --------------------------------------------------------------------------


def test_enqueue_dedupes_and_reruns_only_on_new_instances_or_demand(
    archive: Archive, model: AIModel, ct_files: Callable[[str], list[Path]]
) -> None:
    files = ct_files("DEDUPE")
    study, series = ingest_all(archive, files)
    with archive.db.session() as s:
        first = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model)
        again = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model)
        manual_while_queued = jobs.enqueue(
            s, study_instance_uid=study, series_instance_uid=series, model=model, trigger="manual"
        )
        s.commit()
    assert again.id == first.id == manual_while_queued.id
    with archive.db.session() as s:
        claimed = jobs.claim(s, "w1", 30)
        assert claimed is not None and claimed.id == first.id
        jobs.complete(s, claimed, _empty_result())
        s.commit()
        assert jobs.get_job(s, first.id).state == jobs.DONE  # type: ignore[union-attr]
        # Stable again with nothing new: the done job stands.
        stable = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model)
        s.commit()
    assert stable.id == first.id
    # A new instance in the series: stability queues a new job.
    ds = pydicom.dcmread(files[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert archive.ingest.ingest_bytes(buf.getvalue()).ok
    with archive.db.session() as s:
        newer = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model)
        s.commit()
    assert newer.id != first.id and newer.state == jobs.QUEUED
    # On demand, a finished job runs again (a new job); a queued one is reused.
    with archive.db.session() as s:
        claimed = jobs.claim(s, "w1", 30)
        assert claimed is not None and claimed.id == newer.id
        jobs.complete(s, claimed, _empty_result())
        s.commit()
        rerun = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model, trigger="manual")
        s.commit()
        assert rerun.id not in (first.id, newer.id)
        n = s.scalar(select(func.count()).select_from(AIJob).where(AIJob.series_instance_uid == series))
    assert n == 3


def test_enqueue_refuses_unknown_trigger(archive: Archive, model: AIModel) -> None:
    with archive.db.session() as s, pytest.raises(ValueError, match="unknown trigger"):
        jobs.enqueue(s, study_instance_uid="1.2", series_instance_uid="1.2.3", model=model, trigger="cron")


# -- claim ----------------------------------------------------------------------------


def _queue(archive: Archive, model: AIModel, n: int, **kw: object) -> list[int]:
    with archive.db.session() as s:
        ids = [
            jobs.enqueue(
                s, study_instance_uid="1.2.826.0.1.1", series_instance_uid=f"1.2.826.0.1.1.{i}", model=model, **kw
            ).id  # type: ignore[arg-type]
            for i in range(n)
        ]
        s.commit()
    return ids


def test_concurrent_claims_never_take_the_same_job(archive: Archive, model: AIModel) -> None:
    ids = _queue(archive, model, 40)
    n_workers = 6
    barrier = threading.Barrier(n_workers)
    taken: dict[str, list[int]] = {f"w{i}": [] for i in range(n_workers)}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            barrier.wait()
            while True:
                with archive.db.session() as s:  # each worker: its own session and connection
                    job = jobs.claim(s, name, 60)
                if job is None:
                    return
                taken[name].append(job.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    all_taken = [i for v in taken.values() for i in v]
    assert sorted(all_taken) == sorted(ids), "every job claimed exactly once"
    assert len(set(all_taken)) == len(all_taken)
    with archive.db.session() as s:
        rows = s.execute(select(AIJob.id, AIJob.worker, AIJob.state, AIJob.attempts).where(AIJob.id.in_(ids))).all()
    owner = {i: name for name, v in taken.items() for i in v}
    for job_id, worker, state, attempts in rows:
        assert (worker, state, attempts) == (owner[job_id], jobs.RUNNING, 1)


def test_postgres_skip_locked_lets_a_second_connection_past_a_locked_row(archive: Archive, model: AIModel) -> None:
    """While one transaction holds the first due job, another claims the next one without waiting."""
    if archive.db.engine.dialect.name != "postgresql":
        pytest.skip("FOR UPDATE SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    ids = _queue(archive, model, 2)
    with archive.db.session() as holder:
        locked = holder.scalar(select(AIJob).where(AIJob.id == ids[0]).with_for_update())
        assert locked is not None
        t0 = time.monotonic()
        with archive.db.session() as s:
            job = jobs.claim(s, "w2", 60)
        assert job is not None and job.id == ids[1]
        assert time.monotonic() - t0 < 2
        holder.rollback()


def test_an_expired_lease_is_taken_again_and_the_old_worker_loses_it(archive: Archive, model: AIModel) -> None:
    (job_id,) = _queue(archive, model, 1)
    now = utcnow()
    with archive.db.session() as s:
        a = jobs.claim(s, "worker-a", 10, now=now)
        assert a is not None and a.id == job_id and a.attempts == 1
        assert jobs.claim(s, "worker-b", 10, now=now + timedelta(seconds=5)) is None  # lease still valid
        assert jobs.heartbeat(s, job_id, "worker-a", 10, now=now + timedelta(seconds=5))  # now valid to +15 s
        assert jobs.claim(s, "worker-b", 10, now=now + timedelta(seconds=12)) is None
        b = jobs.claim(s, "worker-b", 10, now=now + timedelta(seconds=16))
        assert b is not None and b.id == job_id and b.worker == "worker-b" and b.attempts == 2
        # The first worker comes back: it can neither extend, complete nor fail the job.
        assert not jobs.heartbeat(s, job_id, "worker-a", 10)
        with pytest.raises(jobs.LeaseLost):
            jobs.complete(s, a, _empty_result())
        s.rollback()
        with pytest.raises(jobs.LeaseLost):
            jobs.fail(s, a, "late")
        s.rollback()
        jobs.complete(s, b, _empty_result())
        s.commit()
        assert jobs.get_job(s, job_id).state == jobs.DONE  # type: ignore[union-attr]


def test_failures_retry_with_backoff_then_fail_with_the_reason(archive: Archive, model: AIModel) -> None:
    (job_id,) = _queue(archive, model, 1, max_attempts=3)
    t = utcnow()
    base = 10.0
    with archive.db.session() as s:
        for attempt, wait in ((1, base), (2, 2 * base)):
            job = jobs.claim(s, "w", 60, now=t)
            assert job is not None and job.attempts == attempt
            assert jobs.fail(s, job, f"boom {attempt}", backoff_base=base, now=t) == jobs.QUEUED
            s.commit()
            view = jobs.JobView.of(jobs.get_job(s, job_id))  # type: ignore[arg-type]
            assert view.state == jobs.QUEUED and view.error == f"boom {attempt}"
            assert jobs.claim(s, "w", 60, now=t + timedelta(seconds=wait - 0.5)) is None, "back-off respected"
            t = t + timedelta(seconds=wait)
        job = jobs.claim(s, "w", 60, now=t)
        assert job is not None and job.attempts == 3
        assert jobs.fail(s, job, "RuntimeError: boom 3", backoff_base=base, now=t) == jobs.FAILED
        s.commit()
        final = jobs.get_job(s, job_id)
        assert final is not None
        assert (final.state, final.attempts, final.error) == (jobs.FAILED, 3, "RuntimeError: boom 3")
        assert jobs.claim(s, "w", 60, now=t + timedelta(days=1)) is None


def test_a_worker_lost_on_the_last_attempt_fails_the_job(archive: Archive, model: AIModel) -> None:
    (job_id,) = _queue(archive, model, 1, max_attempts=1)
    now = utcnow()
    with archive.db.session() as s:
        assert jobs.claim(s, "dies", 5, now=now) is not None
        assert jobs.claim(s, "w2", 5, now=now + timedelta(seconds=6)) is None
        job = jobs.get_job(s, job_id)
        assert job is not None and job.state == jobs.FAILED and "lease expired" in job.error


def test_backoff_doubles_and_is_capped() -> None:
    assert [jobs.backoff_seconds(a, 10) for a in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert jobs.backoff_seconds(30, 10) == jobs.MAX_BACKOFF_SECONDS


# -- the pool, with the real pipeline -----------------------------------------------------


@pytest.fixture
def pool_factory(archive: Archive) -> Iterator[Callable[..., WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(n: int = 1, **kw: object) -> WorkerPool:
        pool = WorkerPool(archive, n, poll_seconds=0.1, **kw)  # type: ignore[arg-type]
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        p.stop()


def test_pool_runs_a_job_to_done_with_findings_and_one_result_set(
    archive: Archive, model: AIModel, ct_files: Callable[[str], list[Path]], pool_factory: Callable[..., WorkerPool]
) -> None:
    study, series = ingest_all(archive, ct_files("POOL"))
    with archive.db.session() as s:
        job_id = jobs.enqueue(s, study_instance_uid=study, series_instance_uid=series, model=model).id
        s.commit()
    pool_factory(1)
    wait_for(lambda: job_state(archive, job_id).state == jobs.DONE, 120, "the job to finish")
    job = job_state(archive, job_id)
    view = jobs.JobView.of(job)
    assert view.attempts == 1 and view.error == "" and view.result is not None
    assert_one_result_set(archive, study, series, view.result)
    with archive.db.session() as s:
        findings = list(s.scalars(select(AIFinding).where(AIFinding.job_pk == job_id)))
    assert findings and all(f.model_name == "test-seg" and f.model_version == "1.0" for f in findings)
    assert {f.seg_sop_instance_uid for f in findings} == {view.result["seg_sop_instance_uid"]}


def test_pool_retries_a_failing_job_then_fails_it_with_the_reason(
    tmp_path: Path, db_url: str, ct_files: Callable[[str], list[Path]]
) -> None:
    from tests.conftest import make_settings

    archive = Archive.open(make_settings(tmp_path / "h", db_url, ai_retry_backoff_seconds=0.05))
    pool: WorkerPool | None = None
    try:
        model = install_seg(archive, tmp_path)
        study, _series = ingest_all(archive, ct_files("RETRY"))
        with archive.db.session() as s:
            # A series that is not in the archive: the pipeline raises on every attempt.
            job_id = jobs.enqueue(s, study_instance_uid=study, series_instance_uid="1.2.3.404", model=model).id
            s.commit()
        pool = WorkerPool(archive, 1, poll_seconds=0.05)
        pool.start()
        wait_for(lambda: job_state(archive, job_id).state == jobs.FAILED, 60, "the job to fail")
        job = job_state(archive, job_id)
        assert job.attempts == 3 and "1.2.3.404" in job.error
        # A model removed after queueing fails at once (nothing a retry could fix). The pool is
        # stopped first: a running pool would claim the job at once and its stop would count an attempt.
        pool.stop()
        with archive.db.session() as s:
            job2 = jobs.enqueue(s, study_instance_uid=study, series_instance_uid="1.2.3.405", model=model).id
            s.commit()
        registry.remove(archive, "test-seg")
        pool = WorkerPool(archive, 1, poll_seconds=0.05)
        pool.start()
        wait_for(lambda: job_state(archive, job2).state == jobs.FAILED, 60, "the second job to fail")
        job = job_state(archive, job2)
        assert job.attempts == 1 and "not installed" in job.error
    finally:
        if pool is not None:
            pool.stop()
        archive.close()


def test_concurrent_enqueues_of_one_series_make_one_job(archive: Archive, model: AIModel) -> None:
    """The stability thread and REST calls racing on one series + model: one job, returned to all."""
    n = 6
    barrier = threading.Barrier(n)
    got: list[int] = []
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            with archive.db.session() as s:
                barrier.wait()
                job = jobs.enqueue(
                    s, study_instance_uid="1.2.826.0.9", series_instance_uid="1.2.826.0.9.1", model=model,
                    trigger="manual",
                )
                s.commit()
                got.append(job.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(got) == n and len(set(got)) == 1
    with archive.db.session() as s:
        count = select(func.count()).select_from(AIJob).where(AIJob.series_instance_uid == "1.2.826.0.9.1")
        assert s.scalar(count) == 1
