"""DICOM Parametric Map (float) of a per-pixel probability or heatmap, referencing the source images."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from radsight.ai.package import Label, ModelMetadata
from radsight.ai.results import CONTENT_CREATOR, MANUFACTURER, ResultUIDs, coded, label_result
from radsight.ai.volume import Volume

NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")


def _with_nominal_geometry(source: Dataset) -> Dataset:
    """A copy of a projection image (CR/DX: no frame of reference) with a nominal image plane.

    The Parametric Map IOD requires a Frame of Reference and plane position/orientation; a
    projection radiograph has neither. The map gets its own frame of reference (derived from the
    source image, so it is stable) with the image plane at the origin, rows along x, columns
    along y, at the detector pixel spacing; it lies pixel for pixel on the source image (Spatial
    Locations Preserved YES in its derivation reference), which is how viewers overlay it.
    """
    ds = copy.deepcopy(source)
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["radsight-nominal-frame", str(ds.SOPInstanceUID)])
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 1
    return ds


def _mapping(meta: ModelMetadata, label: Label, low: float, high: float) -> hd.pm.RealWorldValueMapping:
    return hd.pm.RealWorldValueMapping(
        lut_label="AI_PROB",
        lut_explanation=f"{meta.name} {label.name}"[:64],
        unit=NO_UNITS,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=coded(label.type),
    )


def _window(low: float, high: float) -> hd.VOILUTTransformation:
    """The map's value range, low..high, onto the full display range.

    LINEAR_EXACT (PS3.3 C.11.2.1.3.2): a probability's range is narrower than 1, which the LINEAR
    function does not permit as a width, and LINEAR_EXACT maps low to black and high to white
    exactly, as the viewers (and radsight.imaging.render without a window) draw a map.
    """
    return hd.VOILUTTransformation(
        window_center=(low + high) / 2.0,
        window_width=max(high - low, 1e-6),
        voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT,
    )


def _description(meta: ModelMetadata, label: Label) -> str:
    return f"{meta.name} {meta.version} {label.name} map"[:64]


def build_parametric_map(
    volume: Volume,
    values: np.ndarray,
    meta: ModelMetadata,
    uids: ResultUIDs,
    *,
    label: Label,
    sop_instance_uid: str | None = None,
    instance_number: int = 1,
) -> hd.pm.ParametricMap:
    """``values`` (slices, rows, columns) float32 on the source grid (``volume.array``'s slice order),
    one frame per source image or source frame.

    One instance per label (``sop_instance_uid``, ``instance_number``; all in the map series): its
    Real World Value Mapping and Content Description name the label, a finding points to its own
    label's map, and a viewer loads only the map it shows.
    """
    values = np.ascontiguousarray(volume.to_source_order(values), dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    sources = volume.source_images if volume.orientation is not None else [_with_nominal_geometry(volume.datasets[0])]
    pmap = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=values,
        series_instance_uid=uids.pmap_series,
        series_number=9002,
        sop_instance_uid=sop_instance_uid or uids.pmap_sop,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=meta.name,
        software_versions=meta.version,
        device_serial_number=meta.sha256[:16],
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[_mapping(meta, label, low, high)],
        voi_lut_transformations=[_window(low, high)],
        content_description=_description(meta, label),
        content_creator_name=CONTENT_CREATOR.replace(" ", "^"),
        content_label="AI_PMAP",
    )
    label_result(pmap, meta, f"map {meta.name}")
    if "Laterality" not in pmap:
        # General Series Laterality is Type 2C; dciodvfy wants it (empty) on a parametric map.
        pmap.Laterality = ""
    return pmap


def sibling_parametric_map(
    first: Dataset,
    values: np.ndarray,
    volume: Volume,
    meta: ModelMetadata,
    *,
    label: Label,
    sop_instance_uid: str,
    instance_number: int,
) -> Dataset:
    """Another label's map on the same frames as ``first`` (made by :func:`build_parametric_map`).

    Written here because highdicom has no way to make several maps over one geometry: each
    ParametricMap() rebuilds and re-validates every per-frame functional group (about 1 s for
    112 frames, per label). The per-frame groups (plane positions, source frame references) are
    the same for every label, so they are shared with ``first``; what differs (UIDs, instance
    number, pixels, the Real World Value Mapping and window in the shared groups, the
    description) is set with highdicom's own objects. tests/test_ai_results.py checks the result
    against a ParametricMap built by highdicom for the same label.
    """
    # highdicom orders the frames its own way (by position): follow ``first``'s frames by the source
    # image (and frame) each one references.
    slice_of = {(str(d.SOPInstanceUID), volume.frame_of(i)): i for i, d in enumerate(volume.datasets)}
    order = []
    for item in first.PerFrameFunctionalGroupsSequence:
        src = item.DerivationImageSequence[0].SourceImageSequence[0]
        order.append(slice_of[(str(src.ReferencedSOPInstanceUID), int(src.get("ReferencedFrameNumber", 1)))])
    values = np.ascontiguousarray(values[order], dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    ds = Dataset()
    ds.file_meta = copy.deepcopy(first.file_meta)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    replaced = {
        "SOPInstanceUID",
        "InstanceNumber",
        "FloatPixelData",
        "SharedFunctionalGroupsSequence",
        "ContentDescription",
        "ContentDate",
        "ContentTime",
    }
    for elem in first:
        if elem.keyword not in replaced:
            ds.add(elem)  # the element objects are shared, never changed: ds only replaces its own
    shared = copy.deepcopy(first.SharedFunctionalGroupsSequence)
    shared[0].RealWorldValueMappingSequence = [_mapping(meta, label, low, high)]
    window = _window(low, high)
    shared[0].FrameVOILUTSequence[0].WindowCenter = window.WindowCenter
    shared[0].FrameVOILUTSequence[0].WindowWidth = window.WindowWidth
    ds.SharedFunctionalGroupsSequence = shared
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ContentDescription = _description(meta, label)
    ds.ContentDate, ds.ContentTime = first.ContentDate, first.ContentTime
    ds.FloatPixelData = values.tobytes()
    return ds
