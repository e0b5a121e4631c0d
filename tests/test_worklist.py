"""The worklist on SQLite and PostgreSQL: priority from order priority, AI urgency and aging;
filters; claims (409 for a second reader, expiry); sign-off needing decisions; the event log."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from ai_testmodels import make_classification_package
from conftest import RunningServer
from dicom_factory import make_ct
from radsight import wiring
from radsight.ai import findings, jobs, registry
from radsight.ai.pipeline import FindingData, PipelineResult
from radsight.ai.worker import run_claimed
from radsight.api.auth import add_user
from radsight.archive import Archive
from radsight.index.models import AIJob, AIModel, Study, WorklistAlert, WorklistStudy
from radsight.ingest import Outcome
from radsight.worklist import events, priority, service
from radsight.worklist.arrival import IngestListener, backfill

READER, READER_PASSWORD = "reader2", "reader2-secret"


def store_study(
    archive: Archive,
    tmp_path: Path,
    *,
    modality: str = "CT",
    requested_priority: str | None = None,
    study_priority_id: str | None = None,
    patient_name: str = "Worklist^Test",
    accession: str = "",
) -> str:
    """One real instance stored through ingest; returns its Study Instance UID."""
    ds = make_ct(
        modality=modality,
        patient_name=patient_name,
        patient_id=f"WL-{uuid.uuid4().hex[:8]}",
        accession=accession or uuid.uuid4().hex[:12],
    )
    if requested_priority is not None:
        ds.RequestedProcedurePriority = requested_priority
    if study_priority_id is not None:
        ds.StudyPriorityID = study_priority_id
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert archive.ingest.ingest_file(path).ok
    return str(ds.StudyInstanceUID)


def install_classifier(archive: Archive, tmp_path: Path) -> AIModel:
    """The test classifier; its label's urgency thresholds: critical 0.9, urgent 0.7."""
    with archive.db.session() as s:
        model = s.scalar(select(AIModel).where(AIModel.name == "test-cls"))
    return model or registry.install(archive, make_classification_package(tmp_path / "pkg-cls"))


def run_job_with(archive: Archive, model: AIModel, study_uid: str, probability: float) -> AIJob:
    """A queued job taken through the worker's real path (claim, record findings, complete),
    with the inference replaced by a fixed probability."""
    with archive.db.session() as s:
        job = jobs.enqueue(s, study_instance_uid=study_uid, series_instance_uid=None, model=model, trigger="manual")
        s.commit()
        job_id = job.id
    with archive.db.session() as s:
        claimed = jobs.claim(s, "test-worker", 60, job_ids=[job_id])
    assert claimed is not None

    def execute(_archive: Archive, _job: AIJob) -> PipelineResult:
        return PipelineResult(findings=[FindingData(label="Pneumonia", probability=probability, positive=True)])

    assert run_claimed(archive, claimed, execute=execute) == jobs.DONE
    return claimed


def row(archive: Archive, study_uid: str) -> WorklistStudy:
    with archive.db.session() as s:
        return service.get_row(s, study_uid)


def event_types(archive: Archive, study_uid: str) -> list[str]:
    with archive.db.session() as s:
        return [e.type for e in events.read_since(s, 0, 10000) if e.study_instance_uid == study_uid]


LISTENERS: dict[int, IngestListener] = {}


@pytest.fixture
def wl(archive: Archive) -> Archive:
    """The archive with the worklist subscribed, as ``radsight serve`` does (``radsight.wiring``)."""
    LISTENERS[id(archive)] = wiring.subscribe(archive)
    return archive


def listener_for(archive: Archive) -> IngestListener:
    return LISTENERS[id(archive)]


# -- priority rules (pure) ----------------------------------------------------------------


