"""A NIfTI CT volume written as a clean CT Image Storage series (one file per slice).

Geometry: NIfTI's affine maps voxel indices (i, j, k) to RAS+ millimetres; DICOM patient
coordinates are LPS+, so x and y change sign. Within a slice, DICOM columns follow i and rows
follow j. An axis whose direction points mostly towards -L or -P is flipped first, so the
images come out in the usual radiological orientation (row direction to the patient's left,
column direction to posterior) and a viewer needs no flip.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from radsight import __version__

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.6g}"
    return "0" if text in ("-0", "0") else text


def lps_geometry(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, list[bool]]:
    """The LPS affine after flipping in-plane axes that point to -L / -P, and which axes were flipped."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=float)
    flipped = [False, False]
    for axis in (0, 1):
        direction = lps[:3, axis]
        if direction[int(np.argmax(np.abs(direction)))] < 0:
            lps[:3, 3] += direction * (shape[axis] - 1)
            lps[:3, axis] = -direction
            flipped[axis] = True
    return lps, flipped


def nifti_to_ct_series(
    nifti_path: Path,
    out_dir: Path,
    *,
    patient_id: str = "DEMO-CT-0001",
    patient_name: str = "Abdomen^Demo",
    study_date: str = "20240301",
    series_description: str = "Abdomen CT 3.0 mm (from NIfTI)",
) -> list[Path]:
    """Write every axial slice of ``nifti_path`` (values in HU) to ``out_dir``; returns the files in order."""
    img = nib.load(str(nifti_path))
    data = np.asarray(img.dataobj)  # type: ignore[attr-defined]
    slope, inter = img.header.get_slope_inter()  # type: ignore[attr-defined]
    if slope is not None:
        data = data * slope + (inter or 0.0)
    if data.ndim != 3:
        raise ValueError(f"{nifti_path}: a 3D volume is needed, not shape {data.shape}")
    lps, flipped = lps_geometry(img.affine, data.shape)  # type: ignore[attr-defined]
    for axis, flip in enumerate(flipped):
        if flip:
            data = np.flip(data, axis=axis)
    hu = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    normal = np.cross(row_dir, col_dir)
    seed = [Path(nifti_path).name, patient_id]
    study_uid = generate_uid(entropy_srcs=["ct-study", *seed])
    series_uid = generate_uid(entropy_srcs=["ct-series", *seed])
    frame_uid = generate_uid(entropy_srcs=["ct-frame", *seed])
    out_dir.mkdir(parents=True, exist_ok=True)
    window_center, window_width = 40, 400
    paths: list[Path] = []
    for k in range(hu.shape[2]):
        position = lps[:3, 3] + lps[:3, 2] * k
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["ct-sop", *seed, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.AccessionNumber = "DEMOCT00001"
        ds.Modality = "CT"
        ds.Manufacturer = "RadSight demo (from TotalSegmentator example_ct, Apache-2.0)"
        ds.SoftwareVersions = __version__
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CT ABDOMEN"
        ds.SeriesDescription = series_description
        ds.PatientName, ds.PatientID = patient_name, patient_id
        ds.PatientBirthDate, ds.PatientSex = "19650412", "O"
        ds.BodyPartExamined = "ABDOMEN"
        ds.KVP = ""
        ds.SliceThickness = _ds(float(spacing[2]))
        ds.PatientPosition = "FFS"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]  # rows follow j, columns follow i
        ds.PixelSpacing = [_ds(float(spacing[1])), _ds(float(spacing[0]))]  # row spacing, column spacing
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.WindowCenter, ds.WindowWidth = window_center, window_width
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T).tobytes()
        path = out_dir / f"ct-{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
