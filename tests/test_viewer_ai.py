"""AI results in the viewer, in a real browser (Debian's Chromium via Playwright) against a real
``radsight serve``: SEG labelmap overlays, parametric-map heatmaps, and the findings panel.

Real objects: dcmqi's liver SEG on its 3-slice CT (the CT it references, same study), a
parametric map made here with highdicom on the same CT (the way the AI pipeline makes them),
and the AI pipeline's own SEG / SR / parametric map from the test segmentation model on the
20-slice CT. Assertions are on pixels (overlay shown vs hidden) and the DOM.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from playwright.sync_api import Page

from ai_testmodels import make_segmentation_package
from conftest import ADMIN_USER, RunningServer, start_server
from radsight.ingest.importer import import_paths
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, browser, login, page, state, wait_first_image

__all__ = ["browser", "page"]  # fixtures used here

DCMQI = "dicom/dcmqi/segmentations"
LIVER_STUDY = "1.2.392.200103.20080913.113635.0.2009.6.22.21.43.10.22941.1"
AI_NOTICE = "AI generated - not for clinical use"


def _pmap_for(ct_dir: Path, dest: Path, description: str = f"Heatmap - {AI_NOTICE}", copies: int = 1) -> list[Path]:
    """A float parametric map on the 3-slice CT: a bright disc (1.0) fading out, 0 outside;
    ``copies`` instances of it in one series."""
    sources = sorted((pydicom.dcmread(p) for p in ct_dir.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))
    for ds in sources:
        if not ds.get("SpecificCharacterSet"):
            ds.pop("SpecificCharacterSet", None)  # empty in these files; highdicom wants none or a value
    rows, cols = sources[0].Rows, sources[0].Columns
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = np.hypot(yy - rows * 0.5, xx - cols * 0.5) / (rows * 0.25)
    values = np.repeat(np.clip(1.0 - r, 0.0, 1.0)[None].astype(np.float32), len(sources), axis=0)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="AI_PROB",
        lut_explanation="test probability",
        unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
        value_range=(0.0, 1.0),
        slope=1.0,
        intercept=0.0,
    )
    series_uid = hd.UID()
    out = []
    for n in range(1, copies + 1):
        pm = _pmap(sources, values, mapping, series_uid, n)
        pm.SeriesDescription = description
        out.append(dest / f"pmap-{series_uid}-{n}.dcm")
        pm.save_as(out[-1])
    return out


def _pmap(
    sources: Sequence[pydicom.Dataset],
    values: np.ndarray,
    mapping: hd.pm.RealWorldValueMapping,
    series_uid: str,
    n: int,
) -> hd.pm.ParametricMap:
    return hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=values,
        series_instance_uid=series_uid,
        series_number=9102,
        sop_instance_uid=hd.UID(),
        instance_number=n,
        manufacturer="RadSight tests",
        manufacturer_model_name="viewer test",
        software_versions="1",
        device_serial_number="1",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_description="test heatmap",
        content_creator_name="RadSight^Tests",
        content_label="AI_PMAP",
    )


def _as_new_study(ct_dir: Path, dest: Path) -> tuple[str, Path]:
    """The 3-slice CT again under new Study / Series / SOP Instance UIDs (its own study)."""
    dest.mkdir()
    study, series = hd.UID(), hd.UID()
    for p in ct_dir.glob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = hd.UID()
        ds.save_as(dest / p.name)
    return study, dest


@pytest.fixture(scope="module")
def ai_server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[RunningServer]:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    home = tmp_path_factory.mktemp("viewer-ai")
    running, stop, _ = start_server(home / "home", f"sqlite:///{home / 'index.sqlite'}")
    try:
        ingest = running.archive.ingest
        ct3 = shared_data / DCMQI / "ct-3slice"
        import_paths(ingest, [ct3, shared_data / DCMQI / "liver.dcm", *_pmap_for(ct3, home)])
        import_paths(ingest, [shared_data / "ct/totalsegmentator/example_ct_dicom"], fill_missing_uids=True)
        yield running
    finally:
        stop()  # type: ignore[operator]


@pytest.fixture(scope="module")
def plain_map_study(ai_server: RunningServer, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> str:
    """A copy of the 3-slice CT (its own study) with a parametric map series that says nothing of
    AI in its description and holds two instances."""
    home = tmp_path_factory.mktemp("plain-map")
    study, copy = _as_new_study(shared_data / DCMQI / "ct-3slice", home / "ct")
    import_paths(ai_server.archive.ingest, [copy, *_pmap_for(copy, home, description="Probability", copies=2)])
    return study


def rgb_pixels(page: Page, index: int = 0) -> np.ndarray:
    """The viewport as RGB (float), the overlay text corners left out."""
    png = page.locator(f".vp[data-viewport='{index}'] .cs").screenshot(animations="disabled")
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    h, w, _ = img.shape
    return img[h // 6 : h - h // 6, w // 6 : w - w // 6]


def chroma(img: np.ndarray) -> np.ndarray:
    return np.asarray(img.max(axis=2) - img.min(axis=2))


def changed_from(page: Page, before: np.ndarray, timeout_s: float = 15.0) -> np.ndarray:
    """Screenshots until the viewport differs from ``before`` (a render happened), or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = rgb_pixels(page)
        if now.shape == before.shape and np.abs(now - before).max() > 20:
            return now
        if time.monotonic() > deadline:
            pytest.fail("the viewport did not change")
        page.wait_for_timeout(100)


