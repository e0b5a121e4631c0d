"""What a model task produces, before and after it becomes DICOM, and how a stored AI result is recognised.

The task modules (:mod:`radsight.ai.tasks`) make these; the DICOM builders (:mod:`radsight.ai.results`)
and the findings recorder read them. This module imports no task and no builder, so the data flows
one way: task -> result types -> builders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radsight.ai.package import Label

# The visible label every result carries in its SeriesDescription (see results.label_result).
AI_LABEL = "AI generated - not for clinical use"
AI_RESULT_MODALITIES = frozenset({"SEG", "SR", "KO", "PR", "RTSTRUCT"})
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
SR_STORAGE_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_AI_MARK = "ai generated"  # parametric maps are modality OT: the label is what marks them


def is_ai_result(*, modality: str, sop_class_uid: str, series_description: str = "") -> bool:
    """Whether a series (its modality, one instance's SOP Class UID, its SeriesDescription) is a
    result of this engine or another AI: results never go back to the engine as input."""
    return (
        modality.upper() in AI_RESULT_MODALITIES
        or sop_class_uid in (SEGMENTATION_STORAGE, PARAMETRIC_MAP_STORAGE)
        or sop_class_uid.startswith(SR_STORAGE_PREFIX)
        or _AI_MARK in series_description.lower()
    )


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
    """One model run: its findings and the UIDs of the DICOM results stored for it."""

    findings: list[FindingData]
    seg_sop_instance_uid: str = ""
    sr_sop_instance_uid: str = ""
    pmap_sop_instance_uid: str = ""  # a segmentation's first label's map (each finding names its own)
    result_series_uids: list[str] = field(default_factory=list)


@dataclass
class LabelStatistics:
    """Measurements of one segmentation label on the source grid."""

    label: Label
    voxel_count: int
    volume_ml: float
    component_count: int
    mean_hu: float | None
    max_hu: float | None
    # Slice (index into the sorted source slices) with the most voxels, and its bounding box
    slice_index: int | None
    bbox: list[int] | None  # [x0, y0, x1, y1] inclusive pixel indices on that slice
    slice_area_mm2: float
    slices: list[int] = field(default_factory=list)  # source slices holding the label


@dataclass(frozen=True)
class Classification:
    """A classifier's output on one image."""

    probabilities: dict[int, float]  # label index -> probability
    heatmap: np.ndarray | None = None  # (rows, columns) float32 on the source image


@dataclass(frozen=True)
class Detection:
    """One kept box, in source coordinates.

    ``box`` holds source pixel indices (column x, row y, slice z in the volume's sorted order) of
    the first and last pixel inside the box: (x0, y0, x1, y1) for 2D, (x0, y0, z0, x1, y1, z1) for 3D.
    """

    label: Label
    score: float
    box: tuple[float, ...]
    slice_index: int  # the image the box (2D) or its centre (3D) lies on
    # 3D: the box's rectangle in the plane through its centre, parallel to the slices (closed, 5 x 3,
    # patient mm, pixel edges) and the centre itself.
    region_patient: np.ndarray | None = None
    centre_patient: tuple[float, float, float] | None = None

    @property
    def plane_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) on the slice: the box itself (2D) or its extent in x and y (3D)."""
        half = len(self.box) // 2
        return self.box[0], self.box[1], self.box[half], self.box[half + 1]
