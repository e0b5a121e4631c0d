"""AI results end to end on real images: run_model -> SEG / SR / parametric map stored in the archive,
read back with highdicom, checked voxel for voxel against the test models' known functions, and
validated with dicom3tools' dciodvfy."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from scipy.special import expit
from sqlalchemy import func, select

from ai_testmodels import make_classification_package, make_segmentation_package
from radsight.ai.package import load_package
from radsight.ai.pipeline import PipelineResult, run_model
from radsight.ai.result_types import is_ai_result
from radsight.archive import Archive
from radsight.datasets.cxr import cxr_to_dicom
from radsight.index.models import Instance, Series
from radsight.ingest.importer import import_paths

CT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "totalsegmentator" / "example_ct_dicom"
CXR_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "kermany224" / "train" / "PNEUMONIA"
THRESHOLD_HU = 150.0
AI_LABEL = "AI generated - not for clinical use"


def _path_of(archive: Archive, sop_uid: str) -> Path:
    with archive.db.session() as s:
        key = s.scalars(select(Instance.storage_key).where(Instance.sop_instance_uid == sop_uid)).one()
    path = archive.storage.local_path(key)
    assert path is not None
    return path


def _instance_count(archive: Archive) -> int:
    with archive.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Instance)) or 0)


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's error lines (its warnings are printed for the log)."""
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = (proc.stderr + proc.stdout).splitlines()
    for line in lines:
        if line.startswith("Warning"):
            print(f"dciodvfy {path.name}: {line}")
    return [line for line in lines if line.startswith("Error")]


# The installed dciodvfy (dicom3tools 2022 snapshot) predates the Label Map Segmentation SOP
# Class (Sup 243, 2024): it finds no IOD for a label map SEG, and applies the BINARY SEG rule
# that segment numbers start at 1 to the background segment 0 that Sup 243 allows (highdicom
# writes it). Those two lines exactly, nothing else.
LABELMAP_SEG_VALIDATOR_GAP = [
    "Error - SegmentNumber not monotonically increasing from one by one - have SegmentSequence item "
    "number 1 (from one) with SegmentNumber of 0",
    "Error - Information Object Not found",
]
# The same dciodvfy does not know Label Map SEG as a segmentation class, so it refuses a segment
# number in an SR's reference to one (once per referenced segment); nothing else.
LABELMAP_SR_VALIDATOR_GAP = (
    "Error - Shall not be present for Referenced SOP Class that is not segmentation - "
    "attribute <ReferencedSegmentNumber>"
)


def _check_provenance(ds: pydicom.Dataset, study_uid: str, source_series: str, model: str, version: str) -> None:
    assert AI_LABEL in ds.SeriesDescription
    assert is_ai_result(modality=ds.Modality, sop_class_uid=ds.SOPClassUID, series_description=ds.SeriesDescription)
    assert ds.Manufacturer == "RadSight"
    assert ds.ManufacturerModelName == model
    assert ds.SoftwareVersions == version
    assert ds.StudyInstanceUID == study_uid
    assert ds.SeriesInstanceUID != source_series


def _source_hu(paths: list[Path]) -> tuple[list[str], np.ndarray]:
    """The source CT read independently of the pipeline: pydicom, sorted along the slice normal."""
    datasets = [pydicom.dcmread(p) for p in paths]
    normal = np.cross(
        np.array(datasets[0].ImageOrientationPatient[:3], float),
        np.array(datasets[0].ImageOrientationPatient[3:], float),
    )
    datasets.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), normal)))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets])
    return [str(d.SOPInstanceUID) for d in datasets], hu


@pytest.fixture
def ct_series(archive: Archive) -> tuple[str, str]:
    if not CT_DIR.is_dir():
        pytest.fail(f"shared CT data missing: {CT_DIR}")
    summary = import_paths(archive.ingest, [CT_DIR], fill_missing_uids=True)
    assert summary.counts["stored"] == 20, summary
    with archive.db.session() as s:
        series = s.scalars(select(Series)).one()
        return series.study.study_instance_uid, series.series_instance_uid