def test_priority_rules_order_ai_and_aging() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rules = priority.Rules()
    fresh = now - timedelta(minutes=10)
    assert priority.compute(order_priority=None, ai=None, arrived_at=fresh, now=now, rules=rules).name == "routine"
    stat = priority.compute(order_priority="STAT", ai=None, arrived_at=fresh, now=now, rules=rules)
    assert (stat.name, stat.reason) == ("urgent", "Urgent: STAT order")
    stat_critical = priority.compute(
        order_priority="STAT", ai=None, arrived_at=fresh, now=now, rules=priority.Rules(stat_level=priority.CRITICAL)
    )
    assert stat_critical.name == "critical"
    ai = priority.ai_priority(
        [
            priority.FindingFact(1, "cxr-pneumonia", "1.0.0", "Pneumonia", 0.97),
            priority.FindingFact(2, "cxr-pneumonia", "1.0.0", "Effusion", 0.99),  # no urgency thresholds
        ],
        {("cxr-pneumonia", "Pneumonia"): {"critical": 0.9, "urgent": 0.7}},
    )
    assert ai is not None and ai.reason == "Critical: Pneumonia 0.97, cxr-pneumonia v1.0.0"
    both = priority.compute(order_priority="STAT", ai=ai, arrived_at=fresh, now=now, rules=rules)
    assert (
        both.name == "critical" and both.reason == "Critical: Pneumonia 0.97, cxr-pneumonia v1.0.0; Urgent: STAT order"
    )
    rejected = priority.ai_priority(
        [priority.FindingFact(1, "m", "1", "Pneumonia", 0.97, status="rejected")],
        {("m", "Pneumonia"): {"critical": 0.9}},
    )
    assert rejected is None
    old = priority.compute(order_priority=None, ai=None, arrived_at=now - timedelta(minutes=250), now=now, rules=rules)
    assert old.name == "urgent" and old.reason.startswith("Urgent: waiting 250 min (routine over 240 min)")
    assert old.score == pytest.approx(priority.LEVEL_BASE + 250)
    assert priority.order_priority_from_dicom("HIGH") == "URGENT"
    assert priority.order_priority_from_dicom("MEDIUM") == "ROUTINE"
    assert priority.order_priority_from_dicom("") is None


# -- service on a real archive --------------------------------------------------------------


def test_order_priority_from_dicom_and_from_a_user_sorts_the_worklist(wl: Archive, tmp_path: Path) -> None:
    from radsight.worklist import query

    routine = store_study(wl, tmp_path)
    stat = store_study(wl, tmp_path, requested_priority="STAT")
    high = store_study(wl, tmp_path, study_priority_id="HIGH")
    assert (row(wl, routine).order_priority, row(wl, routine).priority_level) == (None, priority.ROUTINE)
    assert (row(wl, stat).order_priority, row(wl, stat).order_priority_source) == ("STAT", "dicom")
    assert row(wl, high).order_priority == "URGENT"
    with wl.db.session() as s:
        _, items = query.worklist(s, query.Filters(), service.rules_for_archive(wl))
    assert [i["StudyInstanceUID"] for i in items] == [stat, high, routine]  # urgent by arrival, then routine
    service.set_order_priority(wl, routine, "STAT")
    with wl.db.session() as s:
        _, items = query.worklist(s, query.Filters(), service.rules_for_archive(wl))
    assert [i["StudyInstanceUID"] for i in items] == [routine, stat, high]  # all urgent: arrival order
    assert items[0]["order_priority"] == "STAT" and row(wl, routine).order_priority_source == "user"
    assert event_types(wl, stat) == ["study-added"]
    assert event_types(wl, routine) == ["study-added", "study-updated"]