def open_study(page: Page, server: RunningServer, study: str) -> None:
    login(page, server, f"/viewer?StudyInstanceUIDs={study}")
    wait_first_image(page)
    page.wait_for_function("window.__radsight.ai !== undefined", timeout=TIMEOUT_MS)


def test_ai_series_are_labelled_in_the_series_panel(ai_server: RunningServer, page: Page) -> None:
    open_study(page, ai_server, LIVER_STUDY)
    badges = page.locator(".series-item.ai-series .ai-badge")
    badges.first.wait_for(timeout=TIMEOUT_MS)
    assert badges.count() == 1  # the heatmap; dcmqi's SEG says nothing about AI
    assert badges.first.inner_text() == AI_NOTICE
    assert page.locator("#ai-panel .ai-notice").inner_text() == AI_NOTICE


def test_seg_labelmap_overlay_in_colour_with_toggle_and_opacity(ai_server: RunningServer, page: Page) -> None:
    open_study(page, ai_server, LIVER_STUDY)
    box = page.locator("input[data-ai='segment-1']")
    box.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.segmentations.length === 1")
    assert state(page, "s.errors") == []
    assert state(page, "s.ai.segmentations[0].viewports") == ["vp-0"]
    # The heatmap off, so that only the labelmap differs.
    page.locator("input[data-ai='heatmap-visible']").uncheck()
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] === 0")
    assert page.locator("label.ai-check:has(input[data-ai='segment-1'])").inner_text().strip() == "Liver"
    # The liver slice with the largest mask: dcmqi's liver is on every slice.
    page.wait_for_timeout(300)  # the labelmap's first render after it was added
    with_overlay = rgb_pixels(page)
    box.uncheck()
    without = changed_from(page, with_overlay)
    diff = np.abs(with_overlay - without).max(axis=2) > 20
    assert diff.mean() > 0.01, diff.mean()  # a liver-sized region changed
    # Coloured where the overlay is, grey where it is not (a CT is grey).
    assert np.median(chroma(with_overlay)[diff]) > 30
    assert chroma(without).max() < 10
    # Back on, then the opacity slider changes the same region.
    box.check()
    again = changed_from(page, without)
    assert np.abs(again - with_overlay).max(axis=2)[diff].mean() < 10
    page.locator("input[data-ai='seg-opacity']").fill("1")
    opaque = changed_from(page, again)
    assert np.abs(opaque - again).max(axis=2)[diff].mean() > 10
    assert np.median(chroma(opaque)[diff]) > np.median(chroma(again)[diff])


def test_heatmap_overlay_opacity_and_threshold(ai_server: RunningServer, page: Page) -> None:
    open_study(page, ai_server, LIVER_STUDY)
    visible = page.locator("input[data-ai='heatmap-visible']")
    visible.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.heatmaps === 1")
    page.locator("input[data-ai='segment-1']").uncheck()
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] === 1")
    page.wait_for_timeout(300)
    shown = rgb_pixels(page)
    visible.uncheck()
    hidden = changed_from(page, shown)
    diff = np.abs(shown - hidden).max(axis=2) > 20
    h, w = diff.shape
    # The disc is in the middle of the image, its edge (value 0) outside.
    assert diff[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].all()
    assert not diff[:5, :5].any()
    assert np.median(chroma(shown)[diff]) > 30
    visible.check()
    back = changed_from(page, hidden)
    page.locator("input[data-ai='heatmap-opacity']").fill("1")
    opaque = changed_from(page, back)
    assert np.abs(opaque - back).max(axis=2)[diff].mean() > 10
    # A threshold near the top leaves only the centre coloured.
    page.locator("input[data-ai='heatmap-threshold']").fill("0.9")
    centre = changed_from(page, opaque)
    remaining = np.abs(centre - hidden).max(axis=2) > 20
    assert 0 < remaining.sum() < diff.sum() * 0.3