def test_ct_segmentation_seg_sr_pmap_exact_and_valid(
    archive: Archive, ct_series: tuple[str, str], tmp_path: Path
) -> None:
    study_uid, series_uid = ct_series
    with archive.db.session() as s:
        source_keys = s.scalars(select(Instance.storage_key)).all()
    source_paths = [p for p in (archive.storage.local_path(k) for k in source_keys) if p is not None]
    sop_uids, hu = _source_hu(source_paths)
    expected = hu > THRESHOLD_HU
    assert 0 < expected.sum() < expected.size  # the test can fail both ways

    package = load_package(make_segmentation_package(tmp_path / "seg", threshold_hu=THRESHOLD_HU))
    result = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=41)
    assert isinstance(result, PipelineResult)
    assert result.seg_sop_instance_uid and result.sr_sop_instance_uid and result.pmap_sop_instance_uid
    assert len(set(result.result_series_uids)) == 3

    # SEG: read back with highdicom, equal to HU > threshold on every source slice.
    seg_path = _path_of(archive, result.seg_sop_instance_uid)
    seg = hd.seg.segread(seg_path)
    _check_provenance(seg, study_uid, series_uid, "test-seg", "1.0")
    assert seg.SegmentationType == "BINARY"
    desc = seg.SegmentSequence[0]
    assert desc.SegmentedPropertyTypeCodeSequence[0].CodeValue == "272673000"
    assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    algo = desc.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmFamilyCodeSequence[0].CodeValue == codes.DCM.ArtificialIntelligence.value
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("test-seg", "1.0")
    mask = seg.get_pixels_by_source_instance(source_sop_instance_uids=sop_uids, segment_numbers=[1])
    assert mask.shape == (*expected.shape, 1)
    np.testing.assert_array_equal(mask[..., 0].astype(bool), expected)

    # Finding measurements: volume = voxel count x voxel volume.
    ref = pydicom.dcmread(source_paths[0], stop_before_pixels=True)
    positions = sorted(float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in source_paths)
    voxel_ml = float(ref.PixelSpacing[0]) * float(ref.PixelSpacing[1]) * (positions[1] - positions[0]) / 1000.0
    (finding,) = result.findings
    m = {x["name"]: x for x in finding.measurements}
    assert m["Voxel count"]["value"] == int(expected.sum())
    assert m["Volume"]["value"] == pytest.approx(expected.sum() * voxel_ml, rel=1e-9)
    assert m["Volume"]["unit"] == "mL"
    assert m["Mean attenuation"]["value"] == pytest.approx(float(hu[expected].mean()), rel=1e-5)
    assert m["Maximum attenuation"]["value"] == pytest.approx(float(hu[expected].max()))
    assert finding.positive and finding.probability is None
    z = int(np.argmax(expected.sum(axis=(1, 2))))
    assert finding.location["slice_index"] == z and finding.location["sop_instance_uid"] == sop_uids[z]
    ys, xs = np.nonzero(expected[z])
    assert finding.location["bbox"] == [xs.min(), ys.min(), xs.max(), ys.max()]

    # SR TID 1500: the measurements, referencing the SEG segment.
    sr_path = _path_of(archive, result.sr_sop_instance_uid)
    sr = hd.sr.srread(sr_path)
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    _check_provenance(sr, study_uid, series_uid, "test-seg", "1.0")
    (group,) = report.get_volumetric_roi_measurement_groups()
    volume = group.get_measurements(name=codes.SCT.Volume)[0]
    assert volume.value == pytest.approx(expected.sum() * voxel_ml, rel=1e-6)
    assert volume.unit.value == "mL"
    hu_values = sorted(
        x.value for x in group.get_measurements(name=hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient"))
    )
    assert hu_values == pytest.approx(sorted([float(hu[expected].mean()), float(hu[expected].max())]), rel=1e-5)
    assert (
        group.get_measurements(name=hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient"))[0].unit.value
        == "[hnsf'U]"
    )
    seg_ref = group.referenced_segment
    assert seg_ref is not None
    assert seg_ref.referenced_sop_instance_uid == result.seg_sop_instance_uid
    assert list(seg_ref.referenced_segment_numbers or []) == [1]
    referenced_sources = {i.referenced_sop_instance_uid for i in seg_ref.source_images_for_segmentation}
    assert referenced_sources == {
        u for u, k in zip(sop_uids, np.asarray(expected.any(axis=(1, 2))).tolist(), strict=True) if k
    }
    (planar,) = report.get_planar_roi_measurement_groups()
    assert planar.roi is not None
    evidence = {
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    }
    assert result.seg_sop_instance_uid in evidence and set(sop_uids) <= evidence

    # Parametric map: per-voxel sigmoid(HU - threshold) on the source grid.
    pmap_path = _path_of(archive, result.pmap_sop_instance_uid)
    pmap = pydicom.dcmread(pmap_path)
    _check_provenance(pmap, study_uid, series_uid, "test-seg", "1.0")
    frames = np.asarray(pmap.pixel_array, dtype=np.float64)
    assert frames.shape == hu.shape
    by_uid = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: i
        for i, f in enumerate(pmap.PerFrameFunctionalGroupsSequence)
    }
    order = [by_uid[u] for u in sop_uids]
    np.testing.assert_allclose(frames[order], expit(hu - THRESHOLD_HU), atol=2e-6)

    for path in (seg_path, sr_path, pmap_path):
        assert dciodvfy(path) == [], path.name

    # A retried job stores duplicates: same UIDs, no new instances.
    before = _instance_count(archive)
    again = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=41)
    assert (again.seg_sop_instance_uid, again.sr_sop_instance_uid, again.pmap_sop_instance_uid) == (
        result.seg_sop_instance_uid,
        result.sr_sop_instance_uid,
        result.pmap_sop_instance_uid,
    )
    assert _instance_count(archive) == before
    other = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=42)
    assert other.seg_sop_instance_uid != result.seg_sop_instance_uid
    assert _instance_count(archive) == before + 3


