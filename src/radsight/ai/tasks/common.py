"""What every model task shares: its options and output, and the steps around ONNX Runtime (pick a
declared output, apply its activation, run a model on one image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from pydicom.dataset import Dataset

from radsight.ai import inference, preprocess
from radsight.ai.package import Label, ModelMetadata, ModelPackage, Output
from radsight.ai.result_types import PipelineResult

DEFAULT_THRESHOLD = 0.5  # a label without a threshold is positive at or above this probability


def threshold(label: Label) -> float:
    return label.threshold if label.threshold is not None else DEFAULT_THRESHOLD


def activation(values: np.ndarray, output: Output, axis: int) -> np.ndarray:
    """The output's declared activation (sigmoid, softmax along ``axis``, or none) as float32."""
    if output.activation == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-values)), dtype=np.float32)
    if output.activation == "softmax":
        shifted = np.exp(values - values.max(axis=axis, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=axis, keepdims=True), dtype=np.float32)
    return values.astype(np.float32, copy=False)


def declared_output(meta: ModelMetadata, *kinds: str) -> Output | None:
    """The package's first output of one of ``kinds``."""
    return next((o for o in meta.outputs if o.kind in kinds), None)


def run_on_image(package: ModelPackage, image: np.ndarray) -> dict[str, np.ndarray]:
    """One run on ``image`` (y, x or z, y, x) resized to the input size and pre-processed, the
    channel repeated as the model takes it: every graph output by name."""
    spec = package.metadata.input
    x = preprocess.intensity(preprocess.to_shape(image, spec.size, order=1), spec)
    batch = np.repeat(x[None, None], spec.channels, axis=1)
    return inference.run(inference.session_for(package), spec.input_name, batch)


@dataclass(frozen=True)
class TaskOptions:
    """Archive settings a task follows."""

    seg_type: Literal["binary", "labelmap"] = "binary"  # settings.ai_seg_type


class TaskOutput(NamedTuple):
    """A task's run: what is recorded (findings, result UIDs) and the DICOM results to store."""

    result: PipelineResult
    datasets: list[Dataset]
