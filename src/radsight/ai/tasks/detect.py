"""Detection models: boxes (2D) or cuboids (3D) with a label and a score per object.

The image (2D: each image of the series; 3D: the whole series) is resized to the package's
``input.size`` and pre-processed like a classifier's input (:mod:`radsight.ai.preprocess`), the
model runs once per image (2D) or once for the volume (3D), and each box goes back onto the
source grid by the exact inverse of that resize. Boxes at or above their label's threshold are
kept; non-maximum suppression is the graph's job (ONNX's NonMaxSuppression operator), so a
package's boxes are taken as final. Results: an SR TID 1500 (one group per box) and the findings
the viewer draws; no SEG (a box is not a segmentation). The package format is described in
docs/ai-detection.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np

from radsight.ai.package import Label, ModelMetadata, ModelPackage
from radsight.ai.result_types import Detection, FindingData, PipelineError, PipelineResult
from radsight.ai.results import ResultUIDs
from radsight.ai.results.sr import build_detection_report
from radsight.ai.tasks.common import TaskOptions, TaskOutput, activation, declared_output, run_on_image, threshold
from radsight.ai.volume import Volume


def _inverse_resize(coords: np.ndarray, model_size: int, source_size: int) -> np.ndarray:
    """Model-grid pixel indices -> source pixel indices, the exact inverse of ``preprocess.to_shape``.

    ``to_shape`` is ``scipy.ndimage.zoom`` with ``grid_mode=False``: the centres of the first and
    last pixels stay in place, so model index i samples source index i * (S - 1) / (M - 1).
    """
    return coords * ((source_size - 1) / max(model_size - 1, 1))


def _model_outputs(outputs: dict[str, np.ndarray], meta: ModelMetadata) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [N, 2 x dims], scores [N], label indices [N]) from the graph's outputs, checked."""
    dims = meta.input.dimensions
    boxes_out, scores_out = declared_output(meta, "boxes"), declared_output(meta, "scores")
    labels_out = declared_output(meta, "labels")
    assert boxes_out is not None and scores_out is not None  # required by the package validation
    raw = np.asarray(outputs[boxes_out.name], dtype=np.float64)
    if raw.size % (2 * dims) or (raw.ndim and raw.shape[-1] != 2 * dims):
        raise PipelineError(f"{meta.name}: output {boxes_out.name!r} has shape {raw.shape}; boxes are [N, {2 * dims}]")
    boxes = raw.reshape(-1, 2 * dims)
    scores = activation(np.asarray(outputs[scores_out.name]).reshape(-1), scores_out, axis=0).astype(np.float64)
    if labels_out is None:
        labels = np.full(len(boxes), meta.labels[0].index, dtype=np.int64)
    else:
        labels = np.asarray(outputs[labels_out.name]).reshape(-1)
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise PipelineError(f"{meta.name}: output {labels_out.name!r} holds non-integer labels")
        labels = labels.astype(np.int64)
    if not len(boxes) == len(scores) == len(labels):
        raise PipelineError(
            f"{meta.name}: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels; one of each per object"
        )
    if not np.all(np.isfinite(boxes)) or not np.all(np.isfinite(scores)):
        raise PipelineError(f"{meta.name}: boxes or scores that are not finite numbers")
    if np.any(boxes[:, dims:] < boxes[:, :dims]):
        raise PipelineError(f"{meta.name}: a box whose last corner lies before its first (x1 < x0)")
    return boxes, scores, labels


def _predict(package: ModelPackage, image: np.ndarray) -> list[tuple[Label, float, np.ndarray]]:
    """One run on ``image`` (y, x or z, y, x): (label, score, box in source pixel indices) above threshold."""
    meta = package.metadata
    spec = meta.input
    boxes, scores, labels = _model_outputs(run_on_image(package, image), meta)
    by_index = {lab.index: lab for lab in meta.labels}
    unknown = sorted({int(v) for v in labels} - set(by_index))
    if unknown:
        raise PipelineError(f"{meta.name}: box labels {unknown} are not label indices of the package")
    dims = spec.dimensions
    # Box columns are x, y[, z]; array axes run the other way (z, y, x).
    model_sizes = list(reversed(spec.size))
    source_sizes = list(reversed(image.shape))
    kept: list[tuple[Label, float, np.ndarray]] = []
    for box, score, index in zip(boxes, scores, labels, strict=True):
        lab = by_index[int(index)]
        if score < threshold(lab):
            continue
        source = np.empty_like(box)
        for axis in range(dims):
            corners = np.clip(box[[axis, axis + dims]], 0, model_sizes[axis] - 1)  # inside the model's grid
            source[[axis, axis + dims]] = _inverse_resize(corners, model_sizes[axis], source_sizes[axis])
        kept.append((lab, float(score), source))
    return kept