def test_order_priority_comes_from_the_header_ingest_parsed(wl: Archive, tmp_path: Path) -> None:
    """The listener does not read the stored file again: a file that went away meanwhile changes nothing."""
    from radsight.ingest.service import StoredEvent

    reads: list[str] = []
    original_open = wl.storage.open

    def counting_open(key: str) -> Any:
        reads.append(key)
        return original_open(key)

    wl.storage.open = counting_open  # type: ignore[method-assign]
    try:
        stat = store_study(wl, tmp_path, requested_priority="STAT")
    finally:
        del wl.storage.open
    assert reads == []
    assert (row(wl, stat).order_priority, row(wl, stat).order_priority_source) == ("STAT", "dicom")
    # Without the header (an event from an older producer) the stored file is read instead.
    ds = make_ct(patient_id="WL-fallback")
    ds.StudyPriorityID = "HIGH"
    ds.save_as(tmp_path / "fallback.dcm", enforce_file_format=True)
    with wl.db.session() as s:
        before = s.scalar(select(func.count()).select_from(WorklistStudy))
    listener = listener_for(wl)
    assert listener is not None
    # Store without the worklist (its in-transaction rows and its listener), then replay the
    # listener's event without a header.
    hooks = list(wl.ingest._new_study_hooks)
    wl.ingest._listeners.remove(listener)
    wl.ingest._new_study_hooks.clear()
    try:
        res = wl.ingest.ingest_file(tmp_path / "fallback.dcm")
    finally:
        wl.ingest._listeners.append(listener)
        wl.ingest._new_study_hooks[:] = hooks
    with wl.db.session() as s:
        assert s.scalar(select(func.count()).select_from(WorklistStudy)) == before
    listener(StoredEvent(res, modality="CT"))
    assert row(wl, str(ds.StudyInstanceUID)).order_priority == "URGENT"
    with wl.db.session() as s:
        assert s.scalar(select(func.count()).select_from(WorklistStudy)) == before + 1


def test_a_second_instance_adds_no_row_and_no_event_at_ingest(wl: Archive, tmp_path: Path) -> None:
    uid = store_study(wl, tmp_path)
    ds = make_ct(study_uid=uid, instance_number=2)
    ds.save_as(tmp_path / "second.dcm", enforce_file_format=True)
    assert wl.ingest.ingest_file(tmp_path / "second.dcm").ok
    assert event_types(wl, uid) == ["study-added"]
    listener = listener_for(wl)
    assert listener is not None and listener.flush_touched() == 1
    assert event_types(wl, uid) == ["study-added", "study-updated"]


def test_the_worklist_row_commits_with_the_study_or_not_at_all(wl: Archive, tmp_path: Path) -> None:
    """The row and its study-added event are written in the ingest transaction that creates the study."""
    def study_rows(uid: str) -> tuple[int, int]:
        with wl.db.session() as s:
            return (
                s.scalar(select(func.count()).select_from(Study).where(Study.study_instance_uid == uid)) or 0,
                s.scalar(select(func.count()).select_from(WorklistStudy).where(
                    WorklistStudy.study_instance_uid == uid)) or 0,
            )

    ds = make_ct(patient_id="WL-atomic")
    uid = str(ds.StudyInstanceUID)
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)

    def fail_after_the_worklist(cur: Any, parsed: Any, now: datetime) -> None:
        raise RuntimeError("the index transaction fails after the worklist's rows were written")

    wl.ingest.on_new_study(fail_after_the_worklist)
    try:
        res = wl.ingest.ingest_file(tmp_path / "a.dcm")
    finally:
        wl.ingest._new_study_hooks.remove(fail_after_the_worklist)
    assert res.outcome is Outcome.REFUSED and "RuntimeError" in res.message
    assert study_rows(uid) == (0, 0)  # rolled back together
    assert event_types(wl, uid) == []

    assert wl.ingest.ingest_file(tmp_path / "a.dcm").ok  # the sender tries again
    assert study_rows(uid) == (1, 1)
    assert event_types(wl, uid) == ["study-added"]
    listener = listener_for(wl)
    assert listener is not None and listener.flush_touched() == 0  # the first instance is no update

    # A row that outlived its study (no study row) is kept, not duplicated, and ingest goes on.
    orphan = make_ct(patient_id="WL-orphan")
    with wl.db.session() as s:
        s.add(WorklistStudy(study_instance_uid=str(orphan.StudyInstanceUID), priority_level=0, priority_score=0.0,
                            priority_reason="Routine", status="read", arrived_at=datetime.now(UTC),
                            updated_at=datetime.now(UTC)))
        s.commit()
    orphan.save_as(tmp_path / "orphan.dcm", enforce_file_format=True)
    assert wl.ingest.ingest_file(tmp_path / "orphan.dcm").ok
    assert study_rows(str(orphan.StudyInstanceUID)) == (1, 1)
    assert row(wl, str(orphan.StudyInstanceUID)).status == "read"


