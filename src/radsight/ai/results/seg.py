"""DICOM SEG of a model's label map (highdicom), referencing the source images."""

from __future__ import annotations

from typing import Literal

import highdicom as hd
import numpy as np
from pydicom.uid import generate_uid

from radsight.ai.package import ModelMetadata
from radsight.ai.results import CONTENT_CREATOR, MANUFACTURER, ResultUIDs, algorithm_identification, coded, label_result
from radsight.ai.volume import Volume


def segment_numbers(meta: ModelMetadata) -> dict[int, int]:
    """Label value -> SEG segment number (1..n in label order; background 0 is no segment)."""
    values = sorted(lab.index for lab in meta.labels if lab.index > 0)
    return {value: number for number, value in enumerate(values, start=1)}


def build_segmentation(
    volume: Volume,
    labelmap: np.ndarray,
    meta: ModelMetadata,
    uids: ResultUIDs,
    *,
    seg_type: Literal["binary", "labelmap"] = "binary",
) -> hd.seg.Segmentation:
    """A SEG, one segment per non-background label, frames for every source slice with voxels.

    BINARY by default (setting ``ai_seg_type``): the Label Map Segmentation SOP Class (Sup 243,
    2024) is not yet read by most viewers and validators; binary segments are. LABELMAP: one
    frame per slice whose pixel values are the segment numbers (8 bits up to 255 segments).
    ``labelmap`` is in ``volume.array``'s slice order; a multi-frame source gets its frames back
    in its own frame order, which is how highdicom pairs SEG frames with source frames.
    """
    numbers = segment_numbers(meta)
    pixels = np.zeros(labelmap.shape, dtype=np.uint8)
    for value, number in numbers.items():
        pixels[labelmap == value] = number
    algorithm = algorithm_identification(meta)
    descriptions = []
    for lab in sorted(meta.labels, key=lambda lab: lab.index):
        if lab.index not in numbers:
            continue
        color = hd.color.CIELabColor.from_rgb(*lab.color) if lab.color else None
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=numbers[lab.index],
                segment_label=lab.name,
                segmented_property_category=coded(lab.category),
                segmented_property_type=coded(lab.type),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=generate_uid(entropy_srcs=[uids.seg_sop, str(lab.index)]),
                tracking_id=f"{meta.name} {lab.name}"[:64],
                display_color=color,
            )
        )
    seg = hd.seg.Segmentation(
        source_images=volume.source_images,
        pixel_array=volume.to_source_order(pixels),
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP
        if seg_type == "labelmap"
        else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=uids.seg_series,
        series_number=9001,
        sop_instance_uid=uids.seg_sop,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=meta.name,
        software_versions=meta.version,
        device_serial_number=meta.sha256[:16],
        content_description=f"{meta.name} {meta.version} segmentation"[:64],
        content_creator_name=CONTENT_CREATOR.replace(" ", "^"),
        content_label="AI_SEG",
        # An empty result is still a result: keep every frame when nothing was found.
        omit_empty_frames=bool(pixels.any()),
    )
    label_result(seg, meta, f"SEG {meta.name}")
    return seg
