"""Load a series from the archive as a numpy volume with its geometry.

Slices are sorted by ImagePositionPatient projected on the slice normal (the cross product
of ImageOrientationPatient's row and column directions), never by InstanceNumber, which
scanners do not always keep in spatial order. Grey values go through the Modality LUT
(Hounsfield units for CT). 2D images (CR/DX) come back as a one-slice volume: MONOCHROME1 is
inverted so that bright means dense in every image a model sees, and colour becomes grey.
Pixels are decoded by :mod:`radsight.imaging.decode` (every transfer syntax, DCMTK fallback).

Enhanced multi-frame images (one instance, many frames, per-frame functional groups: Enhanced
CT/MR, Legacy Converted Enhanced) are read frame by frame: each frame's plane position,
orientation, pixel measures and pixel value transformation come from its Per-Frame Functional
Groups item, else the Shared one; its frames are then sorted along the normal like single
images. ``Volume.frames`` remembers which source frame each slice is, so that results reference
frames and are written in the source's frame order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # A multi-frame source's header is repeated for each of its frames (``frames`` says which).
    datasets: list[Dataset]
    modality: str
    study_instance_uid: str
    series_instance_uid: str
    # ImageOrientationPatient (6 values) or None for projection images without one
    orientation: tuple[float, ...] | None = None
    # 1-based source frame number of each slice (1 for single-frame images); empty = all 1.
    frames: list[int] = field(default_factory=list)

    def frame_of(self, slice_index: int) -> int:
        return self.frames[slice_index] if self.frames else 1

    @property
    def is_multiframe(self) -> bool:
        return any(f != 1 for f in self.frames)

    @property
    def source_images(self) -> list[Dataset]:
        """The distinct source instances, as results take them (a multi-frame source once)."""
        if not self.is_multiframe:
            return self.datasets
        seen: dict[int, Dataset] = {}
        for ds in self.datasets:
            seen.setdefault(id(ds), ds)
        return list(seen.values())

    def to_source_order(self, array: np.ndarray) -> np.ndarray:
        """``array`` (one plane per slice of ``self.array``) in the order results are written in: the
        slice order for single-frame sources (results reference each image), the source's frame order
        for one multi-frame source (highdicom pairs result frames with source frames by position)."""
        if not self.is_multiframe:
            return array
        if len(self.source_images) != 1:
            raise VolumeError("results of a series of several multi-frame instances are not supported")
        out = np.empty_like(array)
        out[np.asarray(self.frames) - 1] = array
        return out

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


def _group_value(header: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute of one frame's functional group: per-frame item first, then the shared one."""
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or []
    shared = header.get("SharedFunctionalGroupsSequence") or []
    items = ([per_frame[frame]] if frame < len(per_frame) else []) + ([shared[0]] if shared else [])
    for item in items:
        inner = item.get(sequence)
        if inner and keyword in inner[0]:
            return inner[0].get(keyword)
    return None


