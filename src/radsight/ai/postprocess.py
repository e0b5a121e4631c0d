"""Post-processing of a label map on the source grid: components, volumes, HU statistics, extent.

All per-label statistics are whole-array numpy/scipy operations (no per-slice Python loops).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from radsight.ai.package import Label
from radsight.ai.result_types import FindingData, LabelStatistics
from radsight.ai.volume import Volume

# 26-connectivity: voxels touching at a corner belong to one lesion, as in most lesion counters.
_STRUCTURE = ndimage.generate_binary_structure(3, 3)


def keep_largest_components(labelmap: np.ndarray, labels: Sequence[Label]) -> np.ndarray:
    """Set to background every component but the largest of each ``largest_component_only`` label.

    numpy/scipy version of MONAI's ``KeepLargestConnectedComponent`` (which needs torch; serving
    does not install it), with the same 26-connectivity as the statistics below.
    """
    out = labelmap
    for lab in labels:
        if not lab.largest_component_only or lab.index == 0:
            continue
        mask = labelmap == lab.index
        components, n = ndimage.label(mask, structure=_STRUCTURE)
        if n <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        if out is labelmap:
            out = labelmap.copy()
        out[mask & (components != int(np.argmax(sizes)))] = 0
    return out


def label_statistics(
    labelmap: np.ndarray, volume: Volume, labels: Sequence[Label], *, hu: bool
) -> list[LabelStatistics]:
    """Statistics of every non-background label (labels with no voxels included, with zeros)."""
    out: list[LabelStatistics] = []
    for lab in sorted(labels, key=lambda lab: lab.index):
        if lab.index == 0:
            continue
        mask = labelmap == lab.index
        count = int(np.count_nonzero(mask))
        if count == 0:
            out.append(LabelStatistics(lab, 0, 0.0, 0, None, None, None, None, 0.0))
            continue
        _, components = ndimage.label(mask, structure=_STRUCTURE)
        values = volume.array[mask]
        per_slice = np.count_nonzero(mask, axis=(1, 2))
        z = int(np.argmax(per_slice))
        ys, xs = np.nonzero(mask[z])
        out.append(
            LabelStatistics(
                label=lab,
                voxel_count=count,
                volume_ml=count * volume.voxel_volume_ml,
                component_count=int(components),
                mean_hu=float(values.mean()) if hu else None,
                max_hu=float(values.max()) if hu else None,
                slice_index=z,
                bbox=[int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                slice_area_mm2=int(per_slice[z]) * volume.spacing[1] * volume.spacing[2],
                slices=[int(i) for i in np.flatnonzero(per_slice)],
            )
        )
    return out


def measurements(stats: LabelStatistics) -> list[dict[str, Any]]:
    m: list[dict[str, Any]] = [
        {"name": "Volume", "value": stats.volume_ml, "unit": "mL"},
        {"name": "Voxel count", "value": stats.voxel_count, "unit": "voxels"},
    ]
    if not stats.label.largest_component_only:  # an organ is one structure: no count of pieces
        m.append({"name": "Lesion count", "value": stats.component_count, "unit": "count"})
    if stats.mean_hu is not None and stats.max_hu is not None:
        m.append({"name": "Mean attenuation", "value": stats.mean_hu, "unit": "HU"})
        m.append({"name": "Maximum attenuation", "value": stats.max_hu, "unit": "HU"})
    return m


def finding_from_statistics(stats: LabelStatistics, volume: Volume) -> FindingData:
    """The finding of one segmentation label (probability does not apply: None)."""
    location: dict[str, Any] = {"series_instance_uid": volume.series_instance_uid}
    if stats.slice_index is not None and stats.bbox is not None:
        source = volume.datasets[stats.slice_index]
        location.update(
            sop_instance_uid=str(source.SOPInstanceUID),
            frame=volume.frame_of(stats.slice_index),  # the frame of a multi-frame source
            slice_index=stats.slice_index,
            bbox=stats.bbox,
            point=[(stats.bbox[0] + stats.bbox[2]) // 2, (stats.bbox[1] + stats.bbox[3]) // 2],
        )
    return FindingData(
        label=stats.label.name,
        probability=None,
        positive=stats.voxel_count > 0,
        measurements=measurements(stats),
        location=location,
    )
