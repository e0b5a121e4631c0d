"""``make demo`` end to end: the demo script builds its archive from the real shared data, then
``serve`` (here in process, as ``radsight serve`` runs it: AI engine on, shipped models
installed at start-up) runs the shipped models on what the demo imported. A real chest X-ray
gets its pneumonia probability and heatmap; the real CT gets liver, spleen and kidney segments
with volumes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select
from tests.conftest import REPO, start_server

from radsight.ai.package import Task, load_package
from radsight.ai.registry import builtin_packages
from radsight.datasets.cxr import PRIVATE_CREATOR, PRIVATE_GROUP
from radsight.index.models import AIJob, Instance


def _shipped(task: Task) -> str:
    for folder in builtin_packages():
        meta = load_package(folder, check_onnx=False).metadata
        if meta.task is task:
            return meta.name
    pytest.skip(f"no {task.value} model ships in src/radsight/models yet")


def _wait_for_jobs(archive: object, timeout: float) -> list[AIJob]:
    deadline = time.monotonic() + timeout
    while True:
        with archive.db.session() as s:  # type: ignore[attr-defined]
            jobs = list(s.scalars(select(AIJob)))
        if jobs and all(j.state in ("done", "failed") for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            states = sorted((j.model_name, j.state, j.error[:80]) for j in jobs)
            raise AssertionError(f"AI jobs not finished after {timeout} s: {states}")
        time.sleep(0.5)


def test_demo_shows_real_model_results(tmp_path: Path, shared_data: Path) -> None:
    cxr_model, ct_model = _shipped(Task.CLASSIFICATION), _shipped(Task.SEGMENTATION)
    home = tmp_path / "demo-home"
    env = {**os.environ, "RADSIGHT_DEMO_HOME": str(home), "RADSIGHT_DEMO_NO_SERVE": "1", "RADSIGHT_DEMO_CXR": "2",
           "RADSIGHT_SHARED_DATA": str(shared_data), "RADSIGHT_DEMO_PASSWORD": "demo-test-password"}
    env.pop("RADSIGHT_DATABASE_URL", None)
    env.pop("RADSIGHT_CONFIG", None)
    done = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    running, stop, _ = start_server(home, f"sqlite:///{home / 'index.sqlite'}", ai=True, ai_builtin_models=True,
                                    ai_stable_seconds=0.5)
    try:
        jobs = _wait_for_jobs(running.archive, timeout=600)
        failed = [(j.model_name, j.series_instance_uid, j.error) for j in jobs if j.state == "failed"]
        assert not failed, failed
        with running.client() as c:
            dx = c.get("/dicomweb/studies", params={"ModalitiesInStudy": "DX", "includefield": "00100020"}).json()
            by_label: dict[str, float] = {}
            for study in dx:
                uid = study["0020000D"]["Value"][0]
                findings = [f for f in c.get(f"/api/studies/{uid}/findings").json() if f["model"] == cxr_model]
                assert len(findings) == 1, findings
                f = findings[0]
                assert 0.0 <= f["probability"] <= 1.0 and f["pmap_sop_instance_uid"], f
                assert f["model_version"] and f["sr_sop_instance_uid"]
                with running.archive.db.session() as s:
                    assert s.scalar(select(Instance.id).where(
                        Instance.sop_instance_uid == f["pmap_sop_instance_uid"])) is not None, "no heatmap stored"
                    key = s.scalar(select(Instance.storage_key).where(
                        Instance.sop_instance_uid == f["location"]["sop_instance_uid"]))
                # the demo writes one NORMAL and one PNEUMONIA image, labelled in a private element
                path = running.archive.storage.local_path(key)
                source = pydicom.dcmread(path, stop_before_pixels=True)
                label = str(source.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[0x01].value)
                by_label[label] = f["probability"]
            assert set(by_label) == {"NORMAL", "PNEUMONIA"}, by_label
            assert by_label["PNEUMONIA"] > by_label["NORMAL"], by_label

            ct = c.get("/dicomweb/studies", params={"PatientID": "DEMO-CT-0001"}).json()
            assert len(ct) == 1
            uid = ct[0]["0020000D"]["Value"][0]
            organs = {f["label"].lower(): f for f in c.get(f"/api/studies/{uid}/findings").json()
                      if f["model"] == ct_model}
            volumes = {}
            for name, f in organs.items():
                assert f["seg_sop_instance_uid"], f
                volumes[name] = next(m["value"] for m in f["measurements"] if m["name"] == "Volume")
            liver = next(v for k, v in volumes.items() if "liver" in k)
            spleen = next(v for k, v in volumes.items() if "spleen" in k)
            assert liver > 500 and liver > spleen > 20, volumes
            assert sum("kidney" in k for k in volumes) == 2, volumes
    finally:
        stop()  # type: ignore[operator]
