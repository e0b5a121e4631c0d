"""The segmentation package: ONNX checked against PyTorch, then ``radsight-model.json``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from radsight.ai.package import (
    METADATA_FILE,
    WEIGHTS_FILE,
    Label,
    ModelMetadata,
    ModelPackage,
    Output,
    Task,
    load_package,
    sha256_file,
)
from radsight.train.segmentation.model import ANATOMICAL_STRUCTURE, ORGANS, PATCH, model_spec


def export_package(net: Any, package_dir: Path, *, name: str, version: str, atol: float = 1e-3) -> ModelPackage:
    """ONNX (input ``input``, output ``logits``) checked against PyTorch, then radsight-model.json."""
    import onnxruntime as ort
    import torch

    package_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = package_dir / WEIGHTS_FILE
    example = torch.rand(1, 1, *PATCH)
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False: no onnxscript needed) warns that it is legacy, and
        # that InstanceNorm exports with per-instance statistics, which is what it computes in eval too.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        torch.onnx.export(
            net,
            (example,),
            str(onnx_path),
            input_names=["input"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    with torch.no_grad():
        expected = net(example).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": example.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > atol:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} (> {atol})")
    labels = [
        # Each organ is one connected structure: stray islands of a label are dropped at serving.
        Label(
            index=index, name=organ, category=ANATOMICAL_STRUCTURE, type=code, color=color, largest_component_only=True
        )
        for index, organ, code, color in ORGANS
    ]
    meta = ModelMetadata(
        name=name,
        version=version,
        task=Task.SEGMENTATION,
        description=(
            "Liver, spleen and kidneys on abdominal CT (any phase), a 3D MONAI U-Net trained only on "
            "procedurally generated CT (radsight.train.synth_ct). Research demonstration."
        ),
        intended_use=(
            "Demonstration of automatic abdominal organ outlines and volumes on adult abdominal CT. "
            "Not for clinical use."
        ),
        input=model_spec(),
        outputs=[Output(name="logits", kind="logits", activation="softmax")],
        labels=labels,
        sha256=sha256_file(onnx_path),
    )
    (package_dir / METADATA_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return load_package(package_dir)
