"""Models shipped with RadSight: installed at start-up, upgraded, and an admin's choice respected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.ai_testmodels import make_classification_package, make_segmentation_package
from tests.conftest import make_settings

from radsight.ai import registry
from radsight.ai.engine import AIEngine
from radsight.ai.package import load_package
from radsight.archive import Archive
from radsight.index.models import AIModel


def _installed(archive: Archive) -> dict[str, tuple[str, str]]:
    with archive.db.session() as s:
        return {m.name: (m.version, m.sha256) for m in s.scalars(select(AIModel))}


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    root = tmp_path / "shipped"
    make_classification_package(root / "cls", name="ship-cls", version="1.0")
    make_segmentation_package(root / "seg", name="ship-seg", version="1.0")
    return root


def test_first_start_installs_every_shipped_model(archive: Archive, shipped: Path) -> None:
    assert sorted(registry.install_builtin(archive, shipped)) == ["ship-cls", "ship-seg"]
    installed = _installed(archive)
    assert installed["ship-cls"][0] == "1.0"
    assert installed["ship-seg"][1] == load_package(shipped / "seg").metadata.sha256
    # the copy in the archive's home is what runs, not the shipped folder
    pkg = registry.get_package(archive, "ship-cls")
    assert pkg.path.parent == registry.models_dir(archive)
    # a second start changes nothing
    assert registry.install_builtin(archive, shipped) == []


def test_upgrade_replaces_only_untouched_shipped_models(archive: Archive, shipped: Path, tmp_path: Path) -> None:
    registry.install_builtin(archive, shipped)
    newer = tmp_path / "newer"
    make_classification_package(newer / "cls", name="ship-cls", version="2.0", gain=5.0)
    make_segmentation_package(newer / "seg", name="ship-seg", version="2.0", threshold_hu=100.0)
    # the admin replaced ship-seg with their own weights: an upgrade must not overwrite it
    own = tmp_path / "own"
    make_segmentation_package(own, name="ship-seg", version="1.5", threshold_hu=300.0)
    registry.install(archive, own, replace=True)
    assert registry.install_builtin(archive, newer) == ["ship-cls"]
    installed = _installed(archive)
    assert installed["ship-cls"][0] == "2.0"
    assert installed["ship-seg"][0] == "1.5"


def test_a_removed_shipped_model_stays_removed(archive: Archive, shipped: Path) -> None:
    registry.install_builtin(archive, shipped)
    assert registry.remove(archive, "ship-cls")
    assert registry.install_builtin(archive, shipped) == []
    assert "ship-cls" not in _installed(archive)
    record = json.loads((registry.models_dir(archive) / registry.BUILTIN_RECORD).read_text())
    assert set(record) == {"ship-cls", "ship-seg"}


def test_an_admins_model_of_the_same_name_is_left_alone(archive: Archive, shipped: Path, tmp_path: Path) -> None:
    own = tmp_path / "own"
    make_classification_package(own, name="ship-cls", version="0.9", gain=3.0)
    registry.install(archive, own)
    assert registry.install_builtin(archive, shipped) == ["ship-seg"]
    assert _installed(archive)["ship-cls"][0] == "0.9"


def test_a_broken_shipped_package_is_skipped_with_its_reason(
    archive: Archive, shipped: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (shipped / "cls" / "model.onnx").write_bytes(b"not onnx")
    assert registry.install_builtin(archive, shipped) == ["ship-seg"]
    assert any("SHA-256" in r.getMessage() and "cannot be used" in r.getMessage() for r in caplog.records)


def test_engine_start_installs_the_distribution_models(tmp_path: Path, db_url: str) -> None:
    """``serve`` (AIEngine.start) installs what ships in radsight/models unless switched off."""
    shipped = registry.builtin_packages()
    if not shipped:
        pytest.skip("no model ships in src/radsight/models yet")
    off = Archive.open(make_settings(tmp_path / "off", db_url, ai_workers=0))
    try:
        engine = AIEngine(off)
        engine.start()
        engine.stop()
        assert _installed(off) == {}
    finally:
        off.close()
    on = Archive.open(make_settings(tmp_path / "on", db_url, ai_workers=0, ai_builtin_models=True))
    try:
        engine = AIEngine(on)
        engine.start()
        engine.stop()
        names = {load_package(p).metadata.name for p in shipped}
        assert set(_installed(on)) == names
        for name in names:
            pkg = registry.get_package(on, name)
            assert (pkg.path / "model-card.md").is_file(), f"{name} ships without a model card"
    finally:
        on.close()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSIGHT_")}
    return subprocess.run([sys.executable, "-m", "radsight", "model", *args, "--home", str(home)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_lists_and_reinstalls_shipped_models(tmp_path: Path) -> None:
    shipped = registry.builtin_packages()
    if not shipped:
        pytest.skip("no model ships in src/radsight/models yet")
    home = tmp_path / "home"
    listing = subprocess.run([sys.executable, "-m", "radsight", "model", "shipped"], capture_output=True, text=True,
                             timeout=300)
    assert listing.returncode == 0, listing.stderr
    names = {line.split("\t")[0] for line in listing.stdout.splitlines()}
    assert names == {load_package(p).metadata.name for p in shipped}
    folder = shipped[0].name
    added = _cli(home, "add", f"builtin:{folder}")
    assert added.returncode == 0, added.stderr
    installed = _cli(home, "list")
    assert load_package(shipped[0]).metadata.name in installed.stdout
    missing = _cli(home, "add", "builtin:no-such-model")
    assert missing.returncode == 1 and "no model 'no-such-model' ships with RadSight" in missing.stderr
