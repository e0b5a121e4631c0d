"""The viewer's first image before Cornerstone (src/viewer/entry.ts), in a real browser.

The page's first script draws the study's first image on a plain 2D canvas while the Cornerstone
chunk loads. Here that chunk is held back (Playwright route) so the preview can be looked at on
its own: its pixels must be the server-rendered frame at the same window, the page must say the
tools are loading, and keys / wheel turns met meanwhile must act once the viewer is ready. When
the chunk is let through, Cornerstone shows the same image and the preview is gone.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, Route

from conftest import RunningServer, start_server
from radsight.ingest.importer import import_paths
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, browser, login, page

__all__ = ["browser", "page"]  # fixtures used here

PREVIEW_STATUS = "Image shown; loading the viewer tools…"
# The image's centred square, read from a canvas at a fixed size (device pixels differ).
CROP = """(c) => {
  const s = Math.min(c.width, c.height), n = 128;
  const t = document.createElement('canvas'); t.width = n; t.height = n;
  const x = t.getContext('2d');
  x.drawImage(c, (c.width - s) / 2, (c.height - s) / 2, s, s, 0, 0, n, n);
  return Array.from(x.getImageData(0, 0, n, n).data.filter((_, i) => i % 4 === 0));
}"""


@pytest.fixture(scope="module")
def ct_server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[RunningServer]:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    home = tmp_path_factory.mktemp("first-image")
    running, stop, _ = start_server(home / "home", f"sqlite:///{home / 'index.sqlite'}")
    try:
        ct = shared_data / "ct/totalsegmentator/example_ct_dicom"
        import_paths(running.archive.ingest, [ct], fill_missing_uids=True)
        yield running
    finally:
        stop()  # type: ignore[operator]


def first_instance(server: RunningServer) -> tuple[str, str, dict[str, Any]]:
    """The CT's study, series and first instance (InstanceNumber order) metadata."""
    with server.client() as c:
        [study] = c.get("/dicomweb/studies").json()
        uid = study["0020000D"]["Value"][0]
        [series] = c.get(f"/dicomweb/studies/{uid}/series").json()
        suid = series["0020000E"]["Value"][0]
        meta = c.get(f"/dicomweb/studies/{uid}/series/{suid}/metadata").json()
    first = min(meta, key=lambda ds: int(ds["00200013"]["Value"][0]))
    return uid, suid, first


def server_rendered(server: RunningServer, study: str, series: str, inst: dict[str, Any]) -> np.ndarray:
    """The frame rendered by the server at the image's own window, 128 x 128 grey levels."""
    sop = inst["00080018"]["Value"][0]
    wc, ww = inst["00281050"]["Value"][0], inst["00281051"]["Value"][0]
    with server.client() as c:
        r = c.get(
            f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1/rendered",
            params={"window": f"{wc},{ww},LINEAR"},
            headers={"Accept": "image/png"},
        )
    r.raise_for_status()
    img = Image.open(io.BytesIO(r.content)).convert("L")
    assert img.size[0] == img.size[1], "the test crops a square image"
    return np.asarray(img.resize((128, 128), Image.Resampling.BILINEAR), dtype=np.float32)


def canvas_pixels(page: Page, selector: str) -> np.ndarray:
    values = page.locator(selector).evaluate(CROP)
    return np.asarray(values, dtype=np.float32).reshape(128, 128)


def similar(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pixel correlation and mean absolute difference (grey levels)."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]), float(np.abs(a - b).mean())


def hold_cornerstone(page: Page) -> list[Route]:
    """Hold the Cornerstone chunk (main-*.js) until the test lets it through."""
    held: list[Route] = []
    page.route("**/assets/main-*.js", lambda route: held.append(route))
    return held


def test_preview_shows_the_first_image_before_cornerstone_then_hands_over(ct_server: RunningServer, page: Page) -> None:
    study, series, inst = first_instance(ct_server)
    expected = server_rendered(ct_server, study, series, inst)
    held = hold_cornerstone(page)
    login(page, ct_server, f"/viewer?StudyInstanceUIDs={study}")
    page.wait_for_selector("canvas.radsight-preview", timeout=TIMEOUT_MS)
    # Drawn by the first script alone: Cornerstone's module is still held back.
    assert held, "the Cornerstone chunk was not asked for in parallel"
    assert page.evaluate("window.__radsight.loading === true && window.__radsight.viewports().length === 0")
    assert page.locator("canvas.cornerstone-canvas").count() == 0
    assert page.locator("#load-status").text_content() == PREVIEW_STATUS
    preview = canvas_pixels(page, "canvas.radsight-preview")
    assert preview.std() > 20, "the preview is blank"
    corr, diff = similar(preview, expected)
    assert corr > 0.97 and diff < 12, (corr, diff)

    # A wheel turn and a key (the lung window) while only the preview is there: kept, not lost.
    page.locator("canvas.radsight-preview").hover()
    page.mouse.wheel(0, 120)
    page.keyboard.press("2")

    for route in held:
        route.continue_()
    page.unroute("**/assets/main-*.js")
    page.wait_for_function("window.__radsight && window.__radsight.firstImageMs !== undefined", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__radsight.errors") == []
    marks = page.evaluate("window.__radsight.marks")
    assert marks["preview"] < marks["firstImage"], marks
    # The viewer went to slice 2 and the lung window once ready; the preview is gone.
    page.wait_for_function(
        "(() => { const v = window.__radsight.viewports()[0];"
        " return v.index === 1 && v.voi && Math.abs(v.voi.upper - v.voi.lower - 1499) < 2; })()",
        timeout=TIMEOUT_MS,
    )
    assert page.locator("canvas.radsight-preview").count() == 0
    assert page.locator("#load-status").text_content() != PREVIEW_STATUS

    # Back to slice 1 at the image's own window: Cornerstone's drawing is the preview's image.
    page.keyboard.press("Home")
    page.keyboard.press("0")
    level = float(inst["00281050"]["Value"][0]) - 0.5  # Cornerstone's LINEAR window centre
    page.wait_for_function(
        "(() => { const v = window.__radsight.viewports()[0];"
        f" return v.index === 0 && Math.abs((v.voi.upper + v.voi.lower) / 2 - {level}) < 1; }})()",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_timeout(200)
    shown = canvas_pixels(page, ".vp[data-viewport='0'] canvas.cornerstone-canvas")
    corr, diff = similar(shown, expected)
    assert corr > 0.97 and diff < 12, (corr, diff)
    corr, diff = similar(shown, preview)
    assert corr > 0.98 and diff < 8, ("preview and Cornerstone differ", corr, diff)


def test_without_preview_the_viewer_still_shows_the_image(ct_server: RunningServer, page: Page) -> None:
    study, series, inst = first_instance(ct_server)
    expected = server_rendered(ct_server, study, series, inst)
    login(page, ct_server, f"/viewer?StudyInstanceUIDs={study}&preview=0")
    page.wait_for_function("window.__radsight && window.__radsight.firstImageMs !== undefined", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__radsight.marks.preview") is None
    assert page.locator("canvas.radsight-preview").count() == 0
    shown = canvas_pixels(page, ".vp[data-viewport='0'] canvas.cornerstone-canvas")
    corr, diff = similar(shown, expected)
    assert corr > 0.97 and diff < 12, (corr, diff)