def _dx(archive: Archive, tmp_path: Path) -> tuple[str, str, np.ndarray]:
    jpeg = sorted(CXR_DIR.glob("*.jp*g"))[0]
    ds = cxr_to_dicom(jpeg, tmp_path / "cxr.dcm", label="PNEUMONIA", patient_id="AI-TEST-1")
    res = archive.ingest.ingest_file(tmp_path / "cxr.dcm")
    assert res.ok, res.message
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), ds.pixel_array.astype(np.float64)


def test_dx_classification_probability_and_heatmap(archive: Archive, tmp_path: Path) -> None:
    study_uid, series_uid, pixels = _dx(archive, tmp_path)
    gain = 10.0
    # Model input = the image size: no resampling, so the expectation is computed from the pixels alone.
    package = load_package(make_classification_package(tmp_path / "cls", gain=gain, size=pixels.shape, threshold=0.7))
    result = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=7)
    scaled = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    expected = 1.0 / (1.0 + np.exp(-gain * (scaled.mean() - 0.5)))
    (finding,) = result.findings
    assert finding.label == "Pneumonia"
    # float32 arithmetic in the model (a mean over 50,176 pixels, x gain 10): about 1e-6 of error.
    assert finding.probability == pytest.approx(expected, abs=1e-5)
    assert 0.5 < expected < 0.7  # the image's own value: above 0.5, below this package's threshold
    assert finding.positive is False
    assert not result.seg_sop_instance_uid
    assert result.pmap_sop_instance_uid and result.sr_sop_instance_uid

    pmap_path = _path_of(archive, result.pmap_sop_instance_uid)
    pmap = pydicom.dcmread(pmap_path)
    _check_provenance(pmap, study_uid, series_uid, "test-cls", "1.0")
    heat = np.asarray(pmap.pixel_array, dtype=np.float64)
    np.testing.assert_allclose(heat, scaled, atol=1e-6)
    src = pmap.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert src.ReferencedSOPInstanceUID == finding.location["sop_instance_uid"]

    sr_path = _path_of(archive, result.sr_sop_instance_uid)
    sr = hd.sr.srread(sr_path)
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    _check_provenance(sr, study_uid, series_uid, "test-cls", "1.0")
    (group,) = report.get_image_measurement_groups()
    (prob,) = group.get_measurements(name=codes.DCM.Probability)
    assert prob.value == pytest.approx(finding.probability, abs=1e-12)
    assert prob.unit.value == "1"
    assert group.finding_type is not None and group.finding_type.value == "233604007"
    for path in (pmap_path, sr_path):
        assert dciodvfy(path) == [], path.name


def test_dx_resized_heatmap_maps_back_to_the_source_size(archive: Archive, tmp_path: Path) -> None:
    study_uid, series_uid, pixels = _dx(archive, tmp_path)
    package = load_package(make_classification_package(tmp_path / "cls64", size=(64, 64)))
    result = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=8)
    heat = pydicom.dcmread(_path_of(archive, result.pmap_sop_instance_uid)).pixel_array
    assert heat.shape == pixels.shape
    # The heatmap is the min/max-scaled image, downsampled and back: close to the image, not equal.
    scaled = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    assert np.corrcoef(heat.ravel(), scaled.ravel())[0, 1] > 0.9
    assert 0.0 <= result.findings[0].probability <= 1.0  # type: ignore[operator]


