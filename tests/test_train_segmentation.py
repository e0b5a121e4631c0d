"""CT organ segmentation: a tiny training run makes a valid package; the shipped package works.

The shipped package is run exactly as the engine runs it (radsight.ai.preprocess + the numpy
sliding window on ONNX Runtime, see radsight.train.segmentation.segment).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radsight.ai.package import load_package
from radsight.ai.registry import builtin_dir
from radsight.train import segmentation
from radsight.train.synth_ct import LABELS, generate, sample_params

SHIPPED = builtin_dir() / segmentation.MODEL_NAME


def test_a_few_training_steps_make_a_package_the_engine_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort
    import torch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # checkpoints and prepared volumes
    package_dir = segmentation.train("synthetic:2", tmp_path / "package", epochs=1, max_steps=2, seed=1)
    assert package_dir == tmp_path / "package"
    ckpt_dir, _ = segmentation.work_dirs(package_dir)
    assert ckpt_dir.is_relative_to(tmp_path / "cache")
    package = load_package(package_dir)  # metadata schema, SHA-256, ONNX input/output names
    meta = package.metadata
    assert meta.task == "segmentation" and meta.input.dimensions == 3
    assert meta.input.modality == ["CT"] and meta.input.size == list(segmentation.PATCH)
    assert meta.input.spacing == list(segmentation.SPACING)
    # What the shipped package declares comes from training, not from a hand edit afterwards.
    shipped = load_package(SHIPPED).metadata
    assert meta.input.body_part == shipped.input.body_part == segmentation.BODY_PARTS
    assert [lab.largest_component_only for lab in meta.labels] == [True] * 4
    assert [lab.model_dump() for lab in meta.labels] == [lab.model_dump() for lab in shipped.labels]
    assert [o.model_dump() for o in meta.outputs] == [{"name": "logits", "kind": "logits", "activation": "softmax"}]
    assert {lab.index: lab.type.value for lab in meta.labels} == {
        1: "10200004",
        2: "78961009",
        3: "9846003",
        4: "18639004",
    }
    assert all(lab.category.value == "123037004" and not lab.urgency for lab in meta.labels)
    assert (package_dir / "model-card.md").is_file() and (package_dir / "model-card.json").is_file()
    # ONNX Runtime and PyTorch agree on the exported weights.
    net = segmentation.network()
    net.load_state_dict(torch.load(ckpt_dir / "best.pt", weights_only=False)["model"])
    net.eval()
    x = torch.rand(1, 1, *segmentation.PATCH)
    with torch.no_grad():
        expected = net(x).numpy()
    sess = ort.InferenceSession(str(package.weights), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    assert got.shape == (1, 5, *segmentation.PATCH)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert (ckpt_dir / "last.pt").is_file()
    assert not list(package_dir.glob("*.pt"))
    # The held-out evaluation behind the card: per-organ Dice / HD95 with CIs, subgroups by phase.
    report = json.loads((ckpt_dir / "eval" / "metrics.json").read_text())
    assert report["n"] == 2 and (ckpt_dir / "eval" / "metrics.png").is_file()
    for name in LABELS.values():
        dice = report["metrics"][f"dice {name}"]
        assert len(dice["ci95"]) == 2 and "held out" in dice["split"]
        assert f"hd95_mm {name}" in report["metrics"]
    assert set(report["subgroups"]["phase"]) <= {"non_contrast", "arterial", "portal_venous"}


def test_shipped_package_segments_a_generated_volume() -> None:
    package = load_package(SHIPPED)
    seed = segmentation.EVAL_SEED + 7  # never trained on
    p = sample_params(seed)
    case = generate(seed, z_top=p.dome_z + 40.0, z_length=330.0, slice_thickness=3.0, pixel_spacing=2.8)
    pred = segmentation.segment(package, case.image, case.spacing)
    assert pred.shape == case.labels.shape
    dice = segmentation.dice_per_label(pred, case.labels)
    assert all(dice[name] > 0.8 for name in LABELS.values()), dice


def test_shipped_package_finds_the_liver_on_the_real_ct(shared_data: Path, tmp_path: Path) -> None:
    import pydicom

    from radsight.datasets.ct import nifti_to_ct_series

    nifti = shared_data / "ct" / "totalsegmentator" / "example_ct.nii.gz"
    image, spacing = segmentation.load_nifti_zyx(nifti)
    # The array is what the engine loads from the DICOM series radsight.datasets.ct writes.
    files = nifti_to_ct_series(nifti, tmp_path / "dicom")
    headers = [pydicom.dcmread(f) for f in (files[0], files[-1])]
    by_z = sorted(headers, key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert np.array_equal(by_z[0].pixel_array.astype(np.float32), image[0])
    assert np.array_equal(by_z[-1].pixel_array.astype(np.float32), image[-1])
    assert spacing == pytest.approx((3.0, 3.0, 3.0))

    pred = segmentation.segment(load_package(SHIPPED), image, spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    liver = pred == 1
    liver_ml = float(liver.sum()) * voxel_ml
    # The scan stops below the liver dome: part of the liver only (an adult liver is 1200-2000 mL).
    assert 400.0 < liver_ml < 2600.0, liver_ml
    # Patient's right = image left: the liver's centre lies in the left half of the columns.
    assert np.argwhere(liver)[:, 2].mean() < image.shape[2] / 2
    # and in the upper part of the scan (slices run from inferior to superior).
    assert np.argwhere(liver)[:, 0].mean() > image.shape[0] / 2
