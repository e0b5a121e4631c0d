"""The ``radsight`` command end to end: import (folder, ZIP, DICOMDIR media), users, AEs,
check, settings from the environment and a TOML file, and ``serve`` as a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.fileset import FileSet
from pynetdicom import AE
from sqlalchemy import select
from tests.conftest import free_port, make_settings
from typer.testing import CliRunner

from radsight.api.auth import Authenticator
from radsight.archive import Archive
from radsight.cli import app
from radsight.index.models import Instance

RADSIGHT = Path(sys.executable).with_name("radsight")
runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An archive home; the index is the parametrised database (via RADSIGHT_DATABASE_URL)."""
    monkeypatch.setenv("RADSIGHT_DATABASE_URL", db_url)
    monkeypatch.delenv("RADSIGHT_HOME", raising=False)
    monkeypatch.delenv("RADSIGHT_CONFIG", raising=False)
    return tmp_path / "home"


def _run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


def _summary(output: str) -> dict[str, int]:
    line = next(x for x in output.splitlines() if x.startswith("summary: "))
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line)}


def _ct3(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "dicom" / "dcmqi" / "segmentations" / "ct-3slice").iterdir())


def test_import_folder_zip_and_dicomdir(home: Path, tmp_path: Path, shared_data: Path) -> None:
    # A folder: 3 real CT slices, a text file (skipped by extension) and a broken file (refused).
    folder = tmp_path / "folder"
    folder.mkdir()
    for p in _ct3(shared_data):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00")
    code, out = _run("import", "--home", str(home), str(folder))
    assert code == 0, out
    assert _summary(out) == {"stored": 3, "overwritten": 0, "duplicate": 0, "refused": 1, "skipped": 1}
    assert "refused: " in out and "broken.dcm" in out

    # A ZIP archive of real WG04 files, one of them twice (in a sub-folder of the ZIP).
    ref = sorted((shared_data / "dicom" / "wg04" / "REF").iterdir())[:3]
    archive_zip = tmp_path / "studies.zip"
    with zipfile.ZipFile(archive_zip, "w") as zf:
        for p in ref:
            zf.write(p, f"REF/{p.name}")
        zf.write(ref[0], "copy/again.dcm")
    code, out = _run("import", "--home", str(home), str(archive_zip))
    assert code == 0, out
    assert _summary(out) == {"stored": 3, "overwritten": 0, "duplicate": 1, "refused": 0, "skipped": 0}

    # DICOMDIR media written with pydicom's FileSet from real files: the DICOMDIR is skipped
    # with a note, the images it refers to are imported from the folder.
    fs = FileSet()
    for p in sorted((shared_data / "dicom" / "wg04" / "REF").iterdir())[3:6]:
        fs.add(p)
    media = tmp_path / "media"
    fs.write(media)
    assert (media / "DICOMDIR").is_file()
    code, out = _run("import", "--home", str(home), str(media))
    assert code == 0, out
    assert _summary(out) == {"stored": 3, "overwritten": 0, "duplicate": 0, "refused": 0, "skipped": 1}
    assert re.search(r"skipped: .*DICOMDIR: DICOMDIR", out)

    archive = Archive.open(make_settings(home, os.environ["RADSIGHT_DATABASE_URL"]))
    try:
        with archive.db.session() as s:
            assert len(list(s.scalars(select(Instance.id)))) == 9
    finally:
        archive.close()
    code, out = _run("check", "--home", str(home))
    assert code == 0 and "instances indexed: 9; files stored: 9" in out


def test_import_log_stored_lines(home: Path, shared_data: Path) -> None:
    files = _ct3(shared_data)
    code, out = _run("import", "--home", str(home), "--log-stored", *map(str, files), files[0].as_posix())
    assert code == 0, out
    lines = [x.split() for x in out.splitlines() if x.startswith(("stored ", "duplicate "))]
    assert [x[0] for x in lines] == ["stored", "stored", "stored", "duplicate"]
    assert lines[0][1] == lines[3][1] and len({x[1] for x in lines}) == 3


