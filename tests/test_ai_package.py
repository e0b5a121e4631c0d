"""Model packages: valid test packages load; broken ones are refused with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tests.ai_testmodels import make_classification_package, make_segmentation_package

from radsight.ai.package import METADATA_FILE, WEIGHTS_FILE, ModelPackageError, load_package


def test_test_packages_load_and_compute_known_functions(tmp_path: Path) -> None:
    seg = load_package(make_segmentation_package(tmp_path / "seg", threshold_hu=100))
    assert seg.metadata.task == "segmentation" and seg.metadata.labels[0].type.meaning == "Bone"
    x = np.array([50, 99, 101, 500], dtype=np.float32).reshape(1, 1, 1, 2, 2)
    (probs,) = ort.InferenceSession(str(seg.weights)).run(None, {"input": x})
    assert probs.shape == (1, 2, 1, 2, 2)
    assert (probs.argmax(axis=1).ravel() == [0, 0, 1, 1]).all()

    cls = load_package(make_classification_package(tmp_path / "cls", size=(8, 8)))
    img = np.full((1, 1, 8, 8), 0.75, dtype=np.float32)
    p, heat = ort.InferenceSession(str(cls.weights)).run(None, {"input": img})
    assert p.shape == (1, 1) and p[0, 0] == pytest.approx(1 / (1 + np.exp(-2.5)), rel=1e-6)
    assert np.array_equal(heat, img)


def test_broken_packages_are_refused_with_reason(tmp_path: Path) -> None:
    good = make_segmentation_package(tmp_path / "good")

    def variant(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        return d

    d = variant("no-weights")
    (d / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelPackageError, match=r"model\.onnx is missing"):
        load_package(d)

    d = variant("tampered")
    with open(d / WEIGHTS_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelPackageError, match="SHA-256"):
        load_package(d)

    d = variant("bad-json")
    (d / METADATA_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelPackageError, match="not valid JSON"):
        load_package(d)

    d = variant("bad-field")
    meta = json.loads((d / METADATA_FILE).read_text())
    meta["input"]["size"] = [64, 64]
    meta["labels"][0]["category"].pop("scheme")
    (d / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelPackageError, match=r"input: .*size must have 3 values") as info:
        load_package(d)
    assert "labels.0.category.scheme" in str(info.value)

    d = variant("code")
    (d / "hook.py").write_text("print('no')")
    with pytest.raises(ModelPackageError, match="never code"):
        load_package(d)

    d = variant("wrong-output")
    meta = json.loads((d / METADATA_FILE).read_text())
    meta["outputs"][0]["name"] = "logits"
    (d / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelPackageError, match="not outputs of the graph"):
        load_package(d)
