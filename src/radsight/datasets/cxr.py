"""A real chest X-ray JPEG wrapped as a DICOM Digital X-Ray Image (For Presentation).

The Kermany images are 224x224 RGB JPEGs of grey radiographs. DX needs MONOCHROME1/2, so
the pixels are converted to 8-bit grey and stored uncompressed (the original JPEG is
3-component and cannot be encapsulated as MONOCHROME2 as it is). The source was lossy
JPEG, which Lossy Image Compression (0028,2110) "01" says.

Patient and study attributes are synthetic. The label (NORMAL / PNEUMONIA) is never put
in a patient-visible attribute: only in a private element, for demos and evaluation.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from radsight import __version__

DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
LABELS = ("NORMAL", "PNEUMONIA")
PRIVATE_CREATOR = "RADSIGHT DEMO"
PRIVATE_GROUP = 0x0011
# The resized images no longer know their detector geometry; a nominal spacing that makes a
# 224-pixel image about the width of a child's chest (ImagerPixelSpacing is Type 1).
NOMINAL_PIXEL_SPACING_MM = 1.0
_SURNAMES = ("Rivera", "Okafor", "Lindqvist", "Tanaka", "Moreau", "Kowalski", "Haddad", "Novak", "Silva", "Brennan")
_GIVEN = ("Alex", "Sam", "Robin", "Kim", "Jordan", "Charlie", "Noa", "Eli", "Ari", "Luca")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def cxr_to_dicom(
    jpeg_path: Path,
    out_path: Path,
    *,
    label: str,
    patient_id: str,
    patient_name: str = "Demo^Patient",
    study_date: date = date(2024, 1, 15),
    accession_number: str = "",
    sex: str = "O",
    birth_date: date | None = None,
) -> Dataset:
    """Write ``jpeg_path`` as a one-image DX study at ``out_path``; returns the data set."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    with Image.open(jpeg_path) as img:
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
    rows, columns = grey.shape
    # Deterministic UIDs: writing the same image for the same patient again gives the same instance.
    seed = [str(Path(jpeg_path).name), patient_id]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["cxr-sop", *seed])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.ImageType = ["DERIVED", "PRIMARY"]
    # Patient
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date.strftime("%Y%m%d") if birth_date else ""
    ds.PatientSex = sex
    # Study and series
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["cxr-study", *seed])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["cxr-series", *seed])
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber = accession_number
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR CHEST 1 VIEW"
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Chest PA"
    ds.BodyPartExamined = "CHEST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "RadSight demo (from Kermany et al. 2018, CC BY 4.0)"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.ImageLaterality = "U"
    ds.ViewPosition = "PA"
    ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "postero-anterior")])
    ds.PositionerType = ""
    ds.AnatomicRegionSequence = Sequence([_code("51185008", "SCT", "Chest")])
    ds.AcquisitionContextSequence = Sequence()
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.LossyImageCompressionRatio = round(grey.size / max(1, Path(jpeg_path).stat().st_size), 2)
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [NOMINAL_PIXEL_SPACING_MM, NOMINAL_PIXEL_SPACING_MM]
    # Image pixel (8-bit MONOCHROME2)
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelData = grey.tobytes()
    # The label, for demos and evaluation only: a private element, never a patient-visible one.
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", label)
    ds.save_as(out_path, enforce_file_format=True)
    return ds


def pick_chest_xrays(train_dir: Path, count: int, *, seed: int = 2018) -> list[tuple[Path, str]]:
    """A balanced, deterministic choice of ``count`` images from ``train_dir``/{NORMAL,PNEUMONIA}."""
    rng = random.Random(seed)
    picked: list[tuple[Path, str]] = []
    for i, label in enumerate(LABELS):
        files = sorted((train_dir / label).glob("*.jp*g"))
        n = count // 2 + (count % 2 if i == 0 else 0)
        if len(files) < n:
            raise ValueError(f"{train_dir / label} has {len(files)} images, {n} wanted")
        picked += [(p, label) for p in rng.sample(files, n)]
    return picked


def synthetic_patient(index: int) -> tuple[str, str, date, str]:
    """(PatientName, PatientID, birth date, sex) for the demo patient ``index``: clearly synthetic."""
    name = f"{_SURNAMES[index % len(_SURNAMES)]}^{_GIVEN[(index // len(_SURNAMES)) % len(_GIVEN)]}"
    birth = date(2016, 1, 1) + timedelta(days=(index * 97) % 1800)
    return name, f"DEMO-CXR-{index + 1:04d}", birth, "MF"[index % 2]
