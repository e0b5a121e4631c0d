"""The REST contract: the OpenAPI document (served to logged-in users, committed for the viewer's
generated types), Swagger UI served offline, and response models that leave the JSON unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from pydantic import TypeAdapter

from conftest import RunningServer
from radsight.ai import jobs
from radsight.ai.findings import DECISIONS, finding_dict
from radsight.ai.jobs import JobView
from radsight.api import schemas
from radsight.api.app import create_app
from radsight.api.auth import add_user
from radsight.api.openapi import SWAGGER_DIR, openapi_document
from radsight.archive import Archive
from radsight.index.models import AIFinding, AIJob, Study, WorklistAlert, WorklistStudy
from radsight.worklist import alerts
from radsight.worklist.alerts import alert_dict
from radsight.worklist.priority import LEVELS, ORDER_PRIORITIES, Rules
from radsight.worklist.query import item_dict
from radsight.worklist.rows import STATUSES
from radsight.worklist.turnaround import turnaround
from test_viewer_browser import TIMEOUT_MS, browser, login

__all__ = ["browser"]  # the Chromium fixture, shared with the viewer's browser tests

COMMITTED = Path(__file__).resolve().parents[1] / "viewer" / "openapi.json"
AUTH = ("docs-user", "docs-password")


@pytest.fixture
def client(archive: Archive) -> Iterator[TestClient]:
    with archive.db.session() as s:
        add_user(s, *AUTH, "viewer")
    yield TestClient(create_app(archive))


def test_committed_document_is_the_apps(archive: Archive) -> None:
    live = openapi_document(create_app(archive))
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == live, (
        "viewer/openapi.json differs from the routes' OpenAPI document: run `npm run openapi` in viewer/ "
        "and commit viewer/openapi.json and viewer/src/api/schema.d.ts"
    )


def test_document_covers_the_api_with_response_schemas(archive: Archive) -> None:
    app = create_app(archive)
    doc = app.openapi()
    assert doc is openapi_document(app)
    assert doc["paths"] and all(p.startswith("/api/") for p in doc["paths"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = [code for code in op["responses"] if code.startswith("2")]
            assert ok, f"{method} {path}"
            content = op["responses"][ok[0]].get("content", {})
            if ok[0] != "204" and path != "/api/worklist/events":
                schema = content["application/json"]["schema"]
                assert schema.get("$ref") or schema.get("items", {}).get("$ref"), f"{method} {path}: {schema}"
    item = doc["components"]["schemas"]["WorklistItem"]
    assert item["properties"]["priority"]["enum"] == ["routine", "urgent", "critical"]
    assert item["required"] == list(schemas.WorklistItem.__annotations__)
    assert doc["paths"]["/api/auth/token"]["post"]["security"] == []


def test_document_and_docs_need_a_logged_in_user(client: TestClient) -> None:
    for path in ("/openapi.json", "/docs", "/docs/assets/swagger-ui.css"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert "Basic" in r.headers.get("www-authenticate", "") or path.startswith("/docs/assets")
    r = client.get("/openapi.json", auth=AUTH)
    assert r.status_code == 200 and r.json()["info"]["title"] == "RadSight"
    token = client.post("/api/auth/token", json={"username": AUTH[0], "password": AUTH[1]}).json()["access_token"]
    assert client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_swagger_ui_is_served_from_this_server(client: TestClient) -> None:
    if not (SWAGGER_DIR / "swagger-ui-bundle.js").is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    r = client.get("/docs", auth=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), "/docs loads something from another host"
    assert "validatorUrl" in html and "/openapi.json" in html
    assets = re.findall(r"""(?:src|href)=["']?(/docs/assets/[^"'\s>]+)""", html)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for url in assets:
        got = client.get(url, auth=AUTH)
        assert got.status_code == 200 and got.content, url
    gz = client.get("/docs/assets/swagger-ui-bundle.js", auth=AUTH, headers={"Accept-Encoding": "gzip"})
    assert gz.headers.get("content-encoding") == "gzip"
    assert client.get("/docs/assets/..%2Fviewer.html", auth=AUTH).status_code == 404
    assert client.get("/docs/assets/missing.js", auth=AUTH).status_code == 404


def test_swagger_ui_renders_the_api_offline(server: RunningServer, browser: Browser) -> None:
    if not (SWAGGER_DIR / "swagger-ui-bundle.js").is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        login(page, server, "/dashboard")  # any page: logging in sets the cookie that /docs reads
        page.goto(server.base_url + "/docs")
        page.wait_for_selector(".opblock", timeout=TIMEOUT_MS)
        paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    finally:
        context.close()
    assert {"/api/worklist", "/api/studies/{study_instance_uid}/findings", "/api/jobs/{job_id}"} <= {
        p.replace("\u200b", "") for p in paths
    }
    assert all(u.startswith(server.base_url) for u in requests if not u.startswith("data:")), requests


# --- the response models pass the services' dicts through unchanged ---------------------------

NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


def test_enumerations_are_the_services() -> None:
    assert set(get_args(schemas.Priority)) == set(LEVELS)
    assert set(get_args(schemas.ReadStatus)) == set(STATUSES)
    assert set(get_args(schemas.OrderPriority)) == set(ORDER_PRIORITIES)
    assert set(get_args(schemas.FindingStatus)) == set(DECISIONS)
    assert set(get_args(schemas.JobState)) == set(jobs.STATES)
    assert set(get_args(schemas.JobTrigger)) == set(jobs.TRIGGERS)
    assert set(get_args(schemas.WebhookState)) == {alerts.PENDING, alerts.DELIVERED, alerts.FAILED}


def _same_json(model: Any, value: dict[str, Any]) -> None:
    adapter = TypeAdapter(model)
    dumped = json.loads(adapter.dump_json(adapter.validate_python(value)))
    assert dumped == value
    assert json.dumps(dumped) == json.dumps(value)  # key order and number forms too


def _worklist_row(**kw: Any) -> WorklistStudy:
    row = WorklistStudy(
        study_instance_uid="1.2.3", order_priority="STAT", ai_level=2, ai_score=0.97, ai_model="cxr",
        ai_model_version="1.0", ai_label="Pneumonia", priority_level=2, priority_score=20000.0,
        priority_reason="Critical: Pneumonia 0.97", status="in_progress", claimed_by="reader",
        claimed_at=NOW, claim_expires_at=NOW + timedelta(minutes=5), arrived_at=NOW - timedelta(minutes=42),
        ai_result_at=NOW - timedelta(minutes=40), updated_at=NOW,
    )
    for k, v in kw.items():
        setattr(row, k, v)
    return row


def test_worklist_item_and_alert_keep_their_json() -> None:
    study = Study(study_instance_uid="1.2.3", patient_name="Doe^Jane", patient_id="P1", study_date="20260302",
                  modalities_in_study="CR\\DX", study_description="Chest", accession_number="A1",
                  number_of_series=2, number_of_instances=3)
    alert = WorklistAlert(id=7, study_instance_uid="1.2.3", level="critical", reason="Critical: Pneumonia",
                          model_name="cxr", model_version="1.0", label="Pneumonia", probability=0.97,
                          raised_at=NOW, acknowledged_at=None, acknowledged_by=None, webhook_state="pending",
                          attempts=1, next_attempt_at=NOW, last_error="HTTP 503", delivered_at=None)
    rules = Rules()
    _same_json(schemas.WorklistItem, item_dict(_worklist_row(), study, alert, rules, NOW))
    bare = item_dict(_worklist_row(ai_level=None, order_priority=None, status="unread"), None, None, rules, NOW)
    assert bare["ai"] is None and bare["alert"] is None
    _same_json(schemas.WorklistItem, bare)
    _same_json(schemas.Alert, alert_dict(alert))


def test_finding_and_job_keep_their_json() -> None:
    location = {"series_instance_uid": "1.2.3.4", "sop_instance_uid": "1.2.3.4.5", "frame": 1, "slice_index": 0,
                "bbox": [3, 4, 10.5, 12.25], "point": [6, 8], "extra": "kept"}
    measurements = [{"name": "Volume", "value": 12.5, "unit": "mL"}, {"name": "Voxel count", "value": 4000,
                                                                        "unit": "voxels"}]
    row = AIFinding(id=3, job_pk=2, study_instance_uid="1.2.3", series_instance_uid="1.2.3.4", model_name="m",
                    model_version="1", label="Nodule", probability=None, positive=True,
                    measurements_json=json.dumps(measurements), location_json=json.dumps(location),
                    seg_sop_instance_uid="9.8", sr_sop_instance_uid="", pmap_sop_instance_uid="", status="pending",
                    decided_by="", decided_at=None, created_at=NOW)
    value = finding_dict(row, {"9.8": "9.8.1"})
    _same_json(schemas.Finding, value)
    assert "centre_patient" not in TypeAdapter(schemas.Finding).validate_python(value)["location"]
    job = AIJob(id=2, study_instance_uid="1.2.3", series_instance_uid=None, model_name="m", model_version="1",
                trigger="api", state="done", attempts=1, max_attempts=3, next_run_at=NOW, worker="w1", error="",
                result_json=json.dumps({"seg_sop_instance_uid": "9.8", "sr_sop_instance_uid": "",
                                        "pmap_sop_instance_uid": "", "result_series_uids": ["9.8.1"]}),
                created_at=NOW, started_at=NOW, finished_at=NOW)
    _same_json(schemas.Job, asdict(JobView.of(job)))


def test_turnaround_keeps_its_json(archive: Archive) -> None:
    with archive.db.session() as s:
        s.add(_worklist_row(status="read", signed_by="reader", signed_at=NOW, first_opened_at=NOW))
        s.add(_worklist_row(study_instance_uid="1.2.4", priority_level=0, order_priority=None, status="unread"))
        s.commit()
        report = turnaround(s, NOW - timedelta(days=1), None)
    assert len(report["studies"]) == 2
    _same_json(schemas.Turnaround, report)
