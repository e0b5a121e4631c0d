"""radsight train classification end to end on real Kermany images, and the shipped cxr-pneumonia package.

The training tests need the train extra (torch, MONAI) and the shared images; the shipped
package test needs only the shared images (serving runs it without torch).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA
from radsight.ai import inference
from radsight.ai.package import load_package
from radsight.ai.pipeline import run_model
from radsight.ai.registry import builtin_packages
from radsight.archive import Archive
from radsight.datasets.cxr import cxr_to_dicom, pick_chest_xrays
from radsight.index.models import Instance
from radsight.train import DEFAULT_CLASSIFIER_NAME, DEFAULT_VERSION
from radsight.train.data import binary_targets, discover, kermany_group, network_input, read_grey, split_by_group

KERMANY = SHARED_DATA / "cxr" / "kermany224" / "train"
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "radsight" / "models" / "cxr-pneumonia"
pytestmark = pytest.mark.skipif(
    not KERMANY.is_dir(), reason=f"shared Kermany images not found at {KERMANY} (set RADSIGHT_SHARED_DATA)"
)


def _needs_torch() -> None:
    pytest.importorskip("torch", reason="training needs the train extra: pip install 'radsight[train]'")
    pytest.importorskip("monai", reason="training needs the train extra: pip install 'radsight[train]'")


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real images (20 per class) in class folders."""
    root = tmp_path_factory.mktemp("kermany40")
    for jpeg, label in pick_chest_xrays(KERMANY, 40, seed=5):
        (root / label).mkdir(exist_ok=True)
        (root / label / jpeg.name).symlink_to(jpeg)
    return root


def _train(data: Path, out: Path, ckpt: Path, *extra: str) -> Any:
    from radsight.cli import app

    args = ["train", "classification", str(data), "--out", str(out), "--size", "64", "--epochs", "2",
            "--max-steps", "4", "--batch-size", "8", "--threads", "1", "--checkpoints", str(ckpt), "--no-cache",
            "--quiet", *extra]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def trained(subset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    _needs_torch()
    base = tmp_path_factory.mktemp("trained")
    result = _train(subset, base / "pkg", base / "ckpt")
    assert result.exit_code == 0, result.output
    return base / "pkg", base / "ckpt"


def test_kermany_patient_groups_and_split() -> None:
    assert kermany_group(Path("person1_bacteria_1.jpeg")) == "person1"
    assert kermany_group(Path("person1_virus_7.jpeg")) == "person1"
    assert kermany_group(Path("IM-0115-0001.jpeg")) == "IM-0115"
    assert kermany_group(Path("NORMAL2-IM-0383-0001.jpeg")) == "NORMAL2-IM-0383"
    assert kermany_group(Path("other.png")) == "other"
    samples = discover(KERMANY)
    y = binary_targets(samples, "PNEUMONIA")
    train_idx, val_idx = split_by_group(samples, y, val_fraction=0.15, seed=0)
    assert len(samples) == len(train_idx) + len(val_idx) == 5216
    assert not {samples[i].group for i in train_idx} & {samples[i].group for i in val_idx}
    assert abs(y[val_idx].mean() - y.mean()) < 0.02  # stratified
    assert abs(len(val_idx) / len(samples) - 0.15) < 0.02
    again = split_by_group(samples, y, val_fraction=0.15, seed=0)
    assert np.array_equal(again[1], val_idx)  # deterministic


def _shipped_names() -> set[str]:
    return {load_package(p).metadata.name for p in builtin_packages()}


def test_cli_trains_a_package_that_serving_accepts(trained: tuple[Path, Path]) -> None:
    pkg_dir, ckpt = trained
    pkg = load_package(pkg_dir)
    meta = pkg.metadata
    # No --name: a name of its own, never a shipped model's (installed, it would replace that model).
    assert (meta.name, meta.version) == (DEFAULT_CLASSIFIER_NAME, DEFAULT_VERSION)
    assert "cxr-pneumonia" in _shipped_names() and meta.name not in _shipped_names()
    assert meta.task == "classification" and meta.input.size == [64, 64]
    assert meta.input.modality == ["CR", "DX"] and meta.input.body_part == ["CHEST"]
    assert [(o.name, o.kind, o.activation) for o in meta.outputs] == [
        ("logits", "logits", "sigmoid"), ("heatmap", "heatmap", "none")]
    (label,) = meta.labels
    assert (label.type.value, label.type.scheme, label.category.value) == ("233604007", "SCT", "49755003")
    assert label.threshold is not None and 0 < label.threshold < 1
    assert label.urgency["urgent"] == label.threshold and label.urgency["critical"] >= label.threshold
    card = json.loads((pkg_dir / "model-card.json").read_text())
    assert card["training"]["steps"] == 4
    assert set(card["metrics"]) >= {"auc", "accuracy", "sensitivity", "specificity", "ece"}
    md = (pkg_dir / "model-card.md").read_text()
    assert "Not for clinical use" in md and "radsight train classification" in md
    for plot in card["plots"]:
        assert (pkg_dir / plot).is_file(), plot
    assert (ckpt / "last.pt").is_file() and (ckpt / "best.pt").is_file()
    assert not list(pkg_dir.rglob("*.pt"))  # checkpoints never go into the package


def test_resume_continues_from_the_last_checkpoint(subset: Path, trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, ckpt = trained
    result = _train(subset, tmp_path / "pkg", ckpt, "--resume", "--name", "site-b-pneumonia", "--version", "2.0")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "pkg" / "model-card.json").read_text())
    assert card["training"]["steps"] == 4  # nothing left to do: the same 4 steps, exported again
    meta = load_package(tmp_path / "pkg").metadata
    assert (meta.name, meta.version) == (card["name"], card["version"]) == ("site-b-pneumonia", "2.0")
    assert "--name site-b-pneumonia --version 2.0" in card["reproduce"]  # the card's command makes this package


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--name", "my model", "--name 'my model': a model name is 1 to 64 letters, digits"),
        ("--name", "-x", "--name '-x': a model name is"),
        ("--version", "1.0.0-rc1+build.77", "--version '1.0.0-rc1+build.77': a model version is 1 to 16 characters"),
    ],
)
def test_a_name_or_version_no_package_can_carry_is_refused_before_training(
    subset: Path, tmp_path: Path, option: str, value: str, says: str
) -> None:
    _needs_torch()
    result = _train(subset, tmp_path / "pkg", tmp_path / "ckpt", option, value)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "ckpt").exists()


