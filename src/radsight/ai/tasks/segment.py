"""3D segmentation: sliding-window probabilities -> label map on the source grid -> SEG, one
parametric map per label, SR TID 1500 with each label's volume and attenuation."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from radsight.ai import inference, postprocess, preprocess
from radsight.ai.package import Label, ModelMetadata, ModelPackage
from radsight.ai.result_types import PipelineError, PipelineResult
from radsight.ai.results import ResultUIDs
from radsight.ai.results.pmap import build_parametric_map, sibling_parametric_map
from radsight.ai.results.seg import build_segmentation
from radsight.ai.results.sr import build_measurement_report
from radsight.ai.tasks.common import TaskOptions, TaskOutput, activation, declared_output
from radsight.ai.volume import Volume


def mapped_labels(meta: ModelMetadata) -> list[Label]:
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
    out = declared_output(meta, "probabilities", "logits")
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
    probs = activation(raw, out, axis=0)
    too_high = [lab.name for lab in meta.labels if lab.index >= probs.shape[0]]
    if too_high:
        raise PipelineError(f"{meta.name}: labels {too_high} have no channel in {out.name!r} ({probs.shape[0]})")
    # argmax on the model grid, then nearest-neighbour back onto the source rows/columns/slices.
    labelmap = preprocess.to_shape(np.argmax(probs, axis=0).astype(np.uint8), array.shape, order=0)
    return probs, postprocess.keep_largest_components(labelmap, meta.labels)


def _parametric_maps(volume: Volume, probs: np.ndarray, meta: ModelMetadata, uids: ResultUIDs) -> dict[int, Dataset]:
    """One parametric map per label, by label index (instances 1..n of the map series; the first
    keeps ``uids.pmap_sop``)."""
    pmaps: dict[int, Dataset] = {}
    first: Dataset | None = None
    for number, lab in enumerate(mapped_labels(meta), start=1):
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
    return pmaps


def run(volume: Volume, package: ModelPackage, uids: ResultUIDs, options: TaskOptions) -> TaskOutput:
    """Segment the series: a SEG, a parametric map per label, an SR, and one finding per label."""
    meta = package.metadata
    if meta.input.dimensions != 3:
        raise PipelineError(f"{meta.name}: {meta.task} ({meta.input.dimensions}D) is not supported by this engine yet")
    if not volume.is_3d:
        raise PipelineError(f"{meta.name} is a 3D model; series {volume.series_instance_uid} is not a volume")
    probs, labelmap = predict_labelmap(package, volume.array, volume.spacing)
    stats = postprocess.label_statistics(labelmap, volume, meta.labels, hu=volume.modality == "CT")
    seg = build_segmentation(volume, labelmap, meta, uids, seg_type=options.seg_type)
    pmaps = _parametric_maps(volume, probs, meta, uids)
    sr = build_measurement_report(volume, meta, uids, stats=stats, seg=seg)
    findings = [postprocess.finding_from_statistics(s, volume) for s in stats]
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
    return TaskOutput(result, [seg, *pmaps.values(), sr])
