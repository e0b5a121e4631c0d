"""DICOM Parametric Map (float) of a per-pixel probability or heatmap, referencing the source images."""

from __future__ import annotations

import highdicom as hd
import numpy as np

from radsight.ai.package import Label, ModelMetadata
from radsight.ai.results import CONTENT_CREATOR, MANUFACTURER, ResultUIDs, coded, label_result
from radsight.ai.volume import Volume

NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")


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
    pixel_measures = None
    if volume.orientation is None:
        # Projection images (CR/DX) have no plane geometry; the pixel size is still stated.
        spacing = volume.datasets[0].get("PixelSpacing") or volume.datasets[0].get("ImagerPixelSpacing")
        if spacing is not None:
            pixel_measures = hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing], slice_thickness=None)
    pmap = hd.pm.ParametricMap(
        source_images=volume.datasets,
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
        pixel_measures=pixel_measures,
    )
    label_result(pmap, meta, f"map {meta.name}")
    if "Laterality" not in pmap:
        # General Series Laterality is Type 2C; dciodvfy wants it (empty) on a parametric map.
        pmap.Laterality = ""
    return pmap
