"""Probe findings of issue 16 closed here: model package paths (F4), ZIP bombs (F12), patient
data in database errors and logs (F14), file modes of the archive (F15)."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from tests.ai_testmodels import make_segmentation_package
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, RunningServer, make_settings, start_server
from tests.dicom_factory import make_ct
from tests.test_ai_registry import zip_folder

from radsight.ai.package import METADATA_FILE, WEIGHTS_FILE, ModelMetadata, ModelPackageError, sha256_file
from radsight.ai.registry import install, package_dir_inside
from radsight.archive import Archive
from radsight.index.models import Patient
from radsight.ingest.importer import import_paths
from radsight.storage.filesystem import FileSystemStorage

REF = ("dicom", "wg04", "REF")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A permissive umask (the usual default), restored afterwards: file modes must not depend on it."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _group_or_other_readable(root: Path) -> list[str]:
    return [f"{p} {stat.filemode(p.stat().st_mode)}" for p in [root, *root.rglob("*")]
            if p.stat().st_mode & 0o077]


# --- F4: a model's name and version are safe identifiers; nothing outside the models folder is touched


def _installed(home: Path) -> list[Path]:
    models = home / "models"
    return list(models.iterdir()) if models.is_dir() else []


def _package_with(tmp_path: Path, folder: str, **fields: str) -> Path:
    pkg = make_segmentation_package(tmp_path / folder, name="bone", version="1.0")
    meta = json.loads((pkg / METADATA_FILE).read_text())
    meta.update(fields)
    (pkg / METADATA_FILE).write_text(json.dumps(meta))
    return pkg


@pytest.mark.parametrize("field,value", [("version", "/../../../x"), ("version", "1..2"), ("version", "1/2"),
                                         ("name", "../x"), ("name", "a..b"), ("name", "a/b"), ("version", "")])
def test_unsafe_names_and_versions_are_refused(tmp_path: Path, field: str, value: str) -> None:
    meta = json.loads((make_segmentation_package(tmp_path / "p") / METADATA_FILE).read_text())
    meta[field] = value
    with pytest.raises(ValueError, match=field):
        ModelMetadata.model_validate(meta)


def test_package_dir_guard(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "outside").mkdir()
    (models / "link").symlink_to(tmp_path / "outside")
    assert package_dir_inside(models, models / "bone-1.0-abcd1234") == (models / "bone-1.0-abcd1234").resolve()
    for bad in [models / "bone-/../../../x", models / "a" / "b", tmp_path / "outside", models, models / "link",
                models / ".tmp-1", models / ".."]:
        with pytest.raises(ModelPackageError, match="not a package folder inside the models folder"):
            package_dir_inside(models, bad)


def _beside_home(folder: Path) -> list[str]:
    """What lies beside the archive's home (the home and the SQLite index left out)."""
    return sorted(p.name for p in folder.iterdir() if p.name != "home" and not p.name.startswith("index.sqlite"))