def test_ai_urgency_orders_studies_raises_one_alert_and_a_rejection_drops_it(wl: Archive, tmp_path: Path) -> None:
    from radsight.worklist import query

    model = install_classifier(wl, tmp_path)
    low, mid, high = (store_study(wl, tmp_path, modality="DX") for _ in range(3))
    run_job_with(wl, model, low, 0.30)
    run_job_with(wl, model, mid, 0.75)
    job = run_job_with(wl, model, high, 0.97)
    assert row(wl, high).priority_reason == "Critical: Pneumonia 0.97, test-cls v1.0"
    assert row(wl, mid).priority_level == priority.URGENT and row(wl, low).priority_level == priority.ROUTINE
    with wl.db.session() as s:
        _, items = query.worklist(s, query.Filters(), service.rules_for_archive(wl))
    assert [i["StudyInstanceUID"] for i in items[:3]] == [high, mid, low]
    top = items[0]
    assert top["priority"] == "critical" and top["ai"] == {
        "level": "critical",
        "model": "test-cls",
        "model_version": "1.0",
        "label": "Pneumonia",
        "probability": pytest.approx(0.97),
    }
    assert top["alert"]["level"] == "critical" and top["alert"]["acknowledged_at"] is None
    assert row(wl, high).ai_result_at is not None and row(wl, high).alerted_at is not None
    assert event_types(wl, high) == ["study-added", "ai-result", "alert"]
    # The same job again (a retry) records the same finding: no second alert.
    with wl.db.session() as s:
        s.execute(update(AIJob).where(AIJob.id == job.id).values(state="queued"))
        s.commit()
        again = jobs.claim(s, "test-worker", 60, job_ids=[job.id])
    assert again is not None
    assert (
        run_claimed(wl, again, execute=lambda *_: PipelineResult([FindingData("Pneumonia", 0.97, True)])) == jobs.DONE
    )
    with wl.db.session() as s:
        assert len(s.scalars(select(WorklistAlert).where(WorklistAlert.study_instance_uid == high)).all()) == 1
        finding_id = s.scalars(select(findings.AIFinding.id).where(findings.AIFinding.study_instance_uid == high)).one()
        findings.decide(s, wl.ai_hooks, finding_id, "rejected", "admin")
        s.commit()
    assert row(wl, high).priority_level == priority.ROUTINE and row(wl, high).ai_level is None
    assert event_types(wl, high)[-1] == "study-updated"


def test_aging_lifts_an_old_routine_study_above_newer_ones(wl: Archive, tmp_path: Path) -> None:
    from radsight.worklist import query

    newer_urgent = store_study(wl, tmp_path, requested_priority="HIGH")
    old = store_study(wl, tmp_path)
    recent = store_study(wl, tmp_path)
    with wl.db.session() as s:
        s.execute(
            update(WorklistStudy)
            .where(WorklistStudy.study_instance_uid == old)
            .values(arrived_at=datetime.now(UTC) - timedelta(minutes=300))
        )
        s.commit()
    assert service.sweep(wl)["aged"] == 1
    assert row(wl, old).priority_level == priority.URGENT
    assert row(wl, old).priority_reason.startswith("Urgent: waiting 300 min (routine over 240 min)")
    assert row(wl, recent).priority_level == priority.ROUTINE
    with wl.db.session() as s:
        _, items = query.worklist(s, query.Filters(), service.rules_for_archive(wl))
    # Both urgent now; the one that waited longer first (higher score), the recent routine last.
    assert [i["StudyInstanceUID"] for i in items] == [old, newer_urgent, recent]
    assert items[0]["score"] > items[1]["score"] > items[2]["score"]
    assert event_types(wl, old)[-1] == "study-updated"
    assert service.sweep(wl)["aged"] == 0  # once


