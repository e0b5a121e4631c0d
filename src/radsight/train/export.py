"""ONNX export with the class activation map inside the graph, and the RadSight package.

The exported graph has one input ``input`` (N, C, S, S) and two outputs:

- ``logits`` (N, outputs): the head's logits with the calibration folded in
  (``(w . g + b) / T + c``: temperature scaling, plus a bias that undoes the prior shift of
  the class-weighted loss), read with a sigmoid;
- ``heatmap`` (N, 1, S, S): ``ReLU(sum_k w_k * feature_k)`` for the first output (the finding),
  bilinearly upsampled to the input size and divided by its maximum (0-1 per image).

The export is checked against PyTorch on real inputs (``atol`` 1e-4) before it is written
into a package; the package's metadata is validated by :func:`radsight.ai.package.load_package`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radsight.ai.package import (
    METADATA_FILE,
    WEIGHTS_FILE,
    InputSpec,
    Label,
    ModelMetadata,
    ModelPackage,
    Output,
    Task,
    load_package,
    sha256_file,
)
from radsight.train.network import CompactResNet

OPSET = 17
PARITY_ATOL = 1e-4


class ExportError(Exception):
    """The exported graph does not reproduce PyTorch's outputs."""


class CamClassifier(nn.Module):
    """The trained network with calibrated logits and the CAM as a second output."""

    cal_weight: torch.Tensor
    cal_bias: torch.Tensor
    cam_weight: torch.Tensor

    def __init__(self, net: CompactResNet, *, temperature: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.net = net
        w = net.head.weight.detach().clone()
        b = net.head.bias.detach().clone()
        # Calibration folded into the linear head: no extra nodes, the same numbers.
        self.register_buffer("cal_weight", w / temperature)
        self.register_buffer("cal_bias", b / temperature + bias)
        self.register_buffer("cam_weight", w[0].reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net.features(x)
        logits = F.linear(f.mean(dim=(2, 3)), self.cal_weight, self.cal_bias)
        cam = F.relu((f * self.cam_weight).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
        cam = cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-6)
        return logits, cam


def export_onnx(model: CamClassifier, path: Path, *, channels: int, size: list[int]) -> None:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch axis."""
    model.eval()
    dummy = torch.zeros(1, channels, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=["logits", "heatmap"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}, "heatmap": {0: "N"}},
            opset_version=OPSET,
            dynamo=False,  # the dynamo exporter needs onnxscript, which the train extra does not carry
        )


def check_parity(model: CamClassifier, onnx_path: Path, inputs: np.ndarray, *, atol: float = PARITY_ATOL) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime on ``inputs``; raises above ``atol``."""
    import onnxruntime as ort

    model.eval()
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(inputs))]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits", "heatmap"], {"input": inputs})
    worst = max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True))
    if worst > atol:
        raise ExportError(f"ONNX Runtime differs from PyTorch by {worst:.2e} (> {atol:.0e})")
    return worst


def write_package(
    out: Path,
    onnx_file: Path,
    *,
    name: str,
    version: str,
    description: str,
    intended_use: str,
    spec: InputSpec,
    labels: list[Label],
) -> ModelPackage:
    """Move ``onnx_file`` into the package folder ``out``, write radsight-model.json and validate."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    if onnx_file.resolve() != weights.resolve():
        onnx_file.replace(weights)
    meta = ModelMetadata(
        name=name,
        version=version,
        task=Task.CLASSIFICATION,
        description=description,
        intended_use=intended_use,
        input=spec,
        outputs=[
            Output(name="logits", kind="logits", activation="sigmoid"),
            Output(name="heatmap", kind="heatmap", activation="none"),
        ],
        labels=labels,
        sha256=sha256_file(weights),
    )
    raw: dict[str, Any] = meta.model_dump(mode="json", exclude_none=True)
    (out / METADATA_FILE).write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return load_package(out)