def test_ai_objects_found_by_sop_class_not_by_series_description(
    ai_server: RunningServer, plain_map_study: str, page: Page
) -> None:
    # A parametric map series described "Probability" with two instances: only its SOP Class UID
    # says what it is.
    open_study(page, ai_server, plain_map_study)
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.heatmaps === 1", timeout=TIMEOUT_MS)
    assert len(state(page, "s.ai.heatmapChoices")) == 2
    assert state(page, "s.ai.segmentations") == []
    assert page.locator(".series-item.ai-series").count() == 0
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] === 1", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    shown = rgb_pixels(page)
    page.locator("input[data-ai='heatmap-visible']").uncheck()
    hidden = changed_from(page, shown)
    diff = np.abs(shown - hidden).max(axis=2) > 20
    h, w = diff.shape
    assert diff[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].all()  # the disc, in colour
    assert np.median(chroma(shown)[diff]) > 30
    assert state(page, "s.errors") == []


def test_pipeline_finding_listed_accepted_and_kept_after_reload(
    ai_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    from radsight.ai import jobs, registry
    from radsight.ai.engine import request_run
    from radsight.ai.worker import run_claimed

    archive = ai_server.archive
    with ai_server.client() as c:
        studies = c.get("/dicomweb/studies").json()
    study = next(str(s["0020000D"]["Value"][0]) for s in studies if s["0020000D"]["Value"][0] != LIVER_STUDY)
    registry.install(archive, make_segmentation_package(tmp_path / "pkg", name="test-seg", version="1.0"))
    queued = request_run(archive, study, model_name="test-seg", trigger="manual")
    assert queued
    ids = [j.id for j in queued]
    deadline = time.monotonic() + 300
    while True:
        with archive.db.session() as s:
            states = {i: jobs.get_job(s, i).state for i in ids}  # type: ignore[union-attr]
            if all(st in (jobs.DONE, jobs.FAILED) for st in states.values()):
                break
            job = jobs.claim(s, "viewer-test", archive.settings.ai_lease_seconds, job_ids=ids)
        if job is not None:
            run_claimed(archive, job)
        elif time.monotonic() > deadline:
            pytest.fail(f"jobs did not finish: {states}")
    assert set(states.values()) == {jobs.DONE}, states

    open_study(page, ai_server, study)
    item = page.locator("#ai-panel .finding").first
    item.wait_for(timeout=TIMEOUT_MS)
    text = item.inner_text()
    assert "test-seg v1.0" in text
    assert "Dense tissue" in text
    assert item.get_attribute("data-status") == "pending"
    # The pipeline's SEG is drawn on the CT.
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.segmentations.length >= 1")
    assert page.locator(".series-item.ai-series").count() >= 2  # SEG, SR, map series
    # "Go to slice" shows the finding's image, with its box drawn.
    with ai_server.client() as c:
        [finding] = c.get(f"/api/studies/{study}/findings").json()
    item.locator("button.finding-jump").click()
    sop = finding["location"]["sop_instance_uid"]
    page.wait_for_function(f"(window.__radsight.viewports()[0].imageId || '').includes('/instances/{sop}/')")
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] >= 2")  # the map and the box
    # The model's SEG on that slice: hiding its segment changes the pixels.
    page.locator("input[data-ai='heatmap-visible']").uncheck()
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] === 1")  # the box only
    page.wait_for_timeout(300)
    seg_on = rgb_pixels(page)
    page.locator("input[data-ai='segment-1']").uncheck()
    seg_off = changed_from(page, seg_on)
    assert (np.abs(seg_on - seg_off).max(axis=2) > 20).mean() > 0.001
    page.locator("input[data-ai='segment-1']").check()
    # MPR: the labelmap is added to the three volume viewports too.
    page.click("[data-action='mpr']")
    page.wait_for_function(
        "window.__radsight.ai.busy === 0 && window.__radsight.ai.segmentations.some("
        "(s) => ['vp-0', 'vp-1', 'vp-2'].every((v) => s.viewports.includes(v)))",
        timeout=TIMEOUT_MS,
    )
    assert state(page, "s.errors") == []
    mpr = rgb_pixels(page)
    page.locator("input[data-ai='segment-1']").uncheck()
    mpr_off = changed_from(page, mpr)
    assert (np.abs(mpr - mpr_off).max(axis=2) > 20).mean() > 0.001
    page.click("[data-action='mpr']")
    page.wait_for_function("window.__radsight.layout.mpr === false")
    item.locator("button.finding-accept").click()
    page.wait_for_selector("#ai-panel .finding[data-status='accepted']", timeout=TIMEOUT_MS)
    page.reload()
    wait_first_image(page)
    accepted = page.locator("#ai-panel .finding").first
    accepted.wait_for(timeout=TIMEOUT_MS)
    assert accepted.get_attribute("data-status") == "accepted"
    assert f"Accepted by {ADMIN_USER}" in accepted.inner_text()
    # Rejected findings stay listed, marked rejected.
    accepted.locator("button.finding-reject").click()
    page.wait_for_selector("#ai-panel .finding[data-status='rejected']", timeout=TIMEOUT_MS)
    page.reload()
    wait_first_image(page)
    page.wait_for_selector("#ai-panel .finding[data-status='rejected']", timeout=TIMEOUT_MS)
    assert "Rejected by" in page.locator("#ai-panel .finding").first.inner_text()


