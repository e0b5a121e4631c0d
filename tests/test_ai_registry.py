"""Model registry, `radsight model` CLI and the models REST API, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.ai_testmodels import make_classification_package, make_segmentation_package
from tests.conftest import RunningServer

from radsight.ai import registry
from radsight.ai.package import METADATA_FILE, WEIGHTS_FILE, ModelPackageError, sha256_file
from radsight.ai.registry import get_package, install, list_models, package_metadata, remove, set_enabled
from radsight.api.auth import add_user
from radsight.archive import Archive
from radsight.index.models import AIModel


def _utc(d: datetime) -> datetime:
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def zip_folder(folder: Path, dest: Path, *, top_dir: bool) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            arc = p.relative_to(folder.parent if top_dir else folder)
            zf.write(p, str(arc))
    return dest


def test_install_from_folder_is_copied_recorded_and_idempotent(archive: Archive, tmp_path: Path) -> None:
    src = make_segmentation_package(tmp_path / "src", name="bone", version="1.0")
    sha = sha256_file(src / WEIGHTS_FILE)
    m = install(archive, src)
    assert (m.name, m.version, m.task, m.sha256, m.enabled) == ("bone", "1.0", "segmentation", sha, True)
    dest = Path(m.package_dir)
    assert dest == (archive.settings.home / "models" / f"bone-1.0-{sha[:8]}").resolve()
    assert sorted(p.name for p in dest.iterdir()) == ["model-card.md", "model.onnx", "radsight-model.json"]
    assert sha256_file(dest / WEIGHTS_FILE) == sha
    # Recorded metadata is the package's, validated.
    assert package_metadata(m).labels[0].type.meaning == "Bone"
    assert json.loads(m.metadata_json)["sha256"] == sha
    # The source can go away: the archive holds its own copy.
    shutil.rmtree(src)
    pkg = get_package(archive, "bone")
    assert pkg.path == dest and pkg.metadata.sha256 == sha
    # No temporary folders left in the models folder.
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]

    # Same name, version and weights again: nothing changes.
    again = install(archive, make_segmentation_package(tmp_path / "src2", name="bone", version="1.0"))
    assert (again.id, again.package_dir) == (m.id, m.package_dir)
    assert _utc(again.added_at) == _utc(m.added_at)  # SQLite gives naive UTC back
    with archive.db.session() as s:
        assert [(r.name, r.version) for r in list_models(s)] == [("bone", "1.0")]


def test_install_from_zip_with_and_without_top_folder(archive: Archive, tmp_path: Path) -> None:
    cls = make_classification_package(tmp_path / "cls", name="cxr", version="2.1")
    seg = make_segmentation_package(tmp_path / "seg", name="bone")
    a = install(archive, zip_folder(cls, tmp_path / "cls.zip", top_dir=True))
    b = install(archive, zip_folder(seg, tmp_path / "seg.zip", top_dir=False))
    assert (a.name, a.version, a.task) == ("cxr", "2.1", "classification")
    assert (b.name, b.task) == ("bone", "segmentation")
    assert get_package(archive, "cxr").metadata.input.modality == ["CR", "DX"]
    with archive.db.session() as s:
        assert [r.name for r in list_models(s)] == ["bone", "cxr"]

    (tmp_path / "junk.zip").write_bytes(b"PK not really a zip")
    with pytest.raises(ModelPackageError, match="not a valid ZIP file"):
        install(archive, tmp_path / "junk.zip")


def test_other_version_needs_replace(archive: Archive, tmp_path: Path) -> None:
    v1 = install(archive, make_segmentation_package(tmp_path / "v1", name="bone", version="1.0", threshold_hu=150))
    v2_src = make_segmentation_package(tmp_path / "v2", name="bone", version="2.0", threshold_hu=300)
    with pytest.raises(ValueError, match=r"'bone' version 1\.0 is installed; installing version 2\.0 .*needs replace"):
        install(archive, v2_src)
    # Same version with other weights is a conflict too (it would change results silently).
    other = make_segmentation_package(tmp_path / "v1b", name="bone", version="1.0", threshold_hu=999)
    with pytest.raises(ValueError, match=r"version 1\.0 with other weights"):
        install(archive, other)
    assert get_package(archive, "bone").metadata.version == "1.0"

    v2 = install(archive, v2_src, replace=True)
    assert v2.version == "2.0" and v2.id == v1.id
    assert not Path(v1.package_dir).exists() and Path(v2.package_dir).is_dir()
    pkg = get_package(archive, "bone")
    assert pkg.metadata.version == "2.0" and pkg.metadata.description.endswith("above 300 HU")


def test_broken_package_refused_and_nothing_installed(archive: Archive, tmp_path: Path) -> None:
    src = make_segmentation_package(tmp_path / "bad", name="bone")
    with open(src / WEIGHTS_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelPackageError, match=r"SHA-256 .* does not match"):
        install(archive, src)
    with pytest.raises(ModelPackageError, match="no such file or folder"):
        install(archive, tmp_path / "missing")
    with archive.db.session() as s:
        assert list_models(s) == []
    models = archive.settings.home / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_weights_tampered_after_install_are_refused_by_get_package(archive: Archive, tmp_path: Path) -> None:
    m = install(archive, make_segmentation_package(tmp_path / "src", name="bone-tamper"))
    registry._cache.clear()  # a fresh process: the first load re-verifies the SHA-256
    with open(Path(m.package_dir) / WEIGHTS_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelPackageError, match="SHA-256"):
        get_package(archive, "bone-tamper")

    # Metadata rewritten consistently with new weights (sha matches) is still not what was installed.
    m2 = install(archive, make_segmentation_package(tmp_path / "src2", name="bone-meta"))
    registry._cache.clear()
    d = Path(m2.package_dir)
    other = make_segmentation_package(tmp_path / "evil", name="bone-meta", threshold_hu=-1000)
    shutil.copy(other / WEIGHTS_FILE, d / WEIGHTS_FILE)
    shutil.copy(other / METADATA_FILE, d / METADATA_FILE)
    with pytest.raises(ModelPackageError, match="differs from the one installed"):
        get_package(archive, "bone-meta")


def test_remove_disable_and_lookup_errors(archive: Archive, tmp_path: Path) -> None:
    m = install(archive, make_classification_package(tmp_path / "cls", name="cxr"))
    assert set_enabled(archive, "cxr", False)
    with pytest.raises(LookupError, match="disabled"):
        get_package(archive, "cxr")
    assert set_enabled(archive, "cxr", True)
    assert get_package(archive, "cxr").metadata.name == "cxr"
    assert remove(archive, "cxr") is True
    assert not Path(m.package_dir).exists()
    assert remove(archive, "cxr") is False
    with pytest.raises(LookupError, match="not installed"):
        get_package(archive, "cxr")
    with archive.db.session() as s:
        assert s.scalars(select(AIModel)).all() == []


# --- CLI ----------------------------------------------------------------------------------


def _cli(home: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"RADSIGHT_HOME": str(home), "RADSIGHT_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "radsight", "model", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_add_list_remove(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    seg = make_segmentation_package(tmp_path / "seg", name="bone", version="1.0")
    sha8 = sha256_file(seg / WEIGHTS_FILE)[:8]

    r = _cli(home, db_url, "add", str(seg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"model bone 1.0 (segmentation, sha256 {sha8}) installed"
    cls_zip = zip_folder(make_classification_package(tmp_path / "cls", name="cxr", version="3"),
                         tmp_path / "cls.zip", top_dir=True)
    assert _cli(home, db_url, "add", str(cls_zip)).returncode == 0

    r = _cli(home, db_url, "list")
    assert r.returncode == 0, r.stderr
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert lines[0] == ["bone", "1.0", "segmentation", sha8, "enabled"]
    assert lines[1][:3] == ["cxr", "3", "classification"] and lines[1][4] == "enabled"

    v2 = make_segmentation_package(tmp_path / "seg2", name="bone", version="2.0", threshold_hu=10)
    r = _cli(home, db_url, "add", str(v2))
    assert r.returncode == 1 and "'bone' version 1.0 is installed" in r.stderr and "--replace" in r.stderr
    r = _cli(home, db_url, "add", str(v2), "--replace")
    assert r.returncode == 0 and "model bone 2.0" in r.stdout

    broken = make_segmentation_package(tmp_path / "broken", name="broken")
    (broken / "hook.py").write_text("import os")
    r = _cli(home, db_url, "add", str(broken))
    assert r.returncode == 1
    assert "broken model package" in r.stderr and "never code" in r.stderr and "hook.py" in r.stderr

    assert _cli(home, db_url, "disable", "cxr").returncode == 0
    assert _cli(home, db_url, "list").stdout.splitlines()[1].endswith("\tdisabled")

    r = _cli(home, db_url, "remove", "bone")
    assert r.returncode == 0 and r.stdout.strip() == "model bone removed"
    r = _cli(home, db_url, "remove", "bone")
    assert r.returncode == 1 and "no model 'bone' is installed" in r.stderr
    assert [line.split("\t")[0] for line in _cli(home, db_url, "list").stdout.splitlines()] == ["cxr"]


# --- REST ---------------------------------------------------------------------------------


def _zip_bytes(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, p.name)
    return buf.getvalue()


def _viewer(server: RunningServer) -> httpx.Client:
    with server.archive.db.session() as s:
        try:
            add_user(s, "reader", "reader-secret-1", "viewer")
        except ValueError:
            pass  # created by an earlier test of this module
    return httpx.Client(base_url=server.base_url, auth=("reader", "reader-secret-1"), timeout=60)


def test_rest_upload_list_get_delete(server: RunningServer, tmp_path: Path) -> None:
    seg = make_segmentation_package(tmp_path / "seg", name="rest-bone", version="1.0")
    sha = sha256_file(seg / WEIGHTS_FILE)
    with server.client() as c, _viewer(server) as v, httpx.Client(base_url=server.base_url) as anon:
        assert anon.get("/api/models").status_code == 401
        assert anon.post("/api/models", content=_zip_bytes(seg),
                         headers={"content-type": "application/zip"}).status_code == 401
        # A non-admin may read but not write.
        r = v.post("/api/models", content=_zip_bytes(seg), headers={"content-type": "application/zip"})
        assert r.status_code == 403

        r = c.post("/api/models", content=_zip_bytes(seg), headers={"content-type": "application/zip"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["name"], body["version"], body["task"]) == ("rest-bone", "1.0", "segmentation")
        assert body["sha256"] == sha
        assert body["metadata"]["labels"][0]["type"]["value"] == "272673000"

        cls = make_classification_package(tmp_path / "cls", name="rest-cxr")
        r = c.post("/api/models", files={"file": ("cls.zip", _zip_bytes(cls), "application/zip")})
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["input"]["modality"] == ["CR", "DX"]

        names = [m["name"] for m in v.get("/api/models").json()]
        assert "rest-bone" in names and "rest-cxr" in names
        r = v.get("/api/models/rest-bone")
        assert r.status_code == 200
        assert r.json()["model_card"] == "# rest-bone\n\nTest model. Not for clinical use.\n"
        assert r.json()["metadata"]["sha256"] == sha
        assert c.get("/api/models/nope").status_code == 404

        # Another version without replace: 409 with the reason; with replace: installed.
        v2 = make_segmentation_package(tmp_path / "v2", name="rest-bone", version="2.0", threshold_hu=0)
        r = c.post("/api/models", content=_zip_bytes(v2), headers={"content-type": "application/zip"})
        assert r.status_code == 409 and "version 1.0 is installed" in r.json()["detail"]
        r = c.post("/api/models?replace=true", content=_zip_bytes(v2), headers={"content-type": "application/zip"})
        assert r.status_code == 201 and r.json()["version"] == "2.0"

        assert v.delete("/api/models/rest-bone").status_code == 403
        assert c.delete("/api/models/rest-bone").status_code == 204
        assert c.delete("/api/models/rest-bone").status_code == 404
        assert c.get("/api/models/rest-bone").status_code == 404
        assert c.delete("/api/models/rest-cxr").status_code == 204


def test_rest_broken_packages_are_422_with_reason(server: RunningServer, tmp_path: Path) -> None:
    seg = make_segmentation_package(tmp_path / "seg", name="rest-broken")
    with open(seg / WEIGHTS_FILE, "ab") as fh:
        fh.write(b"\0")
    with server.client() as c:
        r = c.post("/api/models", content=_zip_bytes(seg), headers={"content-type": "application/zip"})
        assert r.status_code == 422
        assert "broken model package" in r.json()["detail"] and "SHA-256" in r.json()["detail"]
        r = c.post("/api/models", content=b"not a zip", headers={"content-type": "application/zip"})
        assert r.status_code == 422 and "not a valid ZIP file" in r.json()["detail"]
        r = c.post("/api/models", content=b"{}", headers={"content-type": "application/json"})
        assert r.status_code == 415
        assert all(m["name"] != "rest-broken" for m in c.get("/api/models").json())


def test_concurrent_installs_of_one_package_give_one_model(archive: Archive, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    src = make_segmentation_package(tmp_path / "src", name="race")
    zipped = zip_folder(src, tmp_path / "race.zip", top_dir=True)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: install(archive, p), [src, zipped, src, zipped]))
    assert len({m.id for m in results}) == 1
    assert [p.name for p in (archive.settings.home / "models").iterdir()] == [Path(results[0].package_dir).name]
    assert get_package(archive, "race").metadata.name == "race"
