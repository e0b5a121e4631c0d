"""Group commit: instances that arrive together share one index transaction, and each is
acknowledged only after the commit that holds it; one bad instance never fails the others."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from tests.dicom_factory import make_ct

from radsight.archive import Archive
from radsight.check import check_archive
from radsight.index.models import Instance, Series, Study
from radsight.ingest import Outcome
from radsight.ingest.group_commit import GroupCommit
from radsight.ingest.index_writer import IndexWriter
from radsight.ingest.index_writer import PendingInstance as _Pending


def _pending(n: int) -> _Pending:
    return _Pending(parsed=None, key=f"k{n}", source="test", calling_ae="", overwrite=False)  # type: ignore[arg-type]


def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    batches: list[list[str]] = []
    first_started, release = threading.Event(), threading.Event()

    def commit(batch: list[_Pending]) -> None:
        batches.append([b.key for b in batch])
        if len(batches) == 1:
            first_started.set()
            assert release.wait(10)
        for b in batch:
            b.result = b.key.upper()

    gc = GroupCommit(commit)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(gc.submit, _pending(0))
        assert first_started.wait(10)
        rest = [pool.submit(gc.submit, _pending(i)) for i in range(1, 8)]
        # the seven later callers queue behind the commit in progress
        while len(gc._queue) < 7:
            threading.Event().wait(0.01)
        assert not any(f.done() for f in rest), "nobody is acknowledged before their commit"
        release.set()
        assert first.result(10) == "K0"
        assert [f.result(10) for f in rest] == [f"K{i}" for i in range(1, 8)]
    assert batches[0] == ["k0"]
    assert sorted(batches[1]) == sorted(f"k{i}" for i in range(1, 8)), batches


def test_an_error_reaches_only_its_own_caller() -> None:
    def commit(batch: list[_Pending]) -> None:
        for b in batch:
            if b.key == "k3":
                b.error = ValueError("bad row")
            else:
                b.result = "ok"

    gc = GroupCommit(commit)
    with ThreadPoolExecutor(6) as pool:
        futures = {i: pool.submit(gc.submit, _pending(i)) for i in range(6)}
        for i, f in futures.items():
            if i == 3:
                with pytest.raises(ValueError, match="bad row"):
                    f.result(10)
            else:
                assert f.result(10) == "ok"


def test_concurrent_ingest_stores_everything_with_fewer_commits(archive: Archive, tmp_path: Path) -> None:
    study = make_ct(tmp_path / "seed.dcm")
    files = [tmp_path / "seed.dcm"]
    for i in range(1, 60):
        make_ct(tmp_path / f"{i}.dcm", study_uid=study.StudyInstanceUID, series_uid=study.SeriesInstanceUID
                if i % 2 else None, instance_number=i)
    files += [tmp_path / f"{i}.dcm" for i in range(1, 60)]
    files += files[:5]  # the same instances again: duplicates, in the same rush
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(archive.db.engine, "commit", count)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(archive.ingest.ingest_file, files))
    finally:
        event.remove(archive.db.engine, "commit", count)
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.STORED) == 60
    assert outcomes.count(Outcome.DUPLICATE) == 5
    with archive.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 60
        assert s.scalar(select(Study.number_of_instances)) == 60
        assert sum(s.scalars(select(Series.number_of_instances))) == 60
    assert check_archive(archive).ok
    assert commits < 60, f"{commits} commits for 60 instances: nothing was grouped"


def test_one_instance_failing_in_a_group_does_not_fail_the_others(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(12):
        make_ct(tmp_path / f"{i}.dcm", patient_id="BAD" if i == 7 else "GOOD")
    real = IndexWriter.index_rows

    def index_rows(self, c, p, key, **kw):  # type: ignore[no-untyped-def]
        if p.dataset.PatientID == "BAD":
            raise RuntimeError("index refused this row")
        return real(self, c, p, key, **kw)

    monkeypatch.setattr(IndexWriter, "index_rows", index_rows)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(archive.ingest.ingest_file, sorted(tmp_path.glob("*.dcm"))))
    refused = [r for r in results if r.outcome is Outcome.REFUSED]
    assert len(refused) == 1 and "index refused this row" in refused[0].message
    assert sum(r.outcome is Outcome.STORED for r in results) == 11
    with archive.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 11
    report = check_archive(archive)
    assert report.ok, "the refused instance's file was not left behind"


def test_index_transactions_share_one_connection_and_survive_losing_it(archive: Archive, tmp_path: Path) -> None:
    ingest = archive.ingest

    def store(i: int) -> str:
        ds = make_ct(patient_id=f"GC-conn-{i}")
        path = tmp_path / f"conn{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert ingest.ingest_file(path).outcome is Outcome.STORED
        return str(ds.SOPInstanceUID)

    store(0)
    writer = ingest.index._writer
    assert writer is not None
    store(1)
    assert ingest.index._writer is writer  # kept between transactions, not checked out per batch

    writer.dbapi_connection.close()  # the connection dies under the service (a server restart)
    uid = store(2)  # rolled back, then run again on a new connection
    assert ingest.index._writer is not None and ingest.index._writer is not writer
    with archive.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance).where(Instance.sop_instance_uid == uid)) == 1

    ingest.close()
    assert ingest.index._writer is None
    store(3)  # a closed service's next transaction takes a connection again