def test_home_from_environment_and_missing_home(home: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run("check")
    assert code == 2 and "No archive home" in out
    monkeypatch.setenv("RADSIGHT_HOME", str(home))
    code, out = _run("import", str(_ct3(shared_data)[0]))
    assert code == 0 and _summary(out)["stored"] == 1
    assert (home / "storage").is_dir()


def test_user_add_password_stdin_then_authenticate(home: Path) -> None:
    code, out = _run("user", "add", "rad1", "--role", "radiologist", "--password-stdin", "--home", str(home),
                     input="s3cret-pass\n")
    assert code == 0, out
    code, out = _run("user", "list", "--home", str(home))
    assert "rad1\tradiologist" in out
    archive = Archive.open(make_settings(home, os.environ["RADSIGHT_DATABASE_URL"]))
    try:
        with archive.db.session() as s:
            authn = Authenticator()
            assert authn.check_basic(s, "rad1", "s3cret-pass") is not None
            assert authn.check_basic(s, "rad1", "wrong") is None
    finally:
        archive.close()
    code, _ = _run("user", "add", "rad2", "--role", "emperor", "--password-stdin", "--home", str(home), input="x\n")
    assert code == 1


def test_ae_add_list_remove(home: Path) -> None:
    code, out = _run("ae", "add", "PACS1", "--host", "10.0.0.5", "--port", "104", "--description", "main PACS",
                     "--home", str(home))
    assert code == 0 and "PACS1 -> 10.0.0.5:104" in out
    _run("ae", "add", "PACS1", "--host", "10.0.0.6", "--port", "11112", "--home", str(home))  # update
    _run("ae", "add", "MODALITY", "--host", "ct1", "--port", "4242", "--home", str(home))
    code, out = _run("ae", "list", "--home", str(home))
    assert out.splitlines() == ["MODALITY\tct1\t4242\t", "PACS1\t10.0.0.6\t11112\t"]
    code, out = _run("ae", "add", "WAY-TOO-LONG-AE-TITLE", "--host", "h", "--port", "1", "--home", str(home))
    assert code == 1
    assert _run("ae", "remove", "PACS1", "--home", str(home))[0] == 0
    assert _run("ae", "remove", "PACS1", "--home", str(home))[0] == 1
    assert _run("ae", "list", "--home", str(home))[1].splitlines() == ["MODALITY\tct1\t4242\t"]


def test_check_exit_codes(home: Path, shared_data: Path) -> None:
    code, out = _run("check", "--home", str(home))
    assert code == 0 and "OK" in out
    _run("import", "--home", str(home), *map(str, _ct3(shared_data)))
    assert _run("check", "--home", str(home))[0] == 0
    storage = home / "storage"
    victim = next(p for p in storage.rglob("*.dcm") if p.relative_to(storage).parts[0] != "tmp")
    data = victim.read_bytes()
    victim.write_bytes(data[:-10])
    code, out = _run("check", "--home", str(home))
    assert code == 1 and "SIZE MISMATCH" in out
    victim.unlink()
    code, out = _run("check", "--home", str(home))
    assert code == 1 and "MISSING FILE" in out
    (storage / "ab" / "cd").mkdir(parents=True, exist_ok=True)
    orphan = storage / "ab" / "cd" / ("f" * 32 + ".dcm")
    orphan.write_bytes(data)
    code, out = _run("check", "--home", str(home), "--repair")
    assert code == 1 and "ORPHAN FILE (recent, kept" in out and orphan.exists()
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    code, out = _run("check", "--home", str(home), "--repair")
    assert code == 1 and "ORPHAN FILE (removed)" in out and not orphan.exists()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """``radsight serve`` as a real process; settings from a TOML file and RADSIGHT_* variables,
    the home from RADSIGHT_HOME (no --home)."""
    assert _run("user", "add", "admin", "--role", "admin", "--password-stdin", "--home", str(home),
                input="admin-pass-1\n")[0] == 0
    http_port, dicom_port = free_port(), free_port()
    config = tmp_path / "radsight.toml"
    config.write_text(f'http_port = {http_port}\nae_title = "TOMLAE"\nallow_any_calling_ae = true\n')
    env = {**os.environ, "RADSIGHT_HOME": str(home), "RADSIGHT_CONFIG": str(config),
           "RADSIGHT_DICOM_PORT": str(dicom_port)}
    proc = subprocess.Popen([str(RADSIGHT), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "radsight serve did not start"
            time.sleep(0.2)
        yield proc, http_port, dicom_port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_health_auth_settings_and_sigterm(served: tuple[subprocess.Popen[bytes], int, int]) -> None:
    proc, http_port, dicom_port = served
    base = f"http://127.0.0.1:{http_port}"
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/dicomweb/studies").status_code == 401
    assert httpx.get(f"{base}/dicomweb/studies", auth=("admin", "wrong-pass")).status_code == 401
    ok = httpx.get(f"{base}/dicomweb/studies", auth=("admin", "admin-pass-1"))
    assert ok.status_code in (200, 204), ok.text  # 204: no study yet
    # The DICOM listener answers under the AE title from the TOML file, on the port from the env.
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title="TOMLAE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 15
    assert not _port_open(dicom_port) and not _port_open(http_port)


def test_demo_data_command(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "demo"
    code, text = _run("demo-data", str(out), "--cxr", "3", "--shared-data", str(shared_data))
    assert code == 0, text
    assert "wrote 3 chest X-rays (DX) and a 112-slice CT series" in text
    assert len(list((out / "cxr").glob("*.dcm"))) == 3 and len(list((out / "ct").glob("*.dcm"))) == 112
    code, text = _run("demo-data", str(out), "--shared-data", str(tmp_path / "nowhere"))
    assert code == 2 and "shared data not found" in text


def test_train_segmentation_names_its_package_and_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """radsight train segmentation: a name of its own (never a shipped model's), --version, and
    bad input refused before any work with a message about the input (no traceback)."""
    import json

    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from radsight.ai.package import load_package
    from radsight.ai.registry import builtin_packages
    from radsight.train import DEFAULT_SEGMENTER_NAME

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # checkpoints and prepared volumes
    bad_data = runner.invoke(app, ["train", "segmentation", "bogus", "--out", str(tmp_path / "x")])
    assert bad_data.exit_code == 1 and isinstance(bad_data.exception, SystemExit)
    assert "training data 'bogus': not synthetic:N and not a folder with imagesTr/ and labelsTr/" in " ".join(
        bad_data.output.split()
    )
    bad_name = runner.invoke(app, ["train", "segmentation", "synthetic:1", "--out", str(tmp_path / "x"),
                                   "--name", "ct organs"])
    assert bad_name.exit_code == 2 and "--name 'ct organs': a model name is" in " ".join(bad_name.output.split())
    assert not (tmp_path / "x").exists()

    package = tmp_path / "organs"
    result = runner.invoke(app, ["train", "segmentation", "synthetic:1", "--out", str(package), "--epochs", "1",
                                 "--max-steps", "1", "--version", "0.2"])
    assert result.exit_code == 0, result.output
    meta = load_package(package).metadata
    shipped = {load_package(p).metadata.name for p in builtin_packages()}
    assert "ct-abdomen-organs" in shipped
    assert (meta.name, meta.version) == (DEFAULT_SEGMENTER_NAME, "0.2") and meta.name not in shipped
    card = json.loads((package / "model-card.json").read_text())
    assert (card["name"], card["version"]) == (meta.name, meta.version)
    assert f"--out organs --name {DEFAULT_SEGMENTER_NAME} --version 0.2" in card["reproduce"]