def test_is_ai_result_tells_results_from_source_images() -> None:
    assert not is_ai_result(modality="CT", sop_class_uid="1.2.840.10008.5.1.4.1.1.2", series_description="Thorax")
    assert not is_ai_result(modality="DX", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1")
    assert is_ai_result(modality="seg", sop_class_uid="")  # the modality alone
    assert is_ai_result(modality="OT", sop_class_uid="1.2.840.10008.5.1.4.1.1.30")  # a parametric map
    assert is_ai_result(modality="OT", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34")  # any SR
    assert is_ai_result(modality="OT", sop_class_uid="1.2.840.10008.5.1.4.1.1.7", series_description=f"{AI_LABEL}: x")


def test_dciodvfy_is_installed() -> None:
    assert shutil.which("dciodvfy"), "dicom3tools' dciodvfy is needed to validate AI results"


SOFT_HU, DENSE_HU = -200.5, 150.5  # half-integer thresholds: no voxel (integer HU) ties between labels


def _two_label_expectation(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two-label test model's probabilities and argmax label map, from HU alone."""
    s1, s2 = expit(hu - SOFT_HU), expit(hu - DENSE_HU)
    probs = np.stack([1 - s1, s1 * (1 - s2), s1 * s2])
    return probs[1], probs[2], np.argmax(probs, axis=0)


def _ct_sources(archive: Archive) -> tuple[list[str], np.ndarray]:
    with archive.db.session() as s:
        keys = s.scalars(select(Instance.storage_key)).all()
    return _source_hu([p for p in (archive.storage.local_path(k) for k in keys) if p is not None])


def _pmap_frames_by_source(pmap: pydicom.Dataset, sop_uids: list[str]) -> np.ndarray:
    frames = np.asarray(pmap.pixel_array, dtype=np.float64)
    by_uid = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: i
        for i, f in enumerate(pmap.PerFrameFunctionalGroupsSequence)
    }
    return frames[[by_uid[u] for u in sop_uids]]


# Content / creation / contribution date and time (the moment each object was made) and the
# Dimension Organization UID (highdicom mints a new one for each object).
_WHEN = {"00080023", "00080033", "00080012", "00080013", "0018A002", "00209164"}


def _timeless(ds: pydicom.Dataset) -> dict[str, object]:
    """``ds`` as DICOM JSON (as written to a file and read back), without the times it was made."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)

    def strip(node: object) -> object:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in _WHEN}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(pydicom.dcmread(buf).to_json_dict(bulk_data_threshold=1 << 40))  # type: ignore[return-value]


def test_every_segmentation_label_has_its_own_parametric_map(
    archive: Archive, ct_series: tuple[str, str], tmp_path: Path
) -> None:
    from radsight.ai.results import ResultUIDs
    from radsight.ai.results.pmap import build_parametric_map
    from radsight.ai.volume import load_series

    study_uid, series_uid = ct_series
    sop_uids, hu = _ct_sources(archive)
    p_soft, p_dense, labels = _two_label_expectation(hu)
    assert {0, 1, 2} <= set(np.unique(labels).tolist())
    package = load_package(
        make_segmentation_package(tmp_path / "seg2", name="test-seg2", threshold_hu=SOFT_HU, dense_hu=DENSE_HU)
    )
    result = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=51)
    soft, dense = result.findings
    assert (soft.label, dense.label) == ("Soft tissue", "Dense tissue")
    uids = ResultUIDs.for_job(51, series_uid, package.metadata)
    # The first label's map keeps the UID results had before there was one map per label.
    assert soft.pmap_sop_instance_uid == result.pmap_sop_instance_uid == uids.pmap_sop
    assert dense.pmap_sop_instance_uid == uids.pmap_sop_for(2, first=False) != uids.pmap_sop
    assert len(set(result.result_series_uids)) == 3  # SEG, the maps' series, SR

    paths = {}
    for finding, expected, number in ((soft, p_soft, 1), (dense, p_dense, 2)):
        path = paths[number] = _path_of(archive, finding.pmap_sop_instance_uid)
        pmap = pydicom.dcmread(path)
        _check_provenance(pmap, study_uid, series_uid, "test-seg2", "1.0")
        assert pmap.SeriesInstanceUID == uids.pmap_series and pmap.InstanceNumber == number
        assert finding.label in pmap.ContentDescription
        rwvm = pmap.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert rwvm.LUTExplanation == f"test-seg2 {finding.label}"
        quantity = rwvm.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
        label = next(lab for lab in package.metadata.labels if lab.name == finding.label)
        assert quantity.CodeValue == label.type.value
        values = _pmap_frames_by_source(pmap, sop_uids)
        # float32 in the model and in the map: products of two sigmoids within a few 1e-7.
        np.testing.assert_allclose(values, expected, atol=2e-6)
        assert rwvm.DoubleFloatRealWorldValueFirstValueMapped == pytest.approx(values.min(), abs=1e-6)
        assert rwvm.DoubleFloatRealWorldValueLastValueMapped == pytest.approx(values.max(), abs=1e-6)
        assert dciodvfy(path) == [], path.name

    # The second map shares the first's frames (pipeline.sibling_parametric_map): it equals the map
    # highdicom builds for that label, element for element (pixels and content time aside).
    volume = load_series(archive, series_uid)
    built = build_parametric_map(
        volume,
        np.asarray(pydicom.dcmread(paths[2]).pixel_array)[  # the stored pixels, back in volume order
            [
                {
                    f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: i
                    for i, f in enumerate(pydicom.dcmread(paths[2]).PerFrameFunctionalGroupsSequence)
                }[str(d.SOPInstanceUID)]
                for d in volume.datasets
            ]
        ],
        package.metadata,
        uids,
        label=package.metadata.labels[1],
        sop_instance_uid=dense.pmap_sop_instance_uid,
        instance_number=2,
    )
    stored = pydicom.dcmread(paths[2])
    assert _timeless(stored) == _timeless(built)

    # The SEG: both labels as segments, voxel for voxel the model's argmax.
    seg = hd.seg.segread(_path_of(archive, result.seg_sop_instance_uid))
    assert seg.SegmentationType == "BINARY"
    mask = seg.get_pixels_by_source_instance(source_sop_instance_uids=sop_uids, segment_numbers=[1, 2])
    np.testing.assert_array_equal(mask[..., 0].astype(bool), labels == 1)
    np.testing.assert_array_equal(mask[..., 1].astype(bool), labels == 2)


def test_labelmap_seg_setting(db_url: str, tmp_path: Path) -> None:
    from conftest import make_settings

    archive = Archive.open(make_settings(tmp_path / "home", db_url, ai_seg_type="labelmap"))
    try:
        summary = import_paths(archive.ingest, [CT_DIR], fill_missing_uids=True)
        assert summary.counts["stored"] == 20, summary
        with archive.db.session() as s:
            series = s.scalars(select(Series)).one()
            study_uid, series_uid = series.study.study_instance_uid, series.series_instance_uid
        sop_uids, hu = _ct_sources(archive)
        _, _, labels = _two_label_expectation(hu)
        package = load_package(
            make_segmentation_package(tmp_path / "seg2", name="test-seg2", threshold_hu=SOFT_HU, dense_hu=DENSE_HU)
        )
        result = run_model(archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=52)
        path = _path_of(archive, result.seg_sop_instance_uid)
        raw = pydicom.dcmread(path)
        assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"  # Label Map Segmentation Storage
        assert raw.BitsAllocated == 8 and raw.PhotometricInterpretation == "MONOCHROME2"
        # One frame per source slice with voxels, each the segment numbers themselves.
        assert raw.NumberOfFrames == int(np.count_nonzero(labels.any(axis=(1, 2))))
        assert set(np.unique(raw.pixel_array).tolist()) == {0, 1, 2}
        seg = hd.seg.segread(path)
        _check_provenance(seg, study_uid, series_uid, "test-seg2", "1.0")
        assert seg.SegmentationType == "LABELMAP"
        # highdicom describes the background (segment 0) of a label map SEG as well.
        assert [(d.SegmentNumber, d.SegmentLabel) for d in seg.SegmentSequence] == [
            (0, "Background"),
            (1, "Soft tissue"),
            (2, "Dense tissue"),
        ]
        got = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=sop_uids, segment_numbers=[1, 2], combine_segments=True
        )
        np.testing.assert_array_equal(got, labels)  # voxel for voxel the model's argmax
        assert dciodvfy(path) == LABELMAP_SEG_VALIDATOR_GAP, path.name
        # The SR still references the segments by number in the label map SEG.
        sr = hd.sr.srread(_path_of(archive, result.sr_sop_instance_uid))
        report = sr.content
        assert isinstance(report, hd.sr.MeasurementReport)
        refs = [g.referenced_segment for g in report.get_volumetric_roi_measurement_groups()]
        assert [r.referenced_sop_instance_uid for r in refs if r] == [result.seg_sop_instance_uid] * 2
        assert dciodvfy(_path_of(archive, result.sr_sop_instance_uid)) == [LABELMAP_SR_VALIDATOR_GAP] * 2
    finally:
        archive.close()
