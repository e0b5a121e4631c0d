"""Detection models end to end: tiny real ONNX detectors whose boxes are an exact function of the
image (the bounding box of the pixels above half the normalised range), run on a real chest X-ray
with a bright square and on a small CT series with a bright cube; boxes mapped back onto the source
grid, the SR TID 1500 read back with highdicom and validated with dciodvfy, and the finding served
by the findings API after the engine's worker ran the job."""

from __future__ import annotations

import io
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import onnx
import onnxruntime as ort
import pydicom
import pytest
from onnx import TensorProto, helper
from PIL import Image
from playwright.sync_api import Page
from pydicom.sr.codedict import codes

from ai_testmodels import OPSET, _save
from conftest import RunningServer, start_server
from dicom_factory import make_ct
from radsight.ai import registry
from radsight.ai.package import METADATA_FILE, ModelPackageError, load_package
from radsight.ai.pipeline import PipelineError, run_model
from radsight.ai.worker import WorkerPool
from radsight.archive import Archive
from radsight.datasets.cxr import cxr_to_dicom
from test_ai_results import _path_of, dciodvfy
from test_viewer_ai import open_study
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, browser, page

__all__ = ["browser", "page"]  # fixtures used here

CXR_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "kermany224" / "train" / "NORMAL"
ABNORMAL = {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically abnormal structure"}
NODULE = {"value": "27925004", "scheme": "SCT", "meaning": "Nodule"}
MASS = {"value": "4147007", "scheme": "SCT", "meaning": "Mass"}
TOP_SCORE = 0.875  # box 1's score: 0.875 x the image maximum (1 after normalisation)


def _fixed_boxes(dims: int) -> list[list[float]]:
    """Boxes 2 and 3 (model grid), whatever the image: one kept by its label's threshold, one not."""
    if dims == 2:
        return [[1, 2, 5, 6], [3, 3, 8, 9]]
    return [[1, 2, 0, 3, 4, 1], [2, 2, 1, 4, 5, 2]]


def detection_graph(size: list[int]) -> onnx.ModelProto:
    """boxes [3, 2 x dims], scores [3], labels [3].

    Box 1: first and last index, per axis, of the pixels above 0.5 (label 0, score 0.875 x max).
    Box 2: fixed, label 1, score 0.4 (label 1's threshold is 0.3: kept).
    Box 3: fixed, label 0, score 0.4 (label 0's threshold is 0.5: dropped).
    """
    dims = len(size)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, *size])
    outs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [3, 2 * dims]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [3]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, [3]),
    ]
    nodes = [
        helper.make_node("Greater", ["input", "half"], ["above"]),
        helper.make_node("Cast", ["above"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask"], ["outside"]),
    ]
    init = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("big", TensorProto.FLOAT, [], [1e6]),
        helper.make_tensor("shape1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("box_shape", TensorProto.INT64, [2], [1, 2 * dims]),
        helper.make_tensor("top", TensorProto.FLOAT, [], [TOP_SCORE]),
        helper.make_tensor("fixed_boxes", TensorProto.FLOAT, [2, 2 * dims], [v for b in _fixed_boxes(dims) for v in b]),
        helper.make_tensor("fixed_scores", TensorProto.FLOAT, [2], [0.4, 0.4]),
    ]
    # Box columns are x, y[, z]: the array axes from the last one back.
    firsts, lasts = [], []
    for c in range(dims):
        axis = 2 + dims - 1 - c
        n = size[axis - 2]
        others = [a for a in range(2 + dims) if a != axis]
        init.append(helper.make_tensor(f"ramp{c}", TensorProto.FLOAT, [n], list(range(n))))
        nodes += [
            helper.make_node("ReduceMax", ["mask"], [f"any{c}"], axes=others, keepdims=0),
            helper.make_node("Mul", [f"any{c}", f"ramp{c}"], [f"at{c}"]),
            helper.make_node("ReduceMax", [f"at{c}"], [f"last{c}_"], keepdims=0),
            helper.make_node("Reshape", [f"last{c}_", "shape1"], [f"last{c}"]),
            helper.make_node("Sub", ["one", f"any{c}"], [f"none{c}"]),
            helper.make_node("Mul", [f"none{c}", "big"], [f"far{c}"]),
            helper.make_node("Add", [f"at{c}", f"far{c}"], [f"at_or_far{c}"]),
            helper.make_node("ReduceMin", [f"at_or_far{c}"], [f"first{c}_"], keepdims=0),
            helper.make_node("Reshape", [f"first{c}_", "shape1"], [f"first{c}"]),
        ]
        firsts.append(f"first{c}")
        lasts.append(f"last{c}")
    nodes += [
        helper.make_node("Concat", [*firsts, *lasts], ["box1_flat"], axis=0),
        helper.make_node("Reshape", ["box1_flat", "box_shape"], ["box1"]),
        helper.make_node("Concat", ["box1", "fixed_boxes"], ["boxes"], axis=0),
        helper.make_node("ReduceMax", ["input"], ["max_"], keepdims=0),
        helper.make_node("Mul", ["max_", "top"], ["score1_"]),
        helper.make_node("Reshape", ["score1_", "shape1"], ["score1"]),
        helper.make_node("Concat", ["score1", "fixed_scores"], ["scores"], axis=0),
        helper.make_node(
            "Constant", [], ["labels"], value=helper.make_tensor("label_values", TensorProto.INT64, [3], [0, 1, 0])
        ),
    ]
    graph = helper.make_graph(nodes, "bright-box", [x], outs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


def make_detection_package(dest: Path, *, size: list[int], name: str = "test-det") -> Path:
    dims = len(size)
    meta: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "version": "1.0",
        "task": "detection",
        "description": "Test model: the bounding box of the bright pixels",
        "intended_use": "Testing the RadSight AI engine. Not for clinical use.",
        "input": {
            "modality": ["CR", "DX"] if dims == 2 else ["CT"],
            "dimensions": dims,
            "spacing": None,
            "size": size,
            "normalisation": {"mode": "minmax"} if dims == 2 else {"mode": "fixed", "low": -1000, "high": 1000},
            "input_name": "input",
        },
        "outputs": [
            {"name": "boxes", "kind": "boxes"},
            {"name": "scores", "kind": "scores"},
            {"name": "labels", "kind": "labels"},
        ],
        "labels": [
            {"index": 0, "name": "Nodule", "category": ABNORMAL, "type": NODULE, "threshold": 0.5},
            {"index": 1, "name": "Mass", "category": ABNORMAL, "type": MASS, "threshold": 0.3},
        ],
    }
    return _save(detection_graph(size), dest, meta)


def _dx_with_square(tmp_path: Path, patient_id: str = "DET-1") -> pydicom.Dataset:
    """A real chest X-ray cropped to 217 x 211 (model 109 x 71: source index = 2 x row, 3 x column)
    and darkened to <= 85, with a square of 255 at rows 40..100, columns 30..150."""
    jpeg = sorted(CXR_DIR.glob("*.jp*g"))[0]
    ds = cxr_to_dicom(jpeg, tmp_path / "full.dcm", label="NORMAL", patient_id=patient_id)
    pixels = (ds.pixel_array[:217, :211] // 3).astype(np.uint8)
    pixels[40:101, 30:151] = 255
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "dx.dcm", enforce_file_format=True)
    return ds


def test_detection_package_loads_and_computes_the_box(tmp_path: Path) -> None:
    pkg = load_package(make_detection_package(tmp_path / "det", size=[9, 12]))
    assert pkg.metadata.task == "detection"
    img = np.zeros((1, 1, 9, 12), dtype=np.float32)
    img[0, 0, 2:5, 3:10] = 1.0
    boxes, scores, labels = ort.InferenceSession(str(pkg.weights)).run(None, {"input": img})
    assert boxes.tolist() == [[3, 2, 9, 4], *_fixed_boxes(2)]
    assert scores.tolist() == pytest.approx([TOP_SCORE, 0.4, 0.4])
    assert labels.tolist() == [0, 1, 0]


def test_malformed_detection_packages_are_refused_with_reason(tmp_path: Path) -> None:
    good = make_detection_package(tmp_path / "good", size=[9, 12])

    def variant(name: str, change: Any) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        meta = json.loads((d / METADATA_FILE).read_text())
        change(meta)
        (d / METADATA_FILE).write_text(json.dumps(meta))
        return d

    no_scores = variant("no-scores", lambda m: m["outputs"].pop(1))
    with pytest.raises(ModelPackageError, match="exactly one output of kind 'scores'"):
        load_package(no_scores)
    no_labels = variant("no-labels", lambda m: m["outputs"].pop(2))
    with pytest.raises(ModelPackageError, match="2 labels needs an output of kind 'labels'"):
        load_package(no_labels)
    spacing = variant("spacing", lambda m: m["input"].update(spacing=[1.0, 1.0]))
    with pytest.raises(ModelPackageError, match=r"input\.spacing must be null"):
        load_package(spacing)
    softmax = variant("softmax", lambda m: m["outputs"][1].update(activation="softmax"))
    with pytest.raises(ModelPackageError, match="not a softmax"):
        load_package(softmax)
    segmentation = variant("seg-with-boxes", lambda m: m.update(task="segmentation"))
    with pytest.raises(ModelPackageError, match=r"\['boxes', 'labels', 'scores'\] are only for task 'detection'"):
        load_package(segmentation)
    # A 3D package whose graph gives 4 values per box (a 2D graph): refused when the graph is read.
    three_d = variant("3d-meta-2d-graph", lambda m: m["input"].update(dimensions=3, size=[4, 9, 12], modality=["CT"]))
    with pytest.raises(ModelPackageError, match="has 4 values per box; a 3D detection model gives 6"):
        load_package(three_d)


def test_dx_boxes_map_back_to_the_source_image_and_the_sr_holds_them(archive: Archive, tmp_path: Path) -> None:
    ds = _dx_with_square(tmp_path)
    assert archive.ingest.ingest_file(tmp_path / "dx.dcm").ok
    study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    package = load_package(make_detection_package(tmp_path / "det", size=[109, 71]))
    result = run_model(archive, package, study_instance_uid=study, series_instance_uid=series, job_id=5)

    # Model grid: square rows 20..50, columns 10..50 -> source rows 40..100, columns 30..150 (x 2, x 3).
    # Box 2 (label Mass, 0.4 >= 0.3): model [1, 2, 5, 6] -> source [3, 4, 15, 12]. Box 3 (Nodule, 0.4 < 0.5): dropped.
    expected = [("Nodule", TOP_SCORE, [30.0, 40.0, 150.0, 100.0]), ("Mass", 0.4, [3.0, 4.0, 15.0, 12.0])]
    assert [(f.label, f.location["bbox"]) for f in result.findings] == [(n, b) for n, _, b in expected]
    for f, (_, p, _) in zip(result.findings, expected, strict=True):
        assert f.probability == pytest.approx(p, abs=1e-6) and f.positive
        assert f.location["sop_instance_uid"] == sop and f.location["series_instance_uid"] == series
        assert (f.location["frame"], f.location["slice_index"]) == (1, 0)
        assert f.measurements == [{"name": "Probability", "value": f.probability, "unit": "1"}]
    assert result.findings[0].location["point"] == [90.0, 70.0]
    assert not result.seg_sop_instance_uid and not result.pmap_sop_instance_uid
    assert result.result_series_uids and result.sr_sop_instance_uid

    sr_path = _path_of(archive, result.sr_sop_instance_uid)
    assert dciodvfy(sr_path) == []
    sr = hd.sr.srread(sr_path)
    assert "AI generated" in sr.SeriesDescription and sr.ManufacturerModelName == "test-det"
    assert sr.SoftwareVersions == "1.0" and sr.StudyInstanceUID == study
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_planar_roi_measurement_groups()
    assert len(groups) == 2
    for group, (name, p, (x0, y0, x1, y1)) in zip(groups, expected, strict=True):
        assert group.finding_type is not None and group.finding_type.meaning == name
        (prob,) = group.get_measurements(name=codes.DCM.Probability)
        assert prob.value == pytest.approx(p, abs=1e-6) and prob.unit.value == "1"
        roi = group.roi
        assert isinstance(roi, hd.sr.ImageRegion) and roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        # SCOORD is of pixel edges: the last pixel's far edge is x1 + 1.
        corners = [[x0, y0], [x1 + 1, y0], [x1 + 1, y1 + 1], [x0, y1 + 1], [x0, y0]]
        np.testing.assert_array_equal(roi.value, np.array(corners, dtype=np.float32))
        assert roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sop


def _ct_series_with_cube(tmp_path: Path) -> tuple[list[Path], list[str]]:
    """13 slices of 41 x 37 (spacing 2.5 mm, pixels 0.6 x 0.8 mm), air with a +1000 HU cube at slices 4..8,
    rows 10..30, columns 8..24; instance numbers run against the position. Returns the files (shuffled)
    and the SOP Instance UIDs in position order."""
    study, series, frame = pydicom.uid.generate_uid(), pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    paths, sops = [], []
    for k in range(13):
        ds = make_ct(
            study_uid=study, series_uid=series, rows=41, columns=37, instance_number=13 - k, patient_id="DET-CT"
        )
        ds.FrameOfReferenceUID = frame
        ds.ImagePositionPatient = [-20.0, -10.0, 50.0 + 2.5 * k]
        ds.PixelSpacing = [0.6, 0.8]
        ds.SliceThickness = 2.5
        pixels = np.zeros((41, 37), dtype=np.uint16)  # stored 0 = -1024 HU
        if 4 <= k <= 8:
            pixels[10:31, 8:25] = 2024  # +1000 HU
        ds.PixelData = pixels.tobytes()
        path = tmp_path / f"ct{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        sops.append(str(ds.SOPInstanceUID))
    random.Random(4).shuffle(paths)
    return paths, sops


def test_ct_cuboid_maps_to_source_voxels_and_patient_coordinates(archive: Archive, tmp_path: Path) -> None:
    paths, sops = _ct_series_with_cube(tmp_path)
    for p in paths:
        assert archive.ingest.ingest_file(p).ok
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    # Model grid (7, 21, 10): source index = 2 x slice, 2 x row, 4 x column.
    package = load_package(make_detection_package(tmp_path / "det3", size=[7, 21, 10], name="test-det3d"))
    result = run_model(archive, package, study_instance_uid=study, series_instance_uid=series, job_id=9)

    cube, fixed = result.findings
    assert (cube.label, fixed.label) == ("Nodule", "Mass")
    assert cube.location["bbox3d"] == [8.0, 10.0, 4.0, 24.0, 30.0, 8.0]
    assert fixed.location["bbox3d"] == [4.0, 4.0, 0.0, 12.0, 8.0, 2.0]  # model [1, 2, 0, 3, 4, 1]
    assert cube.location["bbox"] == [8.0, 10.0, 24.0, 30.0]
    assert cube.location["slice_index"] == 6 and cube.location["sop_instance_uid"] == sops[6]
    assert fixed.location["slice_index"] == 1 and fixed.location["sop_instance_uid"] == sops[1]
    # Centre (16, 20, 6) -> origin + 16 x 0.8, 20 x 0.6, 6 x 2.5 mm.
    assert cube.location["centre_patient"] == pytest.approx([-7.2, 2.0, 65.0], abs=1e-9)
    assert cube.probability == pytest.approx(TOP_SCORE, abs=1e-6)

    sr_path = _path_of(archive, result.sr_sop_instance_uid)
    assert dciodvfy(sr_path) == []
    report = hd.sr.srread(sr_path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    group = report.get_planar_roi_measurement_groups()[0]
    roi = group.roi
    assert isinstance(roi, hd.sr.ImageRegion3D) and roi.graphic_type == hd.sr.GraphicTypeValues3D.POLYGON
    assert roi.ReferencedFrameOfReferenceUID == first.FrameOfReferenceUID
    # The box's rectangle through its centre (z = 65 mm), at the pixel edges: x 7.5..24.5, y 9.5..30.5.
    xs, ys = [-20 + 7.5 * 0.8, -20 + 24.5 * 0.8], [-10 + 9.5 * 0.6, -10 + 30.5 * 0.6]
    rect = [[xs[0], ys[0], 65], [xs[1], ys[0], 65], [xs[1], ys[1], 65], [xs[0], ys[1], 65], [xs[0], ys[0], 65]]
    np.testing.assert_allclose(roi.value, rect, atol=1e-4)
    (prob,) = group.get_measurements(name=codes.DCM.Probability)
    assert prob.value == pytest.approx(TOP_SCORE, abs=1e-6)
    assert [i.referenced_sop_instance_uid for i in prob.referenced_images] == [sops[6]]


def test_a_3d_detector_refuses_a_single_image(archive: Archive, tmp_path: Path) -> None:
    ds = make_ct(tmp_path / "one.dcm", patient_id="DET-ONE")
    assert archive.ingest.ingest_file(tmp_path / "one.dcm").ok
    package = load_package(make_detection_package(tmp_path / "det3", size=[4, 8, 8], name="test-det3d"))
    with pytest.raises(PipelineError, match="not a volume"):
        run_model(
            archive,
            package,
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            job_id=1,
        )


def test_engine_runs_the_detector_and_the_findings_api_serves_the_box(server: RunningServer, tmp_path: Path) -> None:
    archive = server.archive
    ds = _dx_with_square(tmp_path, patient_id=f"DET-{tmp_path.name[-12:]}")
    assert archive.ingest.ingest_file(tmp_path / "dx.dcm").ok
    study = str(ds.StudyInstanceUID)
    with archive.db.session() as s:
        installed = {m.name for m in registry.list_models(s)}
    if "test-det" not in installed:
        registry.install(archive, make_detection_package(tmp_path / "det", size=[109, 71]))
    with server.client() as c:
        r = c.post(f"/api/studies/{study}/ai/run", json={"model": "test-det"})
        assert r.status_code == 202, r.text
        (job_id,) = r.json()["job_ids"]
        pool = WorkerPool(archive, 1, poll_seconds=0.1)
        pool.start()
        try:
            from test_ai_jobs import wait_for

            wait_for(lambda: c.get(f"/api/jobs/{job_id}").json()["state"] in ("done", "failed"), 180, "the job")
        finally:
            pool.stop()
        job = c.get(f"/api/jobs/{job_id}").json()
        assert job["state"] == "done", job["error"]
        listed = c.get(f"/api/studies/{study}/findings")
        assert listed.status_code == 200
        items = sorted(listed.json(), key=lambda f: -f["probability"])
    assert [(f["label"], f["location"]["bbox"], f["model"]) for f in items] == [
        ("Nodule", [30.0, 40.0, 150.0, 100.0], "test-det"),
        ("Mass", [3.0, 4.0, 15.0, 12.0], "test-det"),
    ]
    assert items[0]["location"]["sop_instance_uid"] == str(ds.SOPInstanceUID)
    assert items[0]["probability"] == pytest.approx(TOP_SCORE, abs=1e-6)
    assert items[0]["sr_sop_instance_uid"] == job["result"]["sr_sop_instance_uid"]


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    home = tmp_path_factory.mktemp("viewer-det")
    running, stop, _ = start_server(home / "home", f"sqlite:///{home / 'index.sqlite'}")
    try:
        yield running
    finally:
        stop()  # type: ignore[operator]


def _longest_run(mask: np.ndarray) -> int:
    """The longest run of True along the last axis, over all rows."""
    best = 0
    for row in mask:
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if len(starts):
            best = max(best, int((ends - starts).max()))
    return best


def test_viewer_draws_the_detected_box_on_the_source_image(
    viewer_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    from radsight.ai import jobs
    from radsight.ai.engine import request_run
    from test_ai_jobs import job_state, wait_for

    archive = viewer_server.archive
    ds = _dx_with_square(tmp_path, patient_id="DET-VIEWER")
    assert archive.ingest.ingest_file(tmp_path / "dx.dcm").ok
    study = str(ds.StudyInstanceUID)
    registry.install(archive, make_detection_package(tmp_path / "det", size=[109, 71]))
    (job,) = request_run(archive, study, model_name="test-det", trigger="manual")
    pool = WorkerPool(archive, 1, poll_seconds=0.1)
    pool.start()
    try:
        wait_for(lambda: job_state(archive, job.id).state in (jobs.DONE, jobs.FAILED), 120, "the job")
    finally:
        pool.stop()
    assert job_state(archive, job.id).state == jobs.DONE, job_state(archive, job.id).error

    open_study(page, viewer_server, study)
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] === 2", timeout=TIMEOUT_MS)  # both boxes
    page.wait_for_timeout(300)
    png = page.locator(".vp[data-viewport='0']").screenshot(animations="disabled")
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    # Pending findings are drawn in #ffb000 on a grey image: the marks are the orange pixels.
    orange = (rgb[..., 0] > 200) & (rgb[..., 1] > 120) & (rgb[..., 1] < 220) & (rgb[..., 2] < 90)
    width, height = _longest_run(orange), _longest_run(orange.T)
    assert width > 20 and height > 10, (width, height)
    # The Nodule box spans 120 x 60 source pixels (square pixels): drawn twice as wide as tall.
    # (Unmapped model-grid boxes would be 40 x 30.)
    assert width / height == pytest.approx(2.0, rel=0.1)