def _big_ct_and_seg(dest: Path, slices: int = 300, size: int = 512) -> tuple[str, list[Path]]:
    """A synthetic 512x512x300 CT (zeros, so the labelmap's colour is all that is not grey) and a
    BINARY SEG (highdicom) with a cylinder on every slice: the labelmap OHIF #3550/#6103 froze on."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sources = []
    paths = []
    for i in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.PatientSex = "CT", "Big^Labelmap", "BIGSEG", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.PatientBirthDate, ds.Manufacturer = "", "", "RadSight tests"
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        ds.ImagePositionPatient = [-256.0, -256.0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1, 1], 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1000, 1
        ds.PixelData = np.zeros((size, size), np.int16).tobytes()
        sources.append(ds)
        paths.append(dest / f"ct{i:03d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.25) ** 2
    algorithm = hd.AlgorithmIdentificationSequence(
        name="big", version="1", family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence")
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.repeat(disc[None].astype(np.uint8), slices, axis=0),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="Cylinder",
                segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
                segmented_property_type=hd.sr.CodedConcept("39607008", "SCT", "Lung"),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        ],
        series_instance_uid=generate_uid(),
        series_number=9001,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="RadSight tests",
        manufacturer_model_name="big",
        software_versions="1",
        device_serial_number="1",
        series_description=f"Big labelmap - {AI_NOTICE}",
    )
    paths.append(dest / "seg.dcm")
    seg.save_as(paths[-1])
    return study, paths


def _load_big_seg(page: Page, server: RunningServer, study: str, worker: bool, first: bool) -> dict[str, float]:
    """Open the study (the SEG decoded in the worker, or with ``?segWorker=0`` by the adapter on
    the page), wait for the labelmap, check it is drawn, and return what the page measured."""
    uid = study + ("" if worker else "&segWorker=0")
    if first:
        open_study(page, server, uid)
    else:  # logged in already
        page.goto(f"{server.base_url}/viewer?StudyInstanceUIDs={uid}")
        wait_first_image(page)
        page.wait_for_function("window.__radsight.ai !== undefined", timeout=TIMEOUT_MS)
    page.wait_for_function(
        "window.__radsight.ai.busy === 0 && window.__radsight.ai.segmentations.length === 1"
        " && window.__radsight.ai.segLongestTaskMs.length === 1",
        timeout=180_000,
    )
    assert state(page, "s.errors") == []
    assert state(page, "s.ai.segDecode[0].path") == ("worker" if worker else "adapter")
    page.wait_for_timeout(300)
    on = rgb_pixels(page)
    page.locator("input[data-ai='segment-1']").uncheck()
    off = changed_from(page, on)
    diff = np.abs(on - off).max(axis=2) > 20
    assert diff.mean() > 0.1  # the disc covers a fifth of the image
    assert chroma(off).max() < 10 and np.median(chroma(on)[diff]) > 30
    return state(
        page,
        "({load: s.ai.segLoadMs[0], gap: Math.round(s.ai.maxFrameGapMs), longest: s.ai.segLongestTaskMs[0],"
        " decodeLongest: s.ai.segLongestTaskSplit[0].decode, drawLongest: s.ai.segLongestTaskSplit[0].draw,"
        " worker: s.ai.segDecode[0].workerMs ?? null, build: s.ai.segDecode[0].buildMs ?? null})",
    )


def test_512x512x300_labelmap_loads_without_freezing_the_page(
    ai_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    """The SEG decoded in a worker (the default) and, for comparison in the same run, by the
    Cornerstone adapter on the page (``?segWorker=0``), A-B-B-A: both draw the disc; the longest
    main-thread task and frame gap of each are printed (figures in viewer/README.md, no timing
    threshold here: 2 shared cores make them noisy)."""
    study, paths = _big_ct_and_seg(tmp_path)
    import_paths(ai_server.archive.ingest, paths)
    runs = []
    for i, worker in enumerate((False, True, True, False)):
        m = _load_big_seg(page, ai_server, study, worker, first=i == 0)
        runs.append((worker, m))
        print(f"512x512x300 SEG, {'worker ' if worker else 'adapter'}: {m}")