def test_claims_conflict_expire_and_sign_needs_decisions(wl: Archive, tmp_path: Path) -> None:
    model = install_classifier(wl, tmp_path)
    uid = store_study(wl, tmp_path, modality="DX")
    run_job_with(wl, model, uid, 0.95)
    service.claim(wl, uid, "alice")
    with pytest.raises(service.ClaimConflict, match=r"^claimed by alice since "):
        service.claim(wl, uid, "bob")
    with pytest.raises(service.NotClaimHolder):
        service.release(wl, uid, "bob")
    with pytest.raises(service.ClaimConflict, match="claimed by alice"):
        service.sign(wl, uid, "bob")
    service.heartbeat(wl, uid, "alice")
    # The claim lapses: the sweep gives the study back, and bob may take it.
    with wl.db.session() as s:
        s.execute(
            update(WorklistStudy)
            .where(WorklistStudy.study_instance_uid == uid)
            .values(claim_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        s.commit()
    assert service.sweep(wl)["claims_expired"] == 1
    assert (row(wl, uid).status, row(wl, uid).claimed_by) == ("unread", None)
    service.claim(wl, uid, "bob")
    with pytest.raises(service.PendingFindings, match=r"pending: \d+ \(Pneumonia 0.95, test-cls v1.0\)"):
        service.sign(wl, uid, "bob")
    with wl.db.session() as s:
        (finding_id,) = s.scalars(select(findings.AIFinding.id).where(findings.AIFinding.study_instance_uid == uid))
    service.sign(wl, uid, "bob", [service.DecisionInput(finding_id, "accepted")])
    r = row(wl, uid)
    assert (r.status, r.signed_by, r.claimed_by) == ("read", "bob", None)
    assert r.first_opened_at is not None and r.signed_at is not None
    with pytest.raises(service.ClaimConflict, match=r"^read by bob at "):
        service.claim(wl, uid, "alice")
    assert event_types(wl, uid) == [
        "study-added",
        "ai-result",
        "alert",
        "status-changed",
        "status-changed",
        "status-changed",
        "status-changed",
    ]  # claimed, lapsed, claimed, read (accepting kept the priority: no study-updated)


def test_a_refused_sign_off_stores_none_of_its_decisions(wl: Archive, tmp_path: Path) -> None:
    """Decisions and sign-off are one transaction: refused for a pending finding, nothing is kept."""
    model = install_classifier(wl, tmp_path)
    uid = store_study(wl, tmp_path, modality="DX")
    run_job_with(wl, model, uid, 0.95)
    run_job_with(wl, model, uid, 0.40)  # a second run: a second finding, still pending
    with wl.db.session() as s:
        first, second = s.scalars(
            select(findings.AIFinding.id).where(findings.AIFinding.study_instance_uid == uid).order_by(
                findings.AIFinding.id)
        ).all()
    before = row(wl, uid)
    service.claim(wl, uid, "bob")
    with pytest.raises(service.PendingFindings, match=rf"pending: {second} "):
        service.sign(wl, uid, "bob", [service.DecisionInput(first, "rejected")])
    with wl.db.session() as s:
        kept = s.get(findings.AIFinding, first)
        assert kept is not None and (kept.status, kept.decided_by, kept.decided_at) == ("pending", "", None)
    after = row(wl, uid)
    assert (after.status, after.signed_by, after.ai_level) == ("in_progress", None, before.ai_level)
    assert event_types(wl, uid)[-1] == "status-changed"  # the claim; no study-updated from a rejection


# -- REST API (a real server) ----------------------------------------------------------


@pytest.fixture(scope="module")
def reader(server: RunningServer) -> httpx.Client:
    with server.archive.db.session() as s:
        add_user(s, READER, READER_PASSWORD, "radiologist")
    client = httpx.Client(base_url=server.base_url, auth=(READER, READER_PASSWORD), timeout=60)
    yield client
    client.close()


def test_rest_worklist_filters_and_item_shape(server: RunningServer, tmp_path: Path) -> None:
    archive = server.archive
    tag = uuid.uuid4().hex[:8]
    ct = store_study(archive, tmp_path, modality="CT", patient_name=f"Filter^{tag}")
    mr = store_study(archive, tmp_path, modality="MR", patient_name=f"Filter^{tag}", requested_priority="STAT")
    with server.client() as c:
        r = c.get("/api/worklist", params={"q": tag})
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == 2 and [i["StudyInstanceUID"] for i in body["items"]] == [mr, ct]
        item = body["items"][0]
        assert set(item) >= {
            "StudyInstanceUID",
            "priority",
            "score",
            "reason",
            "status",
            "claimed_by",
            "claimed_at",
            "signed_by",
            "signed_at",
            "arrived_at",
            "order_priority",
            "PatientName",
            "PatientID",
            "StudyDate",
            "ModalitiesInStudy",
            "StudyDescription",
            "AccessionNumber",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "ai",
            "alert",
        }
        assert item["ModalitiesInStudy"] == ["MR"] and item["priority"] == "urgent" and item["status"] == "unread"
        assert item["arrived_at"].endswith("+00:00") and item["ai"] is None and item["alert"] is None
        assert item["NumberOfStudyRelatedInstances"] == 1

        def ids(**p: str) -> list[str]:
            return [i["StudyInstanceUID"] for i in c.get("/api/worklist", params={"q": tag, **p}).json()["items"]]

        assert ids(modality="CT") == [ct]
        assert ids(modality="CT,MR") == [mr, ct]
        assert ids(priority="urgent") == [mr]
        assert ids(priority="routine", modality="MR") == []
        c.post(f"/api/worklist/{ct}/claim").raise_for_status()
        assert ids(status="in_progress") == [ct]
        assert ids(status="unread") == [mr]
        assert ids(reader="admin") == [ct]
        assert c.get("/api/worklist", params={"status": "done"}).status_code == 400
        assert c.get("/api/worklist", params={"priority": "high"}).status_code == 400
        paged = c.get("/api/worklist", params={"q": tag, "limit": 1, "offset": 1}).json()
        assert paged["total"] == 2 and [i["StudyInstanceUID"] for i in paged["items"]] == [ct]
        assert (
            c.put(f"/api/worklist/{ct}/order-priority", json={"order_priority": "URGENT"}).json()["priority"]
            == "urgent"
        )
        assert c.put(f"/api/worklist/{ct}/order-priority", json={"order_priority": "SOON"}).status_code == 422
        assert (
            c.put(f"/api/worklist/{ct}/order-priority", json={"order_priority": None}).json()["order_priority"] is None
        )
    assert httpx.get(f"{server.base_url}/api/worklist").status_code == 401


def test_rest_claim_locks_for_another_reader_and_sign_needs_decisions(
    server: RunningServer, reader: httpx.Client, tmp_path: Path
) -> None:
    archive = server.archive
    model = install_classifier(archive, tmp_path)
    uid = store_study(archive, tmp_path, modality="DX")
    run_job_with(archive, model, uid, 0.93)
    with server.client() as admin:
        claimed = admin.post(f"/api/worklist/{uid}/claim")
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["status"] == "in_progress" and claimed.json()["claimed_by"] == "admin"
        locked = reader.post(f"/api/worklist/{uid}/claim")
        assert locked.status_code == 409
        assert locked.json()["detail"] == f"claimed by admin since {claimed.json()['claimed_at']}"
        assert reader.post(f"/api/worklist/{uid}/release").status_code == 403
        assert admin.post(f"/api/worklist/{uid}/heartbeat").status_code == 200
        assert admin.post(f"/api/worklist/{uid}/release").json()["status"] == "unread"
        assert reader.post(f"/api/worklist/{uid}/claim").status_code == 200
        assert admin.post(f"/api/worklist/{uid}/release").status_code == 200  # an admin may release anyone's
        assert reader.post(f"/api/worklist/{uid}/claim").status_code == 200
        pending = reader.post(f"/api/worklist/{uid}/sign", json={"decisions": []})
        assert pending.status_code == 409 and "Pneumonia 0.93" in pending.json()["detail"]
        finding_id = admin.get(f"/api/studies/{uid}/findings").json()[0]["id"]
        bad = reader.post(
            f"/api/worklist/{uid}/sign", json={"decisions": [{"finding_id": 10**9, "status": "accepted"}]}
        )
        assert bad.status_code == 422
        signed = reader.post(
            f"/api/worklist/{uid}/sign", json={"decisions": [{"finding_id": finding_id, "status": "rejected"}]}
        )
        assert signed.status_code == 200, signed.text
        item = signed.json()
        assert (item["status"], item["signed_by"], item["claimed_by"]) == ("read", READER, None)
        assert item["priority"] == "routine" and item["ai"] is None  # the rejected finding left the AI level
        assert admin.get(f"/api/studies/{uid}/findings").json()[0]["decided_by"] == READER
        assert admin.post(f"/api/worklist/{uid}/claim").status_code == 409
        assert admin.post("/api/worklist/1.2.3.404/claim").status_code == 404
        alerts = admin.get("/api/alerts", params={"unacknowledged": "true"}).json()
        mine = [a for a in alerts if a["StudyInstanceUID"] == uid]
        assert len(mine) == 1 and mine[0]["acknowledged_by"] is None
        acked = reader.post(f"/api/alerts/{mine[0]['id']}/ack").json()
        assert acked["acknowledged_by"] == READER and acked["acknowledged_at"]
        assert all(a["StudyInstanceUID"] != uid for a in admin.get("/api/alerts?unacknowledged=true").json())
        report = admin.get("/api/turnaround").json()
        row_ = next(r for r in report["studies"] if r["StudyInstanceUID"] == uid)
        assert row_["minutes"]["arrival_to_sign"] >= 0 and row_["signed_by"] == READER
        assert report["summary"]["routine"]["arrival_to_sign"]["n"] >= 1


def test_studies_stored_before_the_worklist_ran_get_rows_at_attach(archive: Archive, tmp_path: Path) -> None:
    before = store_study(archive, tmp_path)  # no listener yet: as with `radsight import` and no server
    with archive.db.session() as s:
        assert s.scalar(select(WorklistStudy).where(WorklistStudy.study_instance_uid == before)) is None
    wiring.subscribe(archive)
    r = row(archive, before)
    assert (r.status, r.priority_level) == ("unread", priority.ROUTINE) and r.arrived_at is not None
    assert backfill(archive, service.rules_for_archive(archive)) == 0


def test_two_readers_racing_for_one_study_get_one_winner(wl: Archive, tmp_path: Path) -> None:
    uid = store_study(wl, tmp_path)
    outcomes: dict[str, str] = {}
    start = threading.Barrier(4)

    def take(user: str) -> None:
        start.wait()
        try:
            service.claim(wl, uid, user)
            outcomes[user] = "claimed"
        except service.ClaimConflict as exc:
            outcomes[user] = str(exc)

    threads = [threading.Thread(target=take, args=(f"reader{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [u for u, o in outcomes.items() if o == "claimed"]
    assert len(winners) == 1 and row(wl, uid).claimed_by == winners[0]
    assert all(o.startswith(f"claimed by {winners[0]} since ") for u, o in outcomes.items() if u not in winners)
    assert event_types(wl, uid).count("status-changed") == 1


def test_turnaround_percentiles() -> None:
    from radsight.worklist.turnaround import percentile

    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(list(map(float, range(11))), 0.9) == pytest.approx(9.0)


def test_live_feed_waits_at_an_id_gap_then_skips_it() -> None:
    from radsight.worklist.live import EventFeed

    feed = EventFeed(lambda: None, priority.Rules(), gap_seconds=0.2)
    now = datetime.now(UTC)

    def ev(i: int) -> events.Event:
        return events.Event(i, events.STUDY_UPDATED, "1.2.3", {}, now)

    # 12 is not visible yet (a transaction that took its id earlier commits later): stop before it.
    assert [e.id for e in feed._until_gap(10, [ev(11), ev(13)])] == [11]
    assert [e.id for e in feed._until_gap(11, [ev(13)])] == []
    time.sleep(0.25)  # it never appeared (a rolled-back insert): go on
    assert [e.id for e in feed._until_gap(11, [ev(13), ev(14)])] == [13, 14]
