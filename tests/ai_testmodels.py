"""Tiny ONNX models whose outputs are known functions of their inputs, packaged as
RadSight model packages, so that every assertion about the AI engine can be exact.

- segmentation (3D, CT): probability of label 1 = sigmoid(x - threshold_hu) per voxel (x in HU);
  the argmax labelmap is exactly ``x > threshold_hu``. Two labels (``dense_hu`` given): with
  s1 = sigmoid(x - threshold_hu), s2 = sigmoid(x - dense_hu), the probabilities are
  (1 - s1, s1 (1 - s2), s1 s2): "soft tissue" (label 1) and "dense tissue" (label 2).
- classification (2D, CR/DX): probability = sigmoid(gain * (mean(x) - 0.5)) with x scaled to
  [0, 1] by min/max; the heatmap output is the input image itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from radsight.ai.package import CARD_FILE, METADATA_FILE, WEIGHTS_FILE, sha256_file

OPSET = 17


def _save(model: onnx.ModelProto, dest: Path, metadata: dict[str, Any]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, dest / WEIGHTS_FILE)
    metadata["sha256"] = sha256_file(dest / WEIGHTS_FILE)
    (dest / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    (dest / CARD_FILE).write_text(f"# {metadata['name']}\n\nTest model. Not for clinical use.\n", encoding="utf-8")
    return dest


def _probability_graph(name: str, channels: int, nodes: list[Any], constants: dict[str, float]) -> onnx.ModelProto:
    """A graph from a CT volume ``input`` to ``probabilities`` with ``channels`` classes."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, "d", "h", "w"])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, channels, "d", "h", "w"])
    init = [helper.make_tensor(k, TensorProto.FLOAT, [], [v]) for k, v in constants.items()]
    graph = helper.make_graph(nodes, name, [x], [y], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


def segmentation_graph(threshold_hu: float) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Sub", ["input", "thr"], ["shifted"]),
        helper.make_node("Sigmoid", ["shifted"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
    ]
    return _probability_graph("threshold-seg", 2, nodes, {"thr": threshold_hu, "one": 1.0})


def two_label_segmentation_graph(threshold_hu: float, dense_hu: float) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Sub", ["input", "thr"], ["shifted1"]),
        helper.make_node("Sigmoid", ["shifted1"], ["s1"]),
        helper.make_node("Sub", ["input", "dense"], ["shifted2"]),
        helper.make_node("Sigmoid", ["shifted2"], ["s2"]),
        helper.make_node("Sub", ["one", "s1"], ["p0"]),
        helper.make_node("Mul", ["s1", "s2"], ["p2"]),
        helper.make_node("Sub", ["s1", "p2"], ["p1"]),
        helper.make_node("Concat", ["p0", "p1", "p2"], ["probabilities"], axis=1),
    ]
    constants = {"thr": threshold_hu, "dense": dense_hu, "one": 1.0}
    return _probability_graph("two-threshold-seg", 3, nodes, constants)


def make_segmentation_package(
    dest: Path,
    *,
    name: str = "test-seg",
    version: str = "1.0",
    threshold_hu: float = 150.0,
    patch: tuple[int, int, int] = (16, 64, 64),
    spacing: list[float] | None = None,
    dense_hu: float | None = None,
) -> Path:
    """A CT "bone" segmenter: label 1 where HU > threshold_hu; with ``dense_hu``, two labels
    (soft tissue above ``threshold_hu``, dense tissue above ``dense_hu``)."""
    meta: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "task": "segmentation",
        "description": f"Test model: voxels above {threshold_hu} HU",
        "intended_use": "Testing the RadSight AI engine. Not for clinical use.",
        "input": {
            "modality": ["CT"],
            "dimensions": 3,
            "spacing": spacing,
            "size": list(patch),
            "channels": 1,
            "channel_order": "grey",
            "windowing": None,
            "normalisation": {"mode": "none"},
            "input_name": "input",
            "sliding_window_overlap": 0.25,
        },
        "outputs": [{"name": "probabilities", "kind": "probabilities", "activation": "none"}],
        "labels": [
            {
                "index": 1,
                "name": "Dense tissue",
                "category": {"value": "91723000", "scheme": "SCT", "meaning": "Anatomical Structure"},
                "type": {"value": "272673000", "scheme": "SCT", "meaning": "Bone"},
                "threshold": 0.5,
                "color": [255, 200, 0],
            }
        ],
    }
    if dense_hu is None:
        return _save(segmentation_graph(threshold_hu), dest, meta)
    meta["description"] = f"Test model: soft tissue above {threshold_hu} HU, dense tissue above {dense_hu} HU"
    meta["labels"] = [
        {
            "index": 1,
            "name": "Soft tissue",
            "category": {"value": "91723000", "scheme": "SCT", "meaning": "Anatomical Structure"},
            "type": {"value": "87784001", "scheme": "SCT", "meaning": "Soft tissue"},
            "color": [0, 160, 255],
        },
        {**meta["labels"][0], "index": 2},
    ]
    return _save(two_label_segmentation_graph(threshold_hu, dense_hu), dest, meta)


def classification_graph(gain: float, size: tuple[int, int]) -> onnx.ModelProto:
    h, w = size
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, h, w])
    prob = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 1])
    heat = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, [1, 1, h, w])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean4"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["mean4", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Reshape", ["p", "shape11"], ["probabilities"]),
        helper.make_node("Identity", ["input"], ["heatmap"]),
    ]
    init = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        helper.make_tensor("shape11", TensorProto.INT64, [2], [1, 1]),
    ]
    graph = helper.make_graph(nodes, "mean-cls", [x], [prob, heat], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


def make_classification_package(
    dest: Path,
    *,
    name: str = "test-cls",
    version: str = "1.0",
    gain: float = 10.0,
    size: tuple[int, int] = (64, 64),
    threshold: float = 0.5,
    modality: tuple[str, ...] = ("CR", "DX"),
) -> Path:
    """A chest X-ray "classifier": probability from the mean brightness; heatmap = the image."""
    meta: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "task": "classification",
        "description": "Test model: probability from mean intensity",
        "intended_use": "Testing the RadSight AI engine. Not for clinical use.",
        "input": {
            "modality": list(modality),
            "dimensions": 2,
            "spacing": None,
            "size": list(size),
            "channels": 1,
            "channel_order": "grey",
            "windowing": None,
            "normalisation": {"mode": "minmax", "low": 0.0, "high": 1.0},
            "input_name": "input",
        },
        "outputs": [
            {"name": "probabilities", "kind": "probabilities", "activation": "none"},
            {"name": "heatmap", "kind": "heatmap", "activation": "none"},
        ],
        "labels": [
            {
                "index": 0,
                "name": "Pneumonia",
                "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically abnormal structure"},
                "type": {"value": "233604007", "scheme": "SCT", "meaning": "Pneumonia"},
                "threshold": threshold,
                "urgency": {"critical": 0.9, "urgent": 0.7},
            }
        ],
    }
    return _save(classification_graph(gain, size), dest, meta)