@dataclass
class _Plane:
    """One image plane of the series: a single-frame image, or one frame of a multi-frame image."""

    path: Path
    header: Dataset
    frame: int  # 0-based index in the instance
    position: list[float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: list[float] | None
    thickness: float | None
    rescale: tuple[float, float] | None = None  # from functional groups (enhanced images only)


def _planes(path: Path, header: Dataset) -> list[_Plane]:
    def floats(v: Any) -> list[float] | None:
        return [float(x) for x in v] if v is not None else None

    if "PerFrameFunctionalGroupsSequence" not in header:
        iop = header.get("ImageOrientationPatient")
        spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing")
        return [
            _Plane(
                path,
                header,
                0,
                floats(header.get("ImagePositionPatient")),
                tuple(float(v) for v in iop) if iop is not None and len(iop) == 6 else None,
                floats(spacing),
                float(header.get("SliceThickness", 0) or 0) or None,
            )
        ]
    planes = []
    for f in range(int(header.get("NumberOfFrames", 1) or 1)):
        iop = _group_value(header, f, "PlaneOrientationSequence", "ImageOrientationPatient")
        slope = _group_value(header, f, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(header, f, "PixelValueTransformationSequence", "RescaleIntercept")
        thickness = _group_value(header, f, "PixelMeasuresSequence", "SliceThickness")
        planes.append(
            _Plane(
                path,
                header,
                f,
                floats(_group_value(header, f, "PlanePositionSequence", "ImagePositionPatient")),
                tuple(float(v) for v in iop) if iop is not None and len(iop) == 6 else None,
                floats(_group_value(header, f, "PixelMeasuresSequence", "PixelSpacing")),
                float(thickness) if thickness else None,
                (float(slope if slope is not None else 1.0), float(intercept or 0.0))
                if slope is not None or intercept is not None
                else None,
            )
        )
    return planes


def _pixels(planes: list[_Plane]) -> np.ndarray:
    """The planes' grey values, each instance's frames decoded in one call."""
    by_path: dict[Path, list[int]] = {}
    for i, p in enumerate(planes):
        by_path.setdefault(p.path, []).append(i)
    out: list[np.ndarray | None] = [None] * len(planes)
    for path, idx in by_path.items():
        header = planes[idx[0]].header
        for i, frame in zip(idx, decode_frames(path, header, [planes[i].frame for i in idx]), strict=True):
            rescale = planes[i].rescale
            if rescale is not None and frame.ndim == 2:
                # Enhanced images carry the Modality LUT in a functional group, which pydicom's
                # apply_modality_lut does not read (it looks at the top-level attributes).
                out[i] = np.asarray(frame, dtype=np.float32) * np.float32(rescale[0]) + np.float32(rescale[1])
            else:
                out[i] = _grey(frame, header)
    return np.stack([o for o in out if o is not None]).astype(np.float32, copy=False)


def load_series(archive: Archive, series_instance_uid: str) -> Volume:
    """The series' images (every frame of multi-frame ones) as a volume; non-image instances are skipped."""
    planes: list[_Plane] = []
    for path in series_files(archive, series_instance_uid):
        header = _header_fixups(pydicom.dcmread(path, stop_before_pixels=True))
        if "Rows" in header and "Columns" in header:
            planes.extend(_planes(path, header))
    if not planes:
        raise VolumeError(f"series {series_instance_uid} holds no images")
    shapes = {(int(p.header.Rows), int(p.header.Columns)) for p in planes}
    if len(shapes) > 1:
        raise VolumeError(f"series {series_instance_uid} mixes image sizes {sorted(shapes)}")
    first = planes[0]
    orientation = first.orientation
    if orientation is not None and all(p.position is not None for p in planes):
        row, col = np.array(orientation[:3]), np.array(orientation[3:])
        normal = np.cross(row, col)
        positions = np.array([p.position for p in planes]) @ normal
        order = np.argsort(positions, kind="stable")
        planes = [planes[i] for i in order]
        positions = positions[order]
        if len(planes) > 1:
            z_spacing = float(np.median(np.diff(positions)))
            if z_spacing <= 0:
                raise VolumeError(f"series {series_instance_uid} has slices at the same position")
        else:
            z_spacing = first.thickness or 1.0
    else:
        orientation = None
        planes.sort(key=lambda p: (int(p.header.get("InstanceNumber", 0) or 0), p.frame))
        z_spacing = first.thickness or 1.0
    spacing_yx = first.pixel_spacing or [1.0, 1.0]
    header = first.header
    return Volume(
        array=_pixels(planes),
        spacing=(z_spacing, float(spacing_yx[0]), float(spacing_yx[1])),
        datasets=[p.header for p in planes],
        modality=str(header.get("Modality", "")),
        study_instance_uid=str(header.StudyInstanceUID),
        series_instance_uid=str(header.SeriesInstanceUID),
        orientation=orientation,
        frames=[p.frame + 1 for p in planes],
    )
