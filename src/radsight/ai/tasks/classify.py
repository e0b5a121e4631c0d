"""2D classification: one probability per label on the series' first image, and a heatmap when the
package declares one -> SR TID 1500 (one probability group per label) and a parametric map."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radsight.ai import preprocess
from radsight.ai.package import ModelPackage
from radsight.ai.result_types import Classification, FindingData, PipelineError, PipelineResult
from radsight.ai.results import ResultUIDs
from radsight.ai.results.pmap import build_parametric_map
from radsight.ai.results.sr import build_measurement_report
from radsight.ai.tasks.common import TaskOptions, TaskOutput, activation, declared_output, run_on_image, threshold
from radsight.ai.volume import Volume


def predict(volume: Volume, package: ModelPackage) -> Classification:
    """The model on the series' first image: each label's probability, and the heatmap on the image."""
    meta = package.metadata
    if meta.input.dimensions != 2:
        raise PipelineError(f"{meta.name}: only 2D classification is supported")
    out = declared_output(meta, "probabilities", "logits")
    if out is None:
        raise PipelineError(f"{meta.name}: a classification model needs a probabilities or logits output")
    image = volume.array[0]
    outputs = run_on_image(package, image)
    scores = activation(outputs[out.name].reshape(1, -1), out, axis=1)[0]
    heat_out = declared_output(meta, "heatmap")
    heatmap: np.ndarray | None = None
    if heat_out is not None:
        h = np.asarray(outputs[heat_out.name], dtype=np.float32)
        h = h.reshape(h.shape[-2:]) if h.size == h.shape[-1] * h.shape[-2] else h.reshape(-1, *h.shape[-2:])[0]
        heatmap = preprocess.to_shape(activation(h, heat_out, axis=0), image.shape, order=1).astype(np.float32)
    probabilities: dict[int, float] = {}
    for lab in meta.labels:
        if lab.index >= scores.size:
            raise PipelineError(f"{meta.name}: label {lab.name!r} has index {lab.index}; the output has {scores.size}")
        probabilities[lab.index] = float(scores[lab.index])
    return Classification(probabilities=probabilities, heatmap=heatmap)


def findings(volume: Volume, package: ModelPackage, classified: Classification) -> list[FindingData]:
    """One finding per label on the first image (pointing at the heatmap's peak when there is one)."""
    source = volume.datasets[0]
    out: list[FindingData] = []
    for lab in package.metadata.labels:
        p = classified.probabilities[lab.index]
        location: dict[str, Any] = {
            "series_instance_uid": volume.series_instance_uid,
            "sop_instance_uid": str(source.SOPInstanceUID),
            "frame": 1,
            "slice_index": 0,
        }
        if classified.heatmap is not None:
            y, x = np.unravel_index(int(np.argmax(classified.heatmap)), classified.heatmap.shape)
            location["point"] = [int(x), int(y)]
        out.append(
            FindingData(
                label=lab.name,
                probability=p,
                positive=p >= threshold(lab),
                measurements=[{"name": "Probability", "value": p, "unit": "1"}],
                location=location,
            )
        )
    return out


def run(volume: Volume, package: ModelPackage, uids: ResultUIDs, options: TaskOptions) -> TaskOutput:
    """Classify the series' first image: findings, an SR, and a parametric map of the heatmap."""
    meta = package.metadata
    classified = predict(volume, package)
    datasets: list[Dataset] = []
    result = PipelineResult(findings=findings(volume, package, classified), sr_sop_instance_uid=uids.sr_sop)
    if classified.heatmap is not None:
        datasets.append(build_parametric_map(volume, classified.heatmap[None], meta, uids, label=meta.labels[0]))
        result.pmap_sop_instance_uid = uids.pmap_sop
        result.result_series_uids.append(uids.pmap_series)
    datasets.append(build_measurement_report(volume, meta, uids, probabilities=classified.probabilities))
    result.result_series_uids.append(uids.sr_series)
    return TaskOutput(result, datasets)
