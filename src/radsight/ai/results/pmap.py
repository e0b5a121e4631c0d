"""DICOM Parametric Map (float) of a per-pixel probability or heatmap, referencing the source images."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

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


def build_parametric_map(
    volume: Volume, values: np.ndarray, meta: ModelMetadata, uids: ResultUIDs, *, label: Label
) -> hd.pm.ParametricMap:
    """``values`` (slices, rows, columns) float32 on the source grid, one frame per source image."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="AI_PROB",
        lut_explanation=f"{meta.name} {label.name}"[:64],
        unit=NO_UNITS,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=coded(label.type),
    )
    sources = volume.datasets if volume.orientation is not None else [_with_nominal_geometry(volume.datasets[0])]
    pmap = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=values,
        series_instance_uid=uids.pmap_series,
        series_number=9002,
        sop_instance_uid=uids.pmap_sop,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=meta.name,
        software_versions=meta.version,
        device_serial_number=meta.sha256[:16],
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(window_center=(low + high) / 2.0, window_width=max(high - low, 1e-6))
        ],
        content_description=f"{meta.name} {meta.version} {label.name} map"[:64],
        content_creator_name=CONTENT_CREATOR.replace(" ", "^"),
        content_label="AI_PMAP",
    )
    label_result(pmap, meta, f"map {meta.name}")
    if "Laterality" not in pmap:
        # General Series Laterality is Type 2C; dciodvfy wants it (empty) on a parametric map.
        pmap.Laterality = ""
    return pmap