def test_a_shipped_name_given_explicitly_is_allowed_with_a_note(tmp_path: Path) -> None:
    _needs_torch()
    result = _train(tmp_path / "no-such-data", tmp_path / "pkg", tmp_path / "ckpt", "--name", "cxr-pneumonia")
    output = " ".join(result.output.split())
    assert "'cxr-pneumonia' is the name of a model that ships with RadSight" in output
    assert "radsight model add PACKAGE --replace" in output
    assert result.exit_code == 1 and "no-such-data: no such file or folder" in output
    assert "Traceback" not in result.output


def test_cuda_asked_for_where_there_is_none_is_one_clear_message(tmp_path: Path) -> None:
    _needs_torch()
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = _train(tmp_path, tmp_path / "pkg", tmp_path / "ckpt", "--device", "cuda")
    assert result.exit_code == 2
    assert "--device cuda: PyTorch sees no CUDA device here; train with --device cpu" in " ".join(result.output.split())


def test_onnx_matches_pytorch_with_calibration_and_cam(subset: Path, tmp_path: Path) -> None:
    _needs_torch()
    import onnxruntime as ort
    import torch

    from radsight.train.classification import input_spec
    from radsight.train.export import CamClassifier, check_parity, export_onnx
    from radsight.train.network import CompactResNet

    torch.manual_seed(0)
    net = CompactResNet().eval()
    model = CamClassifier(net, temperature=1.7, bias=-0.3).eval()
    spec = input_spec(96)
    images = sorted(subset.rglob("*.jpeg"))[:3]
    x = np.stack([network_input(read_grey(p), spec) for p in images])[:, None].astype(np.float32)
    export_onnx(model, tmp_path / "m.onnx", channels=1, size=spec.size)
    assert check_parity(model, tmp_path / "m.onnx", x) <= 1e-4
    logits, heat = ort.InferenceSession(str(tmp_path / "m.onnx")).run(["logits", "heatmap"], {"input": x})
    with torch.no_grad():
        raw = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, raw / 1.7 - 0.3, atol=1e-4)  # calibration folded into the graph
    assert logits.shape == (3, 1) and heat.shape == (3, 1, 96, 96)
    assert heat.min() >= 0 and np.allclose(heat.reshape(3, -1).max(axis=1), 1.0, atol=1e-3)