def _voxel_to_patient(volume: Volume) -> np.ndarray:
    """4 x 4 affine from (column, row, slice) indices of the sorted volume to patient mm."""
    first = volume.datasets[0]
    if volume.orientation is None or "ImagePositionPatient" not in first or not first.get("FrameOfReferenceUID"):
        raise PipelineError(
            f"series {volume.series_instance_uid} has no patient geometry (position, Frame of Reference) for 3D boxes"
        )
    return hd.spatial.create_affine_matrix_from_attributes(
        image_position=[float(v) for v in first.ImagePositionPatient],
        image_orientation=list(volume.orientation),
        pixel_spacing=[volume.spacing[1], volume.spacing[2]],
        spacing_between_slices=volume.spacing[0],
    )


def _to_patient(affine: np.ndarray, points: Sequence[Sequence[float]]) -> np.ndarray:
    homogeneous = np.column_stack([np.asarray(points, dtype=np.float64), np.ones(len(points))])
    return np.asarray((homogeneous @ affine.T)[:, :3])


def _detections_3d(volume: Volume, found: list[tuple[Label, float, np.ndarray]]) -> list[Detection]:
    affine = _voxel_to_patient(volume)
    out: list[Detection] = []
    for lab, score, box in found:
        x0, y0, z0, x1, y1, z1 = (float(v) for v in box)
        zc = (z0 + z1) / 2.0
        # Pixel edges lie half a pixel outside the first and last pixel centres (as in the 2D SCOORD).
        rect = [(x0 - 0.5, y0 - 0.5, zc), (x1 + 0.5, y0 - 0.5, zc), (x1 + 0.5, y1 + 0.5, zc), (x0 - 0.5, y1 + 0.5, zc)]
        region = _to_patient(affine, [*rect, rect[0]])
        centre = _to_patient(affine, [((x0 + x1) / 2.0, (y0 + y1) / 2.0, zc)])[0]
        out.append(
            Detection(
                label=lab,
                score=score,
                box=(x0, y0, z0, x1, y1, z1),
                slice_index=int(np.floor(zc + 0.5)),
                region_patient=region,
                centre_patient=(float(centre[0]), float(centre[1]), float(centre[2])),
            )
        )
    return out


def _finding(volume: Volume, d: Detection) -> FindingData:
    x0, y0, x1, y1 = d.plane_box
    location: dict[str, Any] = {
        "series_instance_uid": volume.series_instance_uid,
        "sop_instance_uid": str(volume.datasets[d.slice_index].SOPInstanceUID),
        "frame": 1,
        "slice_index": d.slice_index,
        "bbox": [x0, y0, x1, y1],
        "point": [(x0 + x1) / 2.0, (y0 + y1) / 2.0],
    }
    if d.centre_patient is not None:
        location["bbox3d"] = list(d.box)
        location["centre_patient"] = list(d.centre_patient)
    return FindingData(
        label=d.label.name,
        probability=d.score,
        positive=True,  # only boxes at or above their label's threshold are kept
        measurements=[{"name": "Probability", "value": d.score, "unit": "1"}],
        location=location,
    )


def run(volume: Volume, package: ModelPackage, uids: ResultUIDs, options: TaskOptions) -> TaskOutput:
    """Run a detection package on the series: its kept boxes as findings and an SR TID 1500."""
    meta = package.metadata
    if meta.input.dimensions == 3:
        if not volume.is_3d:
            raise PipelineError(f"{meta.name} is a 3D model; series {volume.series_instance_uid} is not a volume")
        detections = _detections_3d(volume, _predict(package, volume.array))
    else:
        # A 2D model looks at each image of the series (one run each).
        detections = [
            Detection(label=lab, score=score, box=tuple(float(v) for v in box), slice_index=k)
            for k in range(volume.array.shape[0])
            for lab, score, box in _predict(package, volume.array[k])
        ]
    detections.sort(key=lambda d: -d.score)  # the most likely first, in the SR and the findings
    sr = build_detection_report(volume, meta, uids, detections)
    result = PipelineResult(
        findings=[_finding(volume, d) for d in detections],
        sr_sop_instance_uid=uids.sr_sop,
        result_series_uids=[uids.sr_series],
    )
    return TaskOutput(result, [sr])
