"""Demo data made from the real shared images: valid DICOM, right geometry, accepted by the archive."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from sqlalchemy import func, select
from tests.conftest import RunningServer

from radsight.archive import Archive
from radsight.datasets import cxr_to_dicom, nifti_to_ct_series, pick_chest_xrays
from radsight.datasets.cxr import DX_FOR_PRESENTATION, PRIVATE_CREATOR, PRIVATE_GROUP
from radsight.index.models import Instance, Series
from radsight.ingest import Outcome


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> list[Path]:
    return nifti_to_ct_series(shared_data / "ct" / "totalsegmentator" / "example_ct.nii.gz",
                              tmp_path_factory.mktemp("ct"))


@pytest.fixture(scope="module")
def chest_xrays(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> list[tuple[Path, str]]:
    out = tmp_path_factory.mktemp("cxr")
    written = []
    for i, (jpeg, label) in enumerate(pick_chest_xrays(shared_data / "cxr" / "kermany224" / "train", 4)):
        path = out / f"{i}.dcm"
        cxr_to_dicom(jpeg, path, label=label, patient_id=f"DEMO-{i}", patient_name=f"Demo^{i}")
        written.append((path, label))
    return written


def _dciodvfy_errors(path: Path) -> list[str]:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def test_ct_series_structure_and_geometry(ct_series: list[Path], shared_data: Path) -> None:
    assert len(ct_series) == 112
    slices = [pydicom.dcmread(p) for p in ct_series]
    assert {s.SOPClassUID for s in slices} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert {s.file_meta.TransferSyntaxUID for s in slices} == {"1.2.840.10008.1.2.1"}
    assert len({s.SeriesInstanceUID for s in slices}) == 1 and len({s.SOPInstanceUID for s in slices}) == 112
    assert len({s.FrameOfReferenceUID for s in slices}) == 1
    assert {(s.Rows, s.Columns) for s in slices} == {(101, 122)}
    assert {tuple(float(v) for v in s.ImageOrientationPatient) for s in slices} == {(1, 0, 0, 0, 1, 0)}
    assert {tuple(float(v) for v in s.PixelSpacing) for s in slices} == {(3.0, 3.0)}
    assert {float(s.SliceThickness) for s in slices} == {3.0}
    positions = np.array([[float(v) for v in s.ImagePositionPatient] for s in slices])
    steps = np.diff(positions, axis=0)
    assert np.allclose(steps, [0, 0, 3.0], atol=1e-3)  # 3 mm apart along the slice normal (+S)
    assert [s.InstanceNumber for s in slices] == list(range(1, 113))

    # Every DICOM pixel sits where the NIfTI affine (RAS) puts the same voxel, in LPS.
    img = nib.load(str(shared_data / "ct" / "totalsegmentator" / "example_ct.nii.gz"))
    vol = np.asarray(img.dataobj)
    rng = np.random.default_rng(0)
    for i, j, k in zip(rng.integers(0, 122, 30), rng.integers(0, 101, 30), rng.integers(0, 112, 30), strict=True):
        ras = img.affine @ np.array([i, j, k, 1.0])
        lps = np.array([-ras[0], -ras[1], ras[2]])
        s = slices[k]
        offset = lps - positions[k]
        col = round(float(np.dot(offset, [1, 0, 0])) / 3.0)
        row = round(float(np.dot(offset, [0, 1, 0])) / 3.0)
        assert abs(float(np.dot(offset, [0, 0, 1]))) < 1e-3
        hu = s.pixel_array[row, col] * float(s.RescaleSlope) + float(s.RescaleIntercept)
        assert hu == vol[i, j, k], (i, j, k)


def test_ct_series_hounsfield_units_are_plausible(ct_series: list[Path]) -> None:
    mid = pydicom.dcmread(ct_series[56])
    hu = mid.pixel_array.astype(float) * float(mid.RescaleSlope) + float(mid.RescaleIntercept)
    assert mid.RescaleType == "HU"
    corners = np.concatenate([hu[:5, :5].ravel(), hu[:5, -5:].ravel(), hu[-5:, :5].ravel(), hu[-5:, -5:].ravel()])
    assert -1100 < np.median(corners) < -900  # air around the patient
    volume = np.stack([pydicom.dcmread(p).pixel_array for p in ct_series[::4]]).astype(float)  # intercept 0
    body = volume[volume > -500]
    assert ((body >= 0) & (body <= 100)).mean() > 0.25  # a quarter of the body is soft tissue
    counts, edges = np.histogram(body[body >= -50], bins=np.arange(-50, 1500, 25))
    assert 0 <= edges[int(np.argmax(counts))] < 100  # the non-fat peak is soft tissue (0-100 HU)
    assert volume.max() > 300  # bone


def test_demo_files_pass_dciodvfy(ct_series: list[Path], chest_xrays: list[tuple[Path, str]]) -> None:
    assert _dciodvfy_errors(ct_series[56]) == []
    assert _dciodvfy_errors(chest_xrays[0][0]) == []


def test_chest_xray_is_a_dx_with_the_label_only_in_a_private_element(chest_xrays: list[tuple[Path, str]]) -> None:
    labels = [label for _, label in chest_xrays]
    assert labels.count("NORMAL") == labels.count("PNEUMONIA") == 2
    assert pick_chest_xrays(Path(chest_xrays[0][0]).parents[2], 0) == []  # nothing asked, nothing picked
    for path, label in chest_xrays:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == DX_FOR_PRESENTATION and ds.Modality == "DX"
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8
        assert ds.pixel_array.shape == (224, 224) and ds.pixel_array.std() > 10
        assert ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[0x01].value == label
        for elem in ds.iterall():
            if not elem.tag.is_private:
                assert label not in str(elem.value).upper(), elem
    # One study per image.
    assert len({pydicom.dcmread(p).StudyInstanceUID for p, _ in chest_xrays}) == len(chest_xrays)


def test_demo_data_is_stored_by_the_archive(
    archive: Archive, ct_series: list[Path], chest_xrays: list[tuple[Path, str]]
) -> None:
    for path in [*ct_series, *(p for p, _ in chest_xrays)]:
        r = archive.ingest.ingest_file(path)
        assert r.outcome is Outcome.STORED, f"{path}: {r.reason}: {r.message}"
    with archive.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 116
        counts = sorted(s.scalars(select(Series.number_of_instances)))
        assert counts == [1, 1, 1, 1, 112]


def test_storescu_sends_the_ct_series(server: RunningServer, ct_series: list[Path]) -> None:
    storescu = shutil.which("storescu")
    assert storescu is not None, "dcmtk's storescu is needed (make setup installs it)"
    proc = subprocess.run(
        [storescu, "-aet", "DEMOTEST", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port),
         *map(str, ct_series)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    uid = pydicom.dcmread(ct_series[0], stop_before_pixels=True).SeriesInstanceUID
    with server.archive.db.session() as s:
        assert s.scalar(select(Series.number_of_instances).where(Series.series_instance_uid == uid)) == 112