def _capture_network_input(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    seen: list[np.ndarray] = []
    real: Callable[..., dict[str, np.ndarray]] = inference.run

    def spy(session: Any, input_name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(batch.copy())
        return real(session, input_name, batch)

    monkeypatch.setattr(inference, "run", spy)
    return seen


def test_training_preprocessing_equals_serving(
    trained: tuple[Path, Path], archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same X-ray through the trainer (JPEG) and through the pipeline (as DICOM, 8-bit and a 12-bit
    MONOCHROME1 copy) gives the same network input."""
    pkg = load_package(trained[0])
    spec = pkg.metadata.input
    jpeg = sorted((KERMANY / "PNEUMONIA").glob("*.jpeg"))[0]
    trainer_view = network_input(read_grey(jpeg), spec)
    ds = cxr_to_dicom(jpeg, tmp_path / "a.dcm", label="PNEUMONIA", patient_id="PARITY-1")
    # 12-bit MONOCHROME1 of the same image: other bits and polarity, same picture after serving's inversion.
    m1 = pydicom.dcmread(tmp_path / "a.dcm")
    pixels = m1.pixel_array.astype(np.uint16)
    m1.PixelData = ((255 - pixels) * 16).astype(np.uint16).tobytes()
    m1.PhotometricInterpretation = "MONOCHROME1"
    m1.BitsAllocated, m1.BitsStored, m1.HighBit = 16, 12, 11
    m1.SOPInstanceUID = m1.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    m1.SeriesInstanceUID = pydicom.uid.generate_uid()
    m1.save_as(tmp_path / "m1.dcm", enforce_file_format=True)
    seen = _capture_network_input(monkeypatch)
    for path, series in ((tmp_path / "a.dcm", ds.SeriesInstanceUID), (tmp_path / "m1.dcm", m1.SeriesInstanceUID)):
        assert archive.ingest.ingest_file(path).ok
        run_model(archive, pkg, study_instance_uid=str(ds.StudyInstanceUID), series_instance_uid=str(series),
                  job_id=1)
        # The training loader reads the DICOM file too: identical to what the pipeline fed the network.
        np.testing.assert_allclose(network_input(read_grey(path), spec), seen[-1][0, 0], atol=1e-6)
    assert len(seen) == 2
    for batch in seen:
        assert batch.shape == (1, 1, 64, 64)
        np.testing.assert_allclose(batch[0, 0], trainer_view, atol=1e-5)


def _pmap_shape(archive: Archive, sop_uid: str) -> tuple[int, ...]:
    from sqlalchemy import select

    with archive.db.session() as s:
        key = s.scalars(select(Instance.storage_key).where(Instance.sop_instance_uid == sop_uid)).one()
    path = archive.storage.local_path(key)
    assert path is not None
    return tuple(pydicom.dcmread(path).pixel_array.shape)


def test_shipped_package_classifies_real_xrays_as_dicom(archive: Archive, tmp_path: Path) -> None:
    pkg = load_package(SHIPPED)
    assert pkg.metadata.name == "cxr-pneumonia" and pkg.weights.stat().st_size < 5_000_000
    probs: dict[str, list[float]] = {"NORMAL": [], "PNEUMONIA": []}
    for i, (jpeg, label) in enumerate(pick_chest_xrays(KERMANY, 6, seed=11)):
        ds = cxr_to_dicom(jpeg, tmp_path / f"{i}.dcm", label=label, patient_id=f"SHIP-{i}")
        assert archive.ingest.ingest_file(tmp_path / f"{i}.dcm").ok
        result = run_model(archive, pkg, study_instance_uid=str(ds.StudyInstanceUID),
                           series_instance_uid=str(ds.SeriesInstanceUID), job_id=100 + i)
        (finding,) = result.findings
        assert finding.probability is not None and 0.0 <= finding.probability <= 1.0
        assert finding.positive == (finding.probability >= pkg.metadata.labels[0].threshold)
        probs[label].append(finding.probability)
        assert result.pmap_sop_instance_uid
        assert _pmap_shape(archive, result.pmap_sop_instance_uid) == (int(ds.Rows), int(ds.Columns))
    assert np.mean(probs["PNEUMONIA"]) > np.mean(probs["NORMAL"])


def test_missing_train_extra_is_one_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from radsight.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    result = CliRunner().invoke(app, ["train", "classification", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "pip install 'radsight[train]'" in " ".join(result.output.split())


def test_serving_never_imports_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, radsight.cli, radsight.server, radsight.ai.pipeline, radsight.ai.engine\n"
            "bad = sorted(m for m in ('torch', 'monai', 'matplotlib') if m in sys.modules)\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
