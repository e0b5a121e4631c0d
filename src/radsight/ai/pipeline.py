"""One model run on one series: load -> pre-process -> ONNX Runtime -> post-process -> DICOM results.

The worker calls :func:`run_model`. Result UIDs are derived from the job (its id, the source
series and the model), so a retried job writes the same SOP Instance UIDs and the archive keeps
the first copy (DUPLICATE): one job never leaves two result sets.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset

from radsight.ai import inference, postprocess, preprocess
from radsight.ai.package import Label, ModelMetadata, ModelPackage, Output, Task
from radsight.ai.results import ResultUIDs
from radsight.ai.results.pmap import build_parametric_map, sibling_parametric_map
from radsight.ai.results.seg import build_segmentation
from radsight.ai.results.sr import build_measurement_report
from radsight.ai.volume import Volume, load_series
from radsight.archive import Archive
from radsight.ingest.service import Outcome


class PipelineError(Exception):
    """The model cannot be run on this series, or a result could not be stored; the message says why."""


@dataclass
class FindingData:
    label: str
    probability: float | None
    positive: bool
    measurements: list[dict[str, Any]] = field(default_factory=list)  # {"name", "value", "unit"}
    # {"series_instance_uid", "sop_instance_uid", "frame", "slice_index", "bbox": [x0, y0, x1, y1], "point": [x, y]}
    location: dict[str, Any] = field(default_factory=dict)
    # This finding's own parametric map (a segmentation label's probability); empty: the result's.
    pmap_sop_instance_uid: str = ""


@dataclass
class PipelineResult:
    findings: list[FindingData]
    seg_sop_instance_uid: str = ""
    sr_sop_instance_uid: str = ""
    pmap_sop_instance_uid: str = ""  # a segmentation's first label's map (each finding names its own)
    result_series_uids: list[str] = field(default_factory=list)


def _activation(values: np.ndarray, output: Output, axis: int) -> np.ndarray:
    if output.activation == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-values)), dtype=np.float32)
    if output.activation == "softmax":
        shifted = np.exp(values - values.max(axis=axis, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=axis, keepdims=True), dtype=np.float32)
    return values.astype(np.float32, copy=False)


def _output(meta: ModelMetadata, *kinds: str) -> Output | None:
    return next((o for o in meta.outputs if o.kind in kinds), None)


def _mapped_labels(meta: ModelMetadata) -> list[Label]:
    """The labels that get a probability map: every non-background label, in label order."""
    return [lab for lab in sorted(meta.labels, key=lambda lab: lab.index) if lab.index > 0]


def predict_labelmap(
    package: ModelPackage, array: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """A 3D model on ``array`` (z, y, x; ``spacing`` in mm): (class probabilities on the model's
    grid, label map on the source grid). The engine's steps, also used by evaluation
    (``radsight.train.segmentation``) so that what is measured is what is served."""
    meta = package.metadata
    spec = meta.input
    out = _output(meta, "probabilities", "logits")
    if out is None:
        raise PipelineError(f"{meta.name}: a segmentation model needs a probabilities or logits output")
    factors = preprocess.spacing_factors(spacing, spec.spacing)
    x = preprocess.intensity(preprocess.resample(array, factors, order=1), spec)
    raw = inference.sliding_window(
        inference.session_for(package),
        spec.input_name,
        out.name,
        x,
        spec.size,
        overlap=spec.sliding_window_overlap,
        mode="gaussian",
    )
    probs = _activation(raw, out, axis=0)
    too_high = [lab.name for lab in meta.labels if lab.index >= probs.shape[0]]
    if too_high:
        raise PipelineError(f"{meta.name}: labels {too_high} have no channel in {out.name!r} ({probs.shape[0]})")
    # argmax on the model grid, then nearest-neighbour back onto the source rows/columns/slices.
    labelmap = preprocess.to_shape(np.argmax(probs, axis=0).astype(np.uint8), array.shape, order=0)
    return probs, postprocess.keep_largest_components(labelmap, meta.labels)


def _segment(
    volume: Volume, package: ModelPackage, uids: ResultUIDs, seg_type: Literal["binary", "labelmap"] = "binary"
) -> tuple[PipelineResult, list[Dataset]]:
    meta = package.metadata
    if not volume.is_3d:
        raise PipelineError(f"{meta.name} is a 3D model; series {volume.series_instance_uid} is not a volume")
    probs, labelmap = predict_labelmap(package, volume.array, volume.spacing)
    stats = postprocess.label_statistics(labelmap, volume, meta.labels, hu=volume.modality == "CT")
    seg = build_segmentation(volume, labelmap, meta, uids, seg_type=seg_type)
    # One parametric map per label (instances 1..n of the map series; the first keeps pmap_sop).
    pmaps: dict[int, Dataset] = {}
    first: Dataset | None = None
    for number, lab in enumerate(_mapped_labels(meta), start=1):
        probability = preprocess.to_shape(probs[lab.index], volume.array.shape, order=1).astype(np.float32)
        sop = uids.pmap_sop_for(lab.index, first=first is None)
        if first is None:
            first = build_parametric_map(
                volume, probability, meta, uids, label=lab, sop_instance_uid=sop, instance_number=number
            )
            pmaps[lab.index] = first
        else:
            pmaps[lab.index] = sibling_parametric_map(
                first, probability, volume, meta, label=lab, sop_instance_uid=sop, instance_number=number
            )
    sr = build_measurement_report(volume, meta, uids, stats=stats, seg=seg)
    findings = [FindingData(**postprocess.finding_from_statistics(s, volume)) for s in stats]
    for finding, s in zip(findings, stats, strict=True):
        if s.label.index in pmaps:
            finding.pmap_sop_instance_uid = str(pmaps[s.label.index].SOPInstanceUID)
    result = PipelineResult(
        findings=findings,
        seg_sop_instance_uid=uids.seg_sop,
        sr_sop_instance_uid=uids.sr_sop,
        pmap_sop_instance_uid=uids.pmap_sop if pmaps else "",
        result_series_uids=[uids.seg_series, *([uids.pmap_series] if pmaps else []), uids.sr_series],
    )
    return result, [seg, *pmaps.values(), sr]


def _classify(volume: Volume, package: ModelPackage, uids: ResultUIDs) -> tuple[PipelineResult, list[Dataset]]:
    meta = package.metadata
    spec = meta.input
    if spec.dimensions != 2:
        raise PipelineError(f"{meta.name}: only 2D classification is supported")
    out = _output(meta, "probabilities", "logits")
    if out is None:
        raise PipelineError(f"{meta.name}: a classification model needs a probabilities or logits output")
    image = volume.array[0]
    x = preprocess.intensity(preprocess.to_shape(image, spec.size, order=1), spec)
    batch = np.repeat(x[None, None], spec.channels, axis=1)
    outputs = inference.run(inference.session_for(package), spec.input_name, batch)
    scores = _activation(outputs[out.name].reshape(1, -1), out, axis=1)[0]
    heat_out = _output(meta, "heatmap")
    heatmap: np.ndarray | None = None
    if heat_out is not None:
        h = np.asarray(outputs[heat_out.name], dtype=np.float32)
        h = h.reshape(h.shape[-2:]) if h.size == h.shape[-1] * h.shape[-2] else h.reshape(-1, *h.shape[-2:])[0]
        heatmap = preprocess.to_shape(_activation(h, heat_out, axis=0), image.shape, order=1).astype(np.float32)
    probabilities: dict[int, float] = {}
    for lab in meta.labels:
        if lab.index >= scores.size:
            raise PipelineError(f"{meta.name}: label {lab.name!r} has index {lab.index}; the output has {scores.size}")
        probabilities[lab.index] = float(scores[lab.index])
    source = volume.datasets[0]
    findings: list[FindingData] = []
    for lab in meta.labels:
        p = probabilities[lab.index]
        location: dict[str, Any] = {
            "series_instance_uid": volume.series_instance_uid,
            "sop_instance_uid": str(source.SOPInstanceUID),
            "frame": 1,
            "slice_index": 0,
        }
        if heatmap is not None:
            y, x_ = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            location["point"] = [int(x_), int(y)]
        findings.append(
            FindingData(
                label=lab.name,
                probability=p,
                positive=p >= (lab.threshold if lab.threshold is not None else 0.5),
                measurements=[{"name": "Probability", "value": p, "unit": "1"}],
                location=location,
            )
        )
    datasets: list[Dataset] = []
    result = PipelineResult(findings=findings, sr_sop_instance_uid=uids.sr_sop)
    if heatmap is not None:
        datasets.append(build_parametric_map(volume, heatmap[None], meta, uids, label=meta.labels[0]))
        result.pmap_sop_instance_uid = uids.pmap_sop
        result.result_series_uids.append(uids.pmap_series)
    datasets.append(build_measurement_report(volume, meta, uids, probabilities=probabilities))
    result.result_series_uids.append(uids.sr_series)
    return result, datasets


def store(archive: Archive, ds: Dataset) -> Outcome:
    """Store one result through the ingest service; STORED or DUPLICATE, else PipelineError."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    res = archive.ingest.ingest_bytes(buf.getvalue(), source="ai")
    if res.outcome not in (Outcome.STORED, Outcome.DUPLICATE):
        raise PipelineError(f"result {ds.SOPInstanceUID} was not stored: {res.outcome}: {res.message}")
    return res.outcome


