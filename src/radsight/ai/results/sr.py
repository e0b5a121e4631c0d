"""DICOM SR TID 1500 Measurement Report (highdicom): what the model found, referencing SEG and images.

Segmentation: one TID 1411 volumetric group per label (volume in mL, mean and maximum attenuation
in HU, referencing its SEG segment) and one TID 1410 planar group with the bounding box (SCOORD
polyline) on the slice of greatest extent. Classification: one TID 1501 group per label with the
probability (DCM 122157 "Probability", UCUM "1") and the source image. Detection: one TID 1410
planar group per box with its probability; 2D: the box as a SCOORD polyline on its image; 3D: the
box's rectangle through its centre as a SCOORD3D polygon in the Frame of Reference, and the
probability referencing the image where the centre lies.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radsight.ai.package import Label, ModelMetadata
from radsight.ai.result_types import Detection, LabelStatistics
from radsight.ai.results import MANUFACTURER, ResultUIDs, coded, label_result
from radsight.ai.results.seg import segment_numbers
from radsight.ai.volume import Volume

UCUM_ML = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
UCUM_HU = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
UCUM_MM2 = hd.sr.CodedConcept("mm2", "UCUM", "square millimeter")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
PROBABILITY = codes.DCM.Probability  # DCM 122157
ATTENUATION = hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient")
IMAGING_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")


def _tracking(uids: ResultUIDs, name: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=str(generate_uid(entropy_srcs=[uids.sr_sop, name])), identifier=name[:64])


def _observation_context(meta: ModelMetadata, uids: ResultUIDs) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=str(generate_uid(entropy_srcs=["radsight-model", meta.name, meta.version, meta.sha256])),
        name=meta.name,
        manufacturer_name=MANUFACTURER,
        model_name=f"{meta.name} {meta.version}"[:64],
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _algorithm(meta: ModelMetadata) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=meta.name, version=meta.version, family=codes.DCM.ArtificialIntelligence)


def _frames(volume: Volume, slice_index: int) -> list[int] | None:
    """The source frame of a slice for a multi-frame source; None for single-frame images."""
    return [volume.frame_of(slice_index)] if volume.is_multiframe else None


def _pixel_box_region(
    image: Dataset, x0: float, y0: float, x1: float, y1: float, frames: list[int] | None = None
) -> hd.sr.ImageRegion:
    """A closed SCOORD polyline around the pixels x0..x1, y0..y1 (indices of the first and last pixel).

    SCOORD coordinates are of pixel edges: (0, 0) is the top-left corner of the first pixel and
    column + 0.5 its centre, so the box runs from x0 to x1 + 1.
    """
    corners = np.array([[x0, y0], [x1 + 1, y0], [x1 + 1, y1 + 1], [x0, y1 + 1], [x0, y0]], dtype=np.float32)
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=corners,
        source_image=hd.sr.SourceImageForRegion.from_source_image(image, referenced_frame_numbers=frames),
    )


def _planar_group(
    uids: ResultUIDs,
    name: str,
    label: Label,
    region: hd.sr.ImageRegion | hd.sr.ImageRegion3D,
    algorithm: hd.sr.AlgorithmIdentification,
    measurement: hd.sr.Measurement,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410: one region of a label with one measurement."""
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(uids, name),
        referenced_region=region,
        finding_type=coded(label.type),
        finding_category=coded(label.category),
        algorithm_id=algorithm,
        measurements=[measurement],
    )


def _referenced_segment(volume: Volume, seg: Dataset, number: int, slices: Sequence[int]) -> hd.sr.ReferencedSegment:
    """The SEG segment and the source images it lies on.

    By segment number, without frame numbers: PS3.3 allows one or the other in the image
    reference, not both (dciodvfy flags both). highdicom's from_segmentation lists frames.
    """
    # A multi-frame source is one instance for all its slices: listed once.
    images = list({id(volume.datasets[i]): volume.datasets[i] for i in slices}.values())
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation(ds.SOPClassUID, ds.SOPInstanceUID) for ds in images],
    )


