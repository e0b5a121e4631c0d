"""The AI pipeline's parts on real data and real ONNX models: series loading and geometry,
sliding-window inference, resampling back onto the source grid, job-derived UIDs."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import onnxruntime as ort
import pydicom
import pytest
from pydicom.uid import UID, generate_uid
from sqlalchemy import select

from ai_testmodels import make_classification_package, make_segmentation_package, segmentation_graph
from dicom_factory import make_ct
from radsight.ai import inference, preprocess
from radsight.ai.package import Task, load_package
from radsight.ai.pipeline import PipelineError, run_model
from radsight.ai.results import ResultUIDs
from radsight.ai.tasks import RUNNERS
from radsight.ai.volume import load_series
from radsight.archive import Archive
from radsight.index.models import Instance, Series
from radsight.ingest.importer import import_paths

CT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "totalsegmentator" / "example_ct_dicom"


def _ingest(archive: Archive, ds: pydicom.Dataset, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)
    assert archive.ingest.ingest_file(path).ok


def test_load_series_sorts_along_the_normal_and_applies_rescale(archive: Archive, tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    # Instance numbers run against the positions, and the positions arrive shuffled.
    for i, z in enumerate([12.0, 0.0, 8.0, 4.0]):
        ds = make_ct(study_uid=study, series_uid=series, instance_number=10 - i)
        ds.ImagePositionPatient = [0, 0, z]
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
        ds.PixelData = np.full((16, 16), int(z), dtype=np.uint16).tobytes()
        _ingest(archive, ds, tmp_path / f"{i}.dcm")
    volume = load_series(archive, series)
    assert volume.array.shape == (4, 16, 16)
    np.testing.assert_array_equal(volume.array[:, 0, 0], [2 * z - 1000 for z in (0, 4, 8, 12)])
    assert volume.spacing == (4.0, 0.5, 0.5)
    assert [float(d.ImagePositionPatient[2]) for d in volume.datasets] == [0.0, 4.0, 8.0, 12.0]
    assert volume.is_3d and volume.voxel_volume_ml == pytest.approx(4 * 0.25 / 1000)


def test_load_2d_monochrome1_is_inverted_and_rgb_made_grey(archive: Archive, tmp_path: Path) -> None:
    ds = make_ct(modality="DX", rows=8, columns=8)
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    raw = np.arange(64, dtype=np.uint16).reshape(8, 8)
    ds.PixelData = raw.tobytes()
    _ingest(archive, ds, tmp_path / "m1.dcm")
    volume = load_series(archive, str(ds.SeriesInstanceUID))
    assert not volume.is_3d
    np.testing.assert_array_equal(volume.array[0], 63 - raw)  # bright = dense after inversion

    rgb = make_ct(modality="DX", rows=4, columns=4)
    del rgb.ImagePositionPatient, rgb.ImageOrientationPatient, rgb.RescaleSlope, rgb.RescaleIntercept
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 0
    rgb.BitsAllocated, rgb.BitsStored, rgb.HighBit = 8, 8, 7
    colours = np.zeros((4, 4, 3), dtype=np.uint8)
    colours[..., 0], colours[..., 1], colours[..., 2] = 200, 100, 50
    rgb.PixelData = colours.tobytes()
    _ingest(archive, rgb, tmp_path / "rgb.dcm")
    grey = load_series(archive, str(rgb.SeriesInstanceUID)).array[0]
    np.testing.assert_allclose(grey, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-6)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("shape", [(20, 70, 90), (5, 30, 40)])  # not a multiple of the patch; smaller than it
def test_sliding_window_equals_one_whole_volume_run(tmp_path: Path, mode: str, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(3)
    volume = rng.normal(150, 100, size=shape).astype(np.float32)
    sess = ort.InferenceSession(segmentation_graph(150.0).SerializeToString(), providers=["CPUExecutionProvider"])
    whole = sess.run(["probabilities"], {"input": volume[None, None]})[0][0]
    tiled = inference.sliding_window(
        sess,
        "input",
        "probabilities",
        volume,
        (16, 32, 32),
        overlap=0.25,
        mode=mode,  # type: ignore[arg-type]
    )
    assert tiled.shape == (2, *shape)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(tiled, axis=0), volume > 150.0)


def test_importance_map_is_gaussian_and_positive() -> None:
    weights = inference.importance_map((8, 16, 16), "gaussian")
    assert weights.shape == (8, 16, 16) and weights.min() > 0
    assert weights[4, 8, 8] > weights[0, 0, 0]
    np.testing.assert_array_equal(inference.importance_map((2, 3, 4), "constant"), np.ones((2, 3, 4)))


def test_to_shape_restores_the_source_grid_exactly() -> None:
    labels = np.zeros((20, 512, 512), dtype=np.uint8)
    labels[5:15, 100:300, 200:400] = 1
    factors = preprocess.spacing_factors((3.0, 0.9765625, 0.9765625), (5.0, 2.3, 2.3))
    small = preprocess.resample(labels, factors, order=0)
    back = preprocess.to_shape(small, labels.shape, order=0)
    assert back.shape == labels.shape
    assert np.mean(back == labels) > 0.99


@pytest.fixture
def ct(archive: Archive) -> tuple[str, str]:
    import_paths(archive.ingest, [CT_DIR], fill_missing_uids=True)
    with archive.db.session() as s:
        series = s.scalars(select(Series)).one()
        return series.study.study_instance_uid, series.series_instance_uid


def test_resampled_model_maps_back_onto_the_source_geometry(
    archive: Archive, ct: tuple[str, str], tmp_path: Path
) -> None:
    study, series = ct
    package = load_package(
        make_segmentation_package(tmp_path / "seg", spacing=[6.0, 2.0, 2.0], patch=(8, 64, 64), name="test-seg-2mm")
    )
    result = run_model(archive, package, study_instance_uid=study, series_instance_uid=series, job_id=5)
    volume = load_series(archive, series)
    expected = volume.array > 150.0
    with archive.db.session() as s:
        key = s.scalars(
            select(Instance.storage_key).where(Instance.sop_instance_uid == result.seg_sop_instance_uid)
        ).one()
    seg_path = archive.storage.local_path(key)
    assert seg_path is not None
    seg = hd.seg.segread(seg_path)
    uids = [str(d.SOPInstanceUID) for d in volume.datasets]
    mask = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0].astype(bool)
    assert mask.shape == expected.shape  # every source slice, row and column
    agreement = float(np.mean(mask == expected))
    assert agreement > 0.97, agreement  # resampled at 2 mm and back: edges differ, the body does not
    assert not np.array_equal(mask, expected)  # and it really was resampled


def test_result_uids_follow_the_job(tmp_path: Path) -> None:
    meta = load_package(make_classification_package(tmp_path / "cls")).metadata
    a, b = ResultUIDs.for_job(1, "1.2.3", meta), ResultUIDs.for_job(1, "1.2.3", meta)
    assert a == b
    assert ResultUIDs.for_job(2, "1.2.3", meta) != a
    assert ResultUIDs.for_job(1, "1.2.4", meta) != a  # another archive's job 1 on another series
    assert len({a.seg_sop, a.sr_sop, a.pmap_sop, a.seg_series, a.sr_series, a.pmap_series}) == 6


def test_wrong_modality_is_refused(archive: Archive, ct: tuple[str, str], tmp_path: Path) -> None:
    study, series = ct
    package = load_package(make_classification_package(tmp_path / "cls"))
    with pytest.raises(PipelineError, match="takes"):
        run_model(archive, package, study_instance_uid=study, series_instance_uid=series, job_id=1)
    with pytest.raises(PipelineError, match="belongs to study"):
        run_model(archive, package, study_instance_uid="1.2.3", series_instance_uid=series, job_id=1)


def test_every_task_a_package_may_declare_has_a_runner() -> None:
    assert set(RUNNERS) == set(Task)
    assert all(runner.__module__.startswith("radsight.ai.tasks.") for runner in RUNNERS.values())
