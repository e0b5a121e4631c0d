"""The AI engine on an enhanced multi-frame CT (one instance, per-frame functional groups): the real
20-slice CT converted by highdicom's LegacyConvertedEnhancedCTImage, its frames deliberately out of
spatial order. The series loads as a volume; SEG, parametric map and SR reference the source's
frames; the SEG mask matches HU > threshold voxel for voxel; the finding names the right frame."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from scipy.special import expit

from ai_testmodels import make_segmentation_package
from radsight.ai.package import load_package
from radsight.ai.pipeline import run_model
from radsight.ai.volume import load_series
from radsight.archive import Archive
from test_ai_results import THRESHOLD_HU, _path_of, dciodvfy

CT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "totalsegmentator" / "example_ct_dicom"


@pytest.fixture
def enhanced_ct(archive: Archive, tmp_path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """The enhanced CT (stored in the archive) and its HU per frame, in frame order."""
    if not CT_DIR.is_dir():
        pytest.fail(f"shared CT data missing: {CT_DIR}")
    study, series = generate_uid(), generate_uid()
    singles = []
    for path in sorted(CT_DIR.iterdir()):
        ds = pydicom.dcmread(path)
        ds.decompress()
        if not str(ds.get("SOPClassUID", "")).strip():  # empty in these files; the file meta names it
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series  # empty in these files
        singles.append(ds)
    random.Random(4).shuffle(singles)  # frames not in spatial order: the loader must sort them
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        singles, series_instance_uid=generate_uid(), series_number=2, sop_instance_uid=generate_uid(), instance_number=1
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path, enforce_file_format=True)
    assert archive.ingest.ingest_file(path).ok
    stored = pydicom.dcmread(path)
    assert stored.NumberOfFrames == 20
    shared = stored.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    hu = stored.pixel_array * float(shared.RescaleSlope) + float(shared.RescaleIntercept)
    return stored, hu


def _frame_depths(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.array(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    positions = [f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence]
    return np.array(positions, float) @ normal


def test_enhanced_ct_loads_as_a_sorted_volume(
    archive: Archive, enhanced_ct: tuple[pydicom.Dataset, np.ndarray]
) -> None:
    ds, hu = enhanced_ct
    volume = load_series(archive, str(ds.SeriesInstanceUID))
    depths = _frame_depths(ds)
    order = np.argsort(depths)
    assert not np.array_equal(order, np.arange(20))  # the test's frames really are shuffled
    assert volume.frames == [int(i) + 1 for i in order]
    np.testing.assert_array_equal(volume.array, hu[order].astype(np.float32))
    assert volume.spacing[0] == pytest.approx(float(np.median(np.diff(depths[order]))))
    assert volume.is_3d and volume.is_multiframe
    assert [d.SOPInstanceUID for d in volume.source_images] == [ds.SOPInstanceUID]


def test_segmentation_of_an_enhanced_ct_references_its_frames(
    archive: Archive, enhanced_ct: tuple[pydicom.Dataset, np.ndarray], tmp_path: Path
) -> None:
    ds, hu = enhanced_ct
    expected = hu > THRESHOLD_HU  # per frame, in frame order
    assert 0 < expected.sum() < expected.size
    package = load_package(make_segmentation_package(tmp_path / "seg", threshold_hu=THRESHOLD_HU))
    result = run_model(
        archive,
        package,
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        job_id=61,
    )
    sop = str(ds.SOPInstanceUID)

    # SEG: per source frame, voxel for voxel.
    seg_path = _path_of(archive, result.seg_sop_instance_uid)
    seg = hd.seg.segread(seg_path)
    frames = list(range(1, 21))
    mask = seg.get_pixels_by_source_frame(
        source_sop_instance_uid=sop, source_frame_numbers=frames, segment_numbers=[1]
    )[..., 0].astype(bool)
    np.testing.assert_array_equal(mask, expected)
    for item in seg.PerFrameFunctionalGroupsSequence:
        src = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert src.ReferencedSOPInstanceUID == sop and 1 <= src.ReferencedFrameNumber <= 20

    # Parametric map: frame k is sigmoid(HU - threshold) of the source frame it references.
    pmap_path = _path_of(archive, result.pmap_sop_instance_uid)
    pmap = pydicom.dcmread(pmap_path)
    values = np.asarray(pmap.pixel_array, dtype=np.float64)
    for k, item in enumerate(pmap.PerFrameFunctionalGroupsSequence):
        src = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert src.ReferencedSOPInstanceUID == sop
        np.testing.assert_allclose(values[k], expit(hu[src.ReferencedFrameNumber - 1] - THRESHOLD_HU), atol=2e-6)

    # The finding: the frame with the most voxels, its box on that frame.
    (finding,) = result.findings
    frame = int(np.argmax(expected.sum(axis=(1, 2)))) + 1
    assert finding.location["sop_instance_uid"] == sop and finding.location["frame"] == frame
    ys, xs = np.nonzero(expected[frame - 1])
    assert finding.location["bbox"] == [xs.min(), ys.min(), xs.max(), ys.max()]

    sr_path = _path_of(archive, result.sr_sop_instance_uid)
    # SR: the box lies on that frame of the source instance; the segment names the instance once.
    sr = pydicom.dcmread(sr_path)
    refs = [
        (str(ref.ReferencedSOPInstanceUID), [int(f) for f in _values(ref.get("ReferencedFrameNumber"))])
        for item in _walk(sr.ContentSequence)
        for ref in item.get("ReferencedSOPSequence", [])
        if str(ref.ReferencedSOPInstanceUID) != result.seg_sop_instance_uid
    ]
    assert refs, "the SR references no source image"
    assert all(uid == sop for uid, _ in refs)
    assert [f for _, frames in refs for f in frames] == [frame]
    assert len(refs) == 2  # the box's image (with its frame) and the segment's source instance (once)
    for path in (seg_path, pmap_path, sr_path):
        assert dciodvfy(path) == [], path.name


def _walk(items: Any) -> Any:
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
