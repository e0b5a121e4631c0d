"""Findings: rows recorded from a real pipeline run, and the REST API (list, accept, reject)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from ai_testmodels import make_classification_package, make_segmentation_package
from conftest import RunningServer
from radsight.ai import findings
from radsight.ai.package import ModelPackage, load_package
from radsight.ai.pipeline import PipelineResult, run_model
from radsight.api.auth import add_user
from radsight.archive import Archive
from radsight.datasets.cxr import cxr_to_dicom
from radsight.index.models import AIFinding, AIJob

CXR_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "kermany224" / "train" / "NORMAL"
CT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "totalsegmentator" / "example_ct_dicom"


def _run_job(archive: Archive, tmp_path: Path) -> tuple[AIJob, PipelineResult]:
    """A real DX image, a job row for it and a real run of the test classifier."""
    jpeg = sorted(CXR_DIR.glob("*.jp*g"))[0]
    ds = cxr_to_dicom(jpeg, tmp_path / "cxr.dcm", label="NORMAL", patient_id=f"F-{uuid.uuid4().hex[:8]}")
    assert archive.ingest.ingest_file(tmp_path / "cxr.dcm").ok
    package = load_package(make_classification_package(tmp_path / "cls", size=(64, 64), threshold=0.2))
    return _job_for(archive, package, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))


def _job_for(archive: Archive, package: ModelPackage, study: str, series: str) -> tuple[AIJob, PipelineResult]:
    """A job row for ``package`` on the series and a real run of it."""
    now = datetime.now(UTC)
    with archive.db.session() as s:
        job = AIJob(
            study_instance_uid=study,
            series_instance_uid=series,
            model_name=package.metadata.name,
            model_version=package.metadata.version,
            model_sha256=package.metadata.sha256,
            trigger="manual",
            state="running",
            next_run_at=now,
            created_at=now,
        )
        s.add(job)
        s.commit()
        s.refresh(job)
        s.expunge(job)
    result = run_model(
        archive,
        package,
        study_instance_uid=job.study_instance_uid,
        series_instance_uid=str(job.series_instance_uid),
        job_id=job.id,
    )
    return job, result


def test_record_findings_is_idempotent_and_listed(archive: Archive, tmp_path: Path) -> None:
    job, result = _run_job(archive, tmp_path)
    with archive.db.session() as s:
        rows = findings.record_findings(s, job, result)
        assert len(rows) == 1 and rows[0].id is not None
        s.rollback()  # record_findings does not commit: the caller commits with the job's completion
        assert s.scalar(select(func.count()).select_from(AIFinding)) == 0
        findings.record_findings(s, job, result)
        s.commit()
        findings.record_findings(s, job, result)  # a retried job replaces its findings
        s.commit()
        assert s.scalar(select(func.count()).select_from(AIFinding)) == 1
        (item,) = findings.findings_for_study(s, job.study_instance_uid)
    assert item["model"] == "test-cls" and item["model_version"] == "1.0"
    assert item["label"] == "Pneumonia"
    assert item["probability"] == pytest.approx(result.findings[0].probability)
    assert item["positive"] is True  # threshold 0.2 in this package
    assert item["status"] == "pending" and item["decided_by"] is None
    assert item["pmap_sop_instance_uid"] == result.pmap_sop_instance_uid
    assert item["sr_sop_instance_uid"] == result.sr_sop_instance_uid
    assert item["seg_sop_instance_uid"] is None
    assert {item["pmap_series_instance_uid"], item["sr_series_instance_uid"]} == set(result.result_series_uids)
    assert item["location"]["sop_instance_uid"] == result.findings[0].location["sop_instance_uid"]
    with archive.db.session() as s:
        with pytest.raises(ValueError, match="status must be"):
            findings.decide(s, archive.ai_hooks, item["id"], "maybe", "admin")  # type: ignore[arg-type]
        with pytest.raises(findings.FindingNotFound):
            findings.decide(s, archive.ai_hooks, item["id"] + 1000, "accepted", "admin")


def recorded_two_label_run(archive: Archive, ct_dir: Path, package_dir: Path) -> tuple[str, PipelineResult]:
    """The real CT imported, the two-label test model run on it as a job, its findings recorded."""
    from radsight.index.models import Series
    from radsight.ingest.importer import import_paths

    import_paths(archive.ingest, [ct_dir], fill_missing_uids=True)
    with archive.db.session() as s:
        series = s.scalars(select(Series)).one()
        study_uid, series_uid = series.study.study_instance_uid, series.series_instance_uid
    package = load_package(make_segmentation_package(package_dir, threshold_hu=-200.5, dense_hu=150.5))
    job, result = _job_for(archive, package, study_uid, series_uid)
    with archive.db.session() as s:
        findings.record_findings(s, job, result)
        s.commit()
    return study_uid, result


def test_each_segmentation_finding_points_to_its_labels_map(archive: Archive, tmp_path: Path) -> None:
    study_uid, result = recorded_two_label_run(archive, CT_DIR, tmp_path / "seg2")
    with archive.db.session() as s:
        items = findings.findings_for_study(s, study_uid)
    assert [i["label"] for i in items] == ["Soft tissue", "Dense tissue"]
    maps = [i["pmap_sop_instance_uid"] for i in items]
    assert maps == [f.pmap_sop_instance_uid for f in result.findings] and len(set(maps)) == 2
    assert maps[0] == result.pmap_sop_instance_uid  # the job's own record keeps the first label's map
    # Both maps are stored, in one series (the map series among the job's result series).
    (map_series,) = {i["pmap_series_instance_uid"] for i in items}
    assert map_series in result.result_series_uids
    assert {i["seg_sop_instance_uid"] for i in items} == {result.seg_sop_instance_uid}


def test_findings_rest_accept_reject_round_trip(server: RunningServer, tmp_path: Path) -> None:
    job, result = _run_job(server.archive, tmp_path)
    with server.archive.db.session() as s:
        findings.record_findings(s, job, result)
        s.commit()
        add_user(s, f"reader-{job.id}", "reader-secret-1", "radiologist")
    study = job.study_instance_uid
    url = f"{server.base_url}/api/studies/{study}/findings"
    assert httpx.get(url).status_code == 401

    with server.client() as admin:
        listed = admin.get(url)
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()
        for key in ("id", "model", "model_version", "label", "probability", "positive", "measurements", "status"):
            assert key in item
        assert item["status"] == "pending"
        assert item["measurements"] == [{"name": "Probability", "value": item["probability"], "unit": "1"}]
        assert admin.get(f"{server.base_url}/api/studies/1.2.3.999/findings").json() == []

        before = datetime.now(UTC)
        accepted = admin.post(f"{server.base_url}/api/findings/{item['id']}/decision", json={"status": "accepted"})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted" and accepted.json()["decided_by"] == "admin"
        decided_at = datetime.fromisoformat(accepted.json()["decided_at"])
        if decided_at.tzinfo is None:  # SQLite returns naive UTC
            decided_at = decided_at.replace(tzinfo=UTC)
        assert before - timedelta(seconds=5) <= decided_at <= datetime.now(UTC) + timedelta(seconds=5)

        bad = admin.post(f"{server.base_url}/api/findings/{item['id']}/decision", json={"status": "maybe"})
        assert bad.status_code == 422
        missing = admin.post(f"{server.base_url}/api/findings/999999/decision", json={"status": "accepted"})
        assert missing.status_code == 404

    with httpx.Client(base_url=server.base_url, auth=(f"reader-{job.id}", "reader-secret-1"), timeout=60) as reader:
        rejected = reader.post(f"/api/findings/{item['id']}/decision", json={"status": "rejected"})
        assert rejected.status_code == 200, rejected.text
        (after,) = reader.get(url).json()  # rejected stays visible, marked rejected
    assert after["status"] == "rejected"
    assert after["decided_by"] == f"reader-{job.id}"
    assert after["pmap_sop_instance_uid"] == result.pmap_sop_instance_uid