def _cli_add(home: Path, db_url: str, package: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RADSIGHT_HOME": str(home), "RADSIGHT_DATABASE_URL": db_url,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "radsight", "model", "add", str(package)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_refuses_traversal_and_touches_nothing_outside(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    pkg = _package_with(tmp_path, "evil", version="/../../../x")
    victim = tmp_path / f"x-{sha256_file(pkg / WEIGHTS_FILE)[:8]}"  # where models/bone-/../../../x-<sha8> points
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    before = _beside_home(tmp_path)
    r = _cli_add(home, db_url, pkg)
    assert r.returncode == 1, r.stdout
    assert "broken model package" in r.stderr and "version: String should match pattern" in r.stderr
    assert (victim / "keep.txt").read_text() == "precious"
    assert _beside_home(tmp_path) == before
    r = _cli_add(home, db_url, _package_with(tmp_path, "evil-name", name="../x"))
    assert r.returncode == 1 and "name" in r.stderr
    assert _installed(home) == []


def test_rest_refuses_traversal_with_422(server: RunningServer, tmp_path: Path) -> None:
    home = server.archive.settings.home
    pkg = _package_with(tmp_path, "evil", version="/../../../x")
    victim = home.parent / f"x-{sha256_file(pkg / WEIGHTS_FILE)[:8]}"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    before = _beside_home(home.parent)
    with server.client() as c:
        r = c.post("/api/models", content=zip_folder(pkg, tmp_path / "evil.zip", top_dir=False).read_bytes(),
                   headers={"content-type": "application/zip"})
        assert r.status_code == 422 and "version" in r.json()["detail"], r.text
        named = _package_with(tmp_path, "evil-name", name="../x")
        r = c.post("/api/models", content=zip_folder(named, tmp_path / "named.zip", top_dir=False).read_bytes(),
                   headers={"content-type": "application/zip"})
        assert r.status_code == 422 and "name" in r.json()["detail"], r.text
    assert (victim / "keep.txt").read_text() == "precious"
    assert _beside_home(home.parent) == before


# --- F12: ZIP bombs are refused before extraction


def _bomb(path: Path, size: int, *, dicm: bool = True) -> Path:
    """A ZIP with one member of ``size`` bytes: a Part 10 prefix, then zeros (compresses ~1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.dcm", "w") as fh:
        head = bytes(128) + b"DICM" if dicm else b""
        fh.write(head)
        chunk = bytes(1024 * 1024)
        left = size - len(head)
        while left > 0:
            fh.write(chunk[:left])
            left -= len(chunk)
    return path


def test_zip_bomb_member_refused_before_extraction(archive: Archive, tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.zip", 200 * 1024**2)
    assert bomb.stat().st_size < 1024**2
    summary = import_paths(archive.ingest, [bomb])
    assert summary.counts["refused"] == 1 and summary.counts["stored"] == 0
    name, why = summary.refused[0]
    assert name.endswith("!bomb.dcm")
    assert "ZIP member refused, not extracted" in why and "zip_max_ratio" in why
    assert not any(archive.storage.spool_dir().iterdir())


def test_zip_limits_from_settings(tmp_path: Path, db_url: str, shared_data: Path) -> None:
    ref = sorted(shared_data.joinpath(*REF).iterdir())[:3]
    bundle = tmp_path / "ref.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in ref:
            zf.write(p, p.name)
        zf.writestr("notes.bin", b"not DICOM " * 1000)
    total = sum(p.stat().st_size for p in ref)
    # The whole archive over the total: refused as one, nothing stored.
    a = Archive.open(make_settings(tmp_path / "h1", db_url, zip_max_total_bytes=total))
    try:
        summary = import_paths(a.ingest, [bundle])
        assert summary.counts["refused"] == 1 and summary.counts["stored"] == 0
        assert "ZIP archive refused, nothing extracted" in summary.refused[0][1]
        assert "zip_max_total_bytes" in summary.refused[0][1]
    finally:
        a.close()
    # A member over the member limit is refused; the others are stored; non-DICOM never extracted.
    biggest = max(ref, key=lambda p: p.stat().st_size)
    a = Archive.open(make_settings(tmp_path / "h2", db_url, zip_max_member_bytes=biggest.stat().st_size - 1,
                                   zip_max_ratio=2))
    try:
        summary = import_paths(a.ingest, [bundle])
        refused = dict(summary.refused)
        assert summary.counts["stored"] == len(ref) - 1
        assert "zip_max_member_bytes" in refused[f"{bundle}!{biggest.name}"]
        assert "not a DICOM Part 10 file" in refused[f"{bundle}!notes.bin"]
        assert not any(a.storage.spool_dir().iterdir())
    finally:
        a.close()
    # A member compressed better than zip_max_ratio (here 2:1) is a bomb.
    bomb = _bomb(tmp_path / "small-bomb.zip", 2 * 1024**2)
    a = Archive.open(make_settings(tmp_path / "h3", db_url, zip_max_ratio=2))
    try:
        summary = import_paths(a.ingest, [bomb])
        assert "zip_max_ratio" in summary.refused[0][1]
    finally:
        a.close()


def test_zip_member_whose_header_lies_writes_no_more_than_declared(archive: Archive, tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "liar.zip", 20 * 1024**2)
    data = bytearray(bomb.read_bytes())
    # Declare 4096 bytes uncompressed in the central directory (what zipfile reads) instead of 20 MiB.
    cd = data.index(b"PK\x01\x02")
    assert struct.unpack_from("<I", data, cd + 24)[0] == 20 * 1024**2
    struct.pack_into("<I", data, cd + 24, 4096)
    bomb.write_bytes(bytes(data))
    summary = import_paths(archive.ingest, [bomb])
    assert summary.counts["stored"] == 0 and summary.counts["refused"] == 1
    assert not any(archive.storage.spool_dir().iterdir())


def test_model_package_zip_bomb_refused(archive: Archive, tmp_path: Path) -> None:
    pkg = make_segmentation_package(tmp_path / "bone", name="bone")
    bomb = tmp_path / "bone.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(pkg.iterdir()):
            zf.write(p, p.name)
        zf.writestr("padding.bin", bytes(100 * 1024**2))
    with pytest.raises(ModelPackageError, match="zip_max_ratio"):
        install(archive, bomb)
    assert _installed(archive.settings.home) == []


# --- F14: bound parameters (patient data) never in error messages nor logs


def test_failing_statement_does_not_show_patient_data(archive: Archive, caplog: pytest.LogCaptureFixture) -> None:
    name = "SECRET^PATIENT^NAME"
    row = {"id": 424242, "patient_id": "PID-4242", "issuer_of_patient_id": "", "patient_name": name}
    with archive.db.engine.begin() as conn:
        conn.execute(insert(Patient).values(**row))
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    with pytest.raises(IntegrityError) as failed, archive.db.engine.begin() as conn:
        conn.execute(insert(Patient).values(**{**row, "patient_id": "PID-other"}))  # the same primary key
    assert name not in str(failed.value) and "PID-other" not in str(failed.value)
    assert "INSERT INTO patient" in str(failed.value)  # the statement is still shown
    assert caplog.records and all(name not in r.getMessage() for r in caplog.records)


# --- F15: the archive's files readable by its user only


def test_stored_indexed_imported_and_installed_files_are_private(
    tmp_path: Path, shared_data: Path, umask_022: None
) -> None:
    home = tmp_path / "home"
    running, stop, _ = start_server(home, f"sqlite:///{home / 'index.sqlite'}")
    try:
        ds = make_ct(patient_name="Private^Patient")
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buf.getvalue()
                + f"\r\n--{boundary}--\r\n".encode())
        with httpx.Client(base_url=running.base_url, auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=60) as c:
            r = c.post("/dicomweb/studies", content=body, headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'})
            assert r.status_code == 200, r.text
        ae = AE(ae_title="MODALITY")
        other = make_ct(tmp_path / "cstore.dcm", patient_name="Other^Patient")
        context = build_context(other.SOPClassUID, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", running.dicom_port, [context], ae_title=running.ae_title)
        assert assoc.is_established
        try:
            assert assoc.send_c_store(other).Status == 0
        finally:
            assoc.release()
        bundle = tmp_path / "ref.zip"
        with zipfile.ZipFile(bundle, "w") as zf:
            zf.write(sorted(shared_data.joinpath(*REF).iterdir())[0], "one.dcm")
        assert import_paths(running.archive.ingest, [bundle]).counts["stored"] == 1
        install(running.archive, make_segmentation_package(tmp_path / "seg", name="bone"))
        with running.archive.db.session() as s:  # a write after the others: the WAL is there
            s.execute(insert(Patient).values(patient_id="P-last", patient_name="Last^Patient"))
            s.commit()
        assert (home / "index.sqlite-wal").exists() and any((home / "models").iterdir())
        assert _group_or_other_readable(home) == []
    finally:
        stop()  # type: ignore[operator]


def test_home_made_by_an_earlier_version_is_tightened_at_open(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    (home / "storage").mkdir(parents=True)
    (home / "index.sqlite").touch()  # an empty file is an empty SQLite database
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "index.sqlite").stat().st_mode) == 0o644
    a = Archive.open(make_settings(home, f"sqlite:///{home / 'index.sqlite'}"))
    try:
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "storage").stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "index.sqlite").stat().st_mode) == 0o600
    finally:
        a.close()


def test_storage_writes_private_files_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    storage = FileSystemStorage(tmp_path / "storage")
    try:
        source = tmp_path / "source.dcm"
        source.write_bytes(b"x" * 100)
        os.chmod(source, 0o644)
        keys = [storage.put_bytes(b"y" * 100), storage.put_file(source, move=False)]
        for key in keys:
            assert stat.S_IMODE(storage.root.joinpath(key).stat().st_mode) == 0o600
        assert _group_or_other_readable(storage.root) == []
    finally:
        storage.close()
