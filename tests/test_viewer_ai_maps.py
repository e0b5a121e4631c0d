"""Per-label probability maps and LABELMAP SEGs in the viewer, in a real browser (Debian's
Chromium via Playwright) against a real ``radsight serve`` with ``ai_seg_type = "labelmap"``.

The AI pipeline runs the two-label test model (soft tissue above -200.5 HU, dense tissue above
150.5 HU) on the real 20-slice CT: a Label Map SEG (pixel values = segment numbers), one
parametric map per label and the findings. Assertions are on pixels and the page's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Locator, Page

from conftest import RunningServer, start_server
from test_ai_findings import recorded_two_label_run
from test_viewer_ai import changed_from, chroma, open_study, rgb_pixels
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, browser, page, state

__all__ = ["browser", "page"]  # fixtures used here

@pytest.fixture(scope="module")
def maps_server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[RunningServer, str]]:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    home = tmp_path_factory.mktemp("viewer-ai-maps")
    running, stop, _ = start_server(home / "home", f"sqlite:///{home / 'index.sqlite'}", ai_seg_type="labelmap")
    try:
        ct = shared_data / "ct/totalsegmentator/example_ct_dicom"
        study, _ = recorded_two_label_run(running.archive, ct, home / "pkg")
        yield running, study
    finally:
        stop()  # type: ignore[operator]


def _finding(page: Page, label: str) -> Locator:
    item = page.locator("#ai-panel .finding", has_text=label)
    item.wait_for(timeout=TIMEOUT_MS)
    return item


def _hue_region(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(before - after).max(axis=2) > 20)


def _switch_off(page: Page, control: str, before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uncheck ``control``: the pixels after, and where they changed."""
    page.locator(f"input[data-ai='{control}']").uncheck()
    after = changed_from(page, before)
    return after, _hue_region(before, after)


def test_labelmap_seg_drawn_per_segment(maps_server: tuple[RunningServer, str], page: Page) -> None:
    server, study = maps_server
    open_study(page, server, study)
    page.wait_for_function(
        "window.__radsight.ai.busy === 0 && window.__radsight.ai.segmentations.length === 1", timeout=TIMEOUT_MS
    )
    assert state(page, "s.errors") == []
    # Decoded by RadSight's worker (LABELMAP frames: segment numbers), not the adapter fallback.
    assert state(page, "s.ai.segDecode[0].path") == "worker"
    assert state(page, "s.ai.segmentations[0].segments") == 2  # the background (segment 0) is not one
    assert page.locator("label.ai-check:has(input[data-ai='segment-1'])").inner_text().strip() == "Soft tissue"
    assert page.locator("label.ai-check:has(input[data-ai='segment-2'])").inner_text().strip() == "Dense tissue"
    # The slice with the most dense tissue, the maps and boxes off: only the labelmap is coloured.
    _finding(page, "Dense tissue").locator("button.finding-jump").click()
    page.locator("input[data-ai='heatmap-visible']").uncheck()
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.drawn['vp-0'] <= 2")
    page.locator("input[data-ai='seg-opacity']").fill("1")
    page.wait_for_timeout(500)
    both = rgb_pixels(page)
    soft_only, dense = _switch_off(page, "segment-2", both)
    grey, soft = _switch_off(page, "segment-1", soft_only)
    # Each segment number drew its own region in its own colour (bone: yellow; soft tissue: blue).
    assert dense.mean() > 0.001 and soft.mean() > 0.05, (dense.mean(), soft.mean())
    assert (dense & soft).mean() < 0.2 * dense.mean()
    r, g, b = (np.median(both[..., c][dense & ~soft]) for c in range(3))
    assert r > b + 40, (r, g, b)
    r, g, b = (np.median(soft_only[..., c][soft]) for c in range(3))
    assert b > r + 40, (r, g, b)
    assert np.median(chroma(grey)[soft | dense]) < 10  # both off: the grey CT, apart from box labels


def test_each_finding_shows_its_labels_probability_map(maps_server: tuple[RunningServer, str], page: Page) -> None:
    server, study = maps_server
    with server.client() as c:
        items = c.get(f"/api/studies/{study}/findings").json()
    maps = {f["label"]: f["pmap_sop_instance_uid"] for f in items}
    assert len(set(maps.values())) == 2
    open_study(page, server, study)
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.heatmaps === 1", timeout=TIMEOUT_MS)
    # Offered: both labels' maps; loaded and drawn: one (the first label's until a finding is picked).
    assert [c["sop"] for c in state(page, "s.ai.heatmapChoices")] == [maps["Soft tissue"], maps["Dense tissue"]]
    assert state(page, "s.ai.heatmapShown") == maps["Soft tissue"]
    # Picking the dense-tissue finding shows its own map, on its slice.
    _finding(page, "Dense tissue").locator("button.finding-jump").click()
    page.wait_for_function(f"window.__radsight.ai.heatmapShown === '{maps['Dense tissue']}'", timeout=TIMEOUT_MS)
    page.wait_for_function("window.__radsight.ai.busy === 0 && window.__radsight.ai.heatmaps === 2")
    choice = page.locator("select[data-ai='heatmap-choice']")
    assert choice.input_value() == maps["Dense tissue"]
    for n in (1, 2):
        page.locator(f"input[data-ai='segment-{n}']").uncheck()
    page.locator("input[data-ai='heatmap-opacity']").fill("1")
    page.wait_for_timeout(500)
    dense_map = rgb_pixels(page)
    hidden, dense_region = _switch_off(page, "heatmap-visible", dense_map)
    page.locator("input[data-ai='heatmap-visible']").check()
    changed_from(page, hidden)
    # The reader's choice: the soft-tissue map, with the same controls (opacity kept at 1).
    choice.select_option(maps["Soft tissue"])
    page.wait_for_function(f"window.__radsight.ai.heatmapShown === '{maps['Soft tissue']}'")
    soft_map = changed_from(page, dense_map)
    soft_region = _hue_region(soft_map, hidden)
    # Bone is a small part of the slice, soft tissue most of the body: the maps differ accordingly.
    assert 0.001 < dense_region.mean() < soft_region.mean(), (dense_region.mean(), soft_region.mean())
    assert page.locator("input[data-ai='heatmap-opacity']").input_value() == "1"
    page.locator("input[data-ai='heatmap-threshold']").fill("0.9")
    thresholded = changed_from(page, soft_map)
    assert 0 < _hue_region(thresholded, hidden).sum() <= soft_region.sum()
    assert state(page, "s.errors") == []