def _segmentation_groups(
    volume: Volume, meta: ModelMetadata, uids: ResultUIDs, stats: Sequence[LabelStatistics], seg: Dataset
) -> list[
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
]:
    numbers = segment_numbers(meta)
    algorithm = _algorithm(meta)
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    ] = []
    for s in stats:
        if s.voxel_count == 0:
            continue  # an empty segment has no frames to reference
        measurements = [
            hd.sr.Measurement(name=codes.SCT.Volume, value=s.volume_ml, unit=UCUM_ML, algorithm_id=algorithm)
        ]
        if s.mean_hu is not None and s.max_hu is not None:
            measurements += [
                hd.sr.Measurement(
                    name=ATTENUATION, value=s.mean_hu, unit=UCUM_HU, derivation=codes.SCT.Mean, algorithm_id=algorithm
                ),
                hd.sr.Measurement(
                    name=ATTENUATION, value=s.max_hu, unit=UCUM_HU, derivation=codes.SCT.Maximum, algorithm_id=algorithm
                ),
            ]
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(uids, f"{s.label.name} volume"),
                referenced_segment=_referenced_segment(volume, seg, numbers[s.label.index], s.slices),
                finding_type=coded(s.label.type),
                finding_category=coded(s.label.category),
                algorithm_id=algorithm,
                measurements=measurements,
            )
        )
        if s.bbox is not None and s.slice_index is not None:
            x0, y0, x1, y1 = s.bbox
            region = _pixel_box_region(
                volume.datasets[s.slice_index], x0, y0, x1, y1, frames=_frames(volume, s.slice_index)
            )
            area = hd.sr.Measurement(name=codes.SCT.Area, value=s.slice_area_mm2, unit=UCUM_MM2, algorithm_id=algorithm)
            groups.append(_planar_group(uids, f"{s.label.name} greatest extent", s.label, region, algorithm, area))
    return groups


def _classification_groups(
    volume: Volume, meta: ModelMetadata, uids: ResultUIDs, probabilities: dict[int, float]
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    algorithm = _algorithm(meta)
    source = hd.sr.SourceImageForMeasurementGroup.from_source_image(volume.datasets[0])
    return [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(uids, f"{lab.name} probability"),
            finding_type=coded(lab.type),
            finding_category=coded(lab.category),
            algorithm_id=algorithm,
            source_images=[source],
            measurements=[
                hd.sr.Measurement(
                    name=PROBABILITY, value=probabilities[lab.index], unit=NO_UNITS, algorithm_id=algorithm
                )
            ],
        )
        for lab in meta.labels
    ]


def build_measurement_report(
    volume: Volume,
    meta: ModelMetadata,
    uids: ResultUIDs,
    *,
    stats: Sequence[LabelStatistics] = (),
    seg: Dataset | None = None,
    probabilities: dict[int, float] | None = None,
) -> hd.sr.Comprehensive3DSR:
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    if seg is not None:
        groups += _segmentation_groups(volume, meta, uids, stats, seg)
    if probabilities is not None:
        groups += _classification_groups(volume, meta, uids, probabilities)
    return _report(volume, meta, uids, groups, [*volume.datasets, *([seg] if seg is not None else [])])


def _detection_groups(
    volume: Volume, meta: ModelMetadata, uids: ResultUIDs, detections: Sequence[Detection]
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    algorithm = _algorithm(meta)
    frame_of_reference = str(volume.datasets[0].get("FrameOfReferenceUID", "") or "")
    groups = []
    for number, d in enumerate(detections, start=1):
        image = volume.datasets[d.slice_index]
        region: hd.sr.ImageRegion | hd.sr.ImageRegion3D
        referenced_images = None
        if d.region_patient is None:
            region = _pixel_box_region(image, *d.plane_box, frames=_frames(volume, d.slice_index))
        else:
            if not frame_of_reference:
                raise ValueError(f"series {volume.series_instance_uid} has no Frame of Reference for 3D boxes")
            region = hd.sr.ImageRegion3D(
                graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
                graphic_data=d.region_patient,
                frame_of_reference_uid=frame_of_reference,
            )
            referenced_images = [
                hd.sr.SourceImageForMeasurement.from_source_image(
                    image, referenced_frame_numbers=_frames(volume, d.slice_index)
                )
            ]
        probability = hd.sr.Measurement(
            name=PROBABILITY, value=d.score, unit=NO_UNITS, algorithm_id=algorithm, referenced_images=referenced_images
        )
        groups.append(_planar_group(uids, f"{d.label.name} {number}", d.label, region, algorithm, probability))
    return groups


def build_detection_report(
    volume: Volume, meta: ModelMetadata, uids: ResultUIDs, detections: Sequence[Detection]
) -> hd.sr.Comprehensive3DSR:
    """The SR of a detection model: one planar group per kept box (none: the report lists the images)."""
    return _report(volume, meta, uids, _detection_groups(volume, meta, uids, detections), volume.datasets)


def _report(
    volume: Volume,
    meta: ModelMetadata,
    uids: ResultUIDs,
    groups: Sequence[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ],
    evidence: list[Dataset],
) -> hd.sr.Comprehensive3DSR:
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(meta, uids),
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=groups,
        referenced_images=None if groups else volume.datasets,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=uids.sr_series,
        series_number=9003,
        sop_instance_uid=uids.sr_sop,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    label_result(sr, meta, f"SR {meta.name}")
    return sr
