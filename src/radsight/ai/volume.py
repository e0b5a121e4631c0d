"""Load a series from the archive as a numpy volume with its geometry.

Slices are sorted by ImagePositionPatient projected on the slice normal (the cross product
of ImageOrientationPatient's row and column directions), never by InstanceNumber, which
scanners do not always keep in spatial order. Grey values go through the Modality LUT
(Hounsfield units for CT). 2D images (CR/DX) come back as a one-slice volume: MONOCHROME1 is
inverted so that bright means dense in every image a model sees, and colour becomes grey.
Pixels are decoded by :mod:`radsight.imaging.decode` (every transfer syntax, DCMTK fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from sqlalchemy import select

from radsight.archive import Archive
from radsight.imaging.decode import decode_frames, decoded_photometric
from radsight.index.models import Instance, Series


class VolumeError(Exception):
    """The series cannot be made into a volume (no images, mixed sizes...); the message says why."""


@dataclass
class Volume:
    """Voxels (z, y, x) as float32 and the source geometry they map back onto."""

    array: np.ndarray
    # (z, y, x) in mm; z is the distance between slice positions (or SliceThickness for one slice)
    spacing: tuple[float, float, float]
    # Headers (no pixel data) in the order of ``array``'s first axis: the source images of results.
    datasets: list[Dataset]
    modality: str
    study_instance_uid: str
    series_instance_uid: str
    # ImageOrientationPatient (6 values) or None for projection images without one
    orientation: tuple[float, ...] | None = None

    @property
    def is_3d(self) -> bool:
        return self.orientation is not None and self.array.shape[0] > 1

    @property
    def voxel_volume_ml(self) -> float:
        z, y, x = self.spacing
        return z * y * x / 1000.0


def _grey(frame: np.ndarray, header: Dataset) -> np.ndarray:
    """One decoded frame as float32 grey values (Modality LUT applied, MONOCHROME1 inverted)."""
    photometric = decoded_photometric(header)
    if frame.ndim == 3:
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            frame = np.asarray(apply_color_lut(frame, header))
        # ITU-R BT.601 luma: the usual colour-to-grey weights.
        return np.asarray(frame[..., :3], dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    values = np.asarray(apply_modality_lut(frame, header), dtype=np.float32)
    if photometric == "MONOCHROME1":
        values = np.float32(values.max() + values.min()) - values
    return values


def _header_fixups(ds: Dataset) -> Dataset:
    """Fill an empty SOP Class UID from the file meta (the archive accepts such files; results must
    reference a real class)."""
    if not str(ds.get("SOPClassUID", "") or "").strip() and "MediaStorageSOPClassUID" in ds.file_meta:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    return ds


def series_files(archive: Archive, series_instance_uid: str) -> list[Path]:
    with archive.db.session() as s:
        keys = s.scalars(
            select(Instance.storage_key)
            .join(Series, Instance.series_pk == Series.id)
            .where(Series.series_instance_uid == series_instance_uid)
        ).all()
    paths: list[Path] = []
    for key in keys:
        path = archive.storage.local_path(key)
        if path is None:
            raise VolumeError(f"instance {key} is not on a local file system")
        paths.append(path)
    if not paths:
        raise VolumeError(f"series {series_instance_uid} has no instances in the archive")
    return paths


def load_series(archive: Archive, series_instance_uid: str) -> Volume:
    """The series' images as a volume; non-image instances in the series are skipped."""
    items: list[tuple[Path, Dataset]] = []
    for path in series_files(archive, series_instance_uid):
        header = _header_fixups(pydicom.dcmread(path, stop_before_pixels=True))
        if "Rows" in header and "Columns" in header:
            items.append((path, header))
    if not items:
        raise VolumeError(f"series {series_instance_uid} holds no images")
    shapes = {(int(h.Rows), int(h.Columns)) for _, h in items}
    if len(shapes) > 1:
        raise VolumeError(f"series {series_instance_uid} mixes image sizes {sorted(shapes)}")
    first = items[0][1]
    iop = first.get("ImageOrientationPatient")
    orientation = tuple(float(v) for v in iop) if iop is not None and len(iop) == 6 else None
    if orientation is not None and all("ImagePositionPatient" in h for _, h in items):
        row, col = np.array(orientation[:3]), np.array(orientation[3:])
        normal = np.cross(row, col)
        positions = np.array([[float(v) for v in h.ImagePositionPatient] for _, h in items]) @ normal
        order = np.argsort(positions, kind="stable")
        items = [items[i] for i in order]
        positions = positions[order]
        if len(items) > 1:
            z_spacing = float(np.median(np.diff(positions)))
            if z_spacing <= 0:
                raise VolumeError(f"series {series_instance_uid} has slices at the same position")
        else:
            z_spacing = float(first.get("SliceThickness", 1.0) or 1.0)
    else:
        orientation = None
        items.sort(key=lambda it: int(it[1].get("InstanceNumber", 0) or 0))
        z_spacing = float(first.get("SliceThickness", 1.0) or 1.0)
    spacing_yx = first.get("PixelSpacing") or first.get("ImagerPixelSpacing") or [1.0, 1.0]
    slices = [_grey(decode_frames(path, header, [0])[0], header) for path, header in items]
    array = np.stack(slices).astype(np.float32, copy=False)
    return Volume(
        array=array,
        spacing=(z_spacing, float(spacing_yx[0]), float(spacing_yx[1])),
        datasets=[h for _, h in items],
        modality=str(first.get("Modality", "")),
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=str(first.SeriesInstanceUID),
        orientation=orientation,
    )