def run_model(
    archive: Archive, package: ModelPackage, *, study_instance_uid: str, series_instance_uid: str, job_id: int
) -> PipelineResult:
    """Run ``package`` on the series and store its SEG / SR / parametric map in the source study."""
    meta = package.metadata
    volume = load_series(archive, series_instance_uid)
    if volume.study_instance_uid != study_instance_uid:
        raise PipelineError(f"series {series_instance_uid} belongs to study {volume.study_instance_uid}")
    if volume.modality not in meta.input.modality:
        raise PipelineError(
            f"{meta.name} takes {meta.input.modality}; series {series_instance_uid} is {volume.modality}"
        )
    uids = ResultUIDs.for_job(job_id, series_instance_uid, meta)
    if meta.task is Task.SEGMENTATION and meta.input.dimensions == 3:
        result, datasets = _segment(volume, package, uids, archive.settings.ai_seg_type)
    elif meta.task is Task.CLASSIFICATION:
        result, datasets = _classify(volume, package, uids)
    elif meta.task is Task.DETECTION:
        from radsight.ai.detection import detect  # detection imports this module's result types

        result, datasets = detect(volume, package, uids)
    else:
        raise PipelineError(f"{meta.name}: {meta.task} ({meta.input.dimensions}D) is not supported by this engine yet")
    for ds in datasets:
        store(archive, ds)
    return result
