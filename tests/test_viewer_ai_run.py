"""The viewer's "Run AI" button, in a real browser against a real ``radsight serve`` with the AI
engine's workers running and the test segmentation model installed: the click queues the
study's job (POST /api/studies/{uid}/ai/run), the panel shows the job's state until it is done,
then the finding is listed and the model's SEG is drawn on the CT, without a reload. A study no
installed model matches gets the server's 422 message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page

from ai_testmodels import make_segmentation_package
from conftest import RunningServer, start_server
from radsight.archive import Archive
from radsight.config import Settings
from radsight.ingest.importer import import_paths
from test_viewer_ai import changed_from, chroma, open_study, rgb_pixels
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, browser, page, state
from test_worklist_browser import make_dx, stow

__all__ = ["browser", "page"]  # fixtures used here

MODEL = "test-seg"


@pytest.fixture(scope="module")
def run_server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[RunningServer]:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    from radsight.ai import registry

    home = tmp_path_factory.mktemp("viewer-ai-run")
    url = f"sqlite:///{home / 'index.sqlite'}"
    a = Archive.open(Settings(home=home / "home", database_url=url))
    registry.install(a, make_segmentation_package(home / "pkg", name=MODEL, version="1.0"))
    a.close()
    # Arrival never triggers here (an hour of stability): only the button runs the model.
    running, stop, _ = start_server(
        home / "home", url, ai=True, ai_stable_seconds=3600, ai_retry_backoff_seconds=0.2, ai_builtin_models=False
    )
    try:
        import_paths(
            running.archive.ingest, [shared_data / "ct/totalsegmentator/example_ct_dicom"], fill_missing_uids=True
        )
        yield running
    finally:
        stop()  # type: ignore[operator]


def _ct_study(server: RunningServer) -> str:
    with server.client() as c:
        studies = c.get("/dicomweb/studies?ModalitiesInStudy=CT").json()
    return next(str(s["0020000D"]["Value"][0]) for s in studies)


def test_run_ai_button_queues_follows_and_draws_the_result_without_reload(
    run_server: RunningServer, page: Page
) -> None:
    study = _ct_study(run_server)
    open_study(page, run_server, study)
    page.wait_for_function("window.__radsight.ai.busy === 0")
    assert page.locator("#ai-panel .finding").count() == 0
    assert state(page, "s.ai.segmentations.length") == 0
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    # The reader's window/level and inversion survive the results' arrival (under software WebGL the
    # stack is redrawn through WebGL then, for the labelmap).
    page.locator(".vp").first.click()
    page.keyboard.press("2")  # lung preset
    page.keyboard.press("i")
    page.wait_for_function("window.__radsight.viewports()[0].invert === true")
    before = state(page, "s.viewports()[0]")
    assert before["voi"]["lower"] == -1350 and abs(before["voi"]["upper"] - 150) <= 1, before  # DICOM W/L formula
    seen: set[str] = set()
    page.on(
        "request",
        lambda r: seen.add(f"{r.method} {r.url.split('/api/', 1)[-1]}") if "/api/studies/" in r.url else None,
    )
    page.click("#ai-run")
    # The job's state is listed while it runs, then the results come in.
    page.wait_for_selector("#ai-panel .ai-job", timeout=TIMEOUT_MS)
    page.wait_for_function("window.__radsight.ai.run.finished === 1", timeout=300_000)
    assert page.evaluate("window.__sameDocument") is True
    assert f"POST studies/{study}/ai/run" in seen and f"GET studies/{study}/jobs" in seen
    assert state(page, "s.ai.run.jobs.map((j) => [j.model, j.state])") == [[MODEL, "done"]]
    assert page.locator("#ai-panel .ai-job").get_attribute("data-state") == "done"
    assert page.locator("#ai-panel .ai-run-status").inner_text() == "AI finished: 1 job done"
    item = page.locator("#ai-panel .finding").first
    item.wait_for(timeout=TIMEOUT_MS)
    assert f"{MODEL} v1.0" in item.inner_text() and "Dense tissue" in item.inner_text()
    # The new SEG / SR / map series are in the series panel, the SEG is on the CT viewport.
    page.wait_for_function(
        "window.__radsight.ai.busy === 0"
        " && window.__radsight.ai.segmentations.some((s) => s.viewports.includes('vp-0'))",
        timeout=TIMEOUT_MS,
    )
    assert page.locator(".series-item.ai-series").count() >= 2
    assert state(page, "s.errors") == []
    after = state(page, "s.viewports()[0]")
    assert (after["voi"], after["invert"], after["index"]) == (before["voi"], True, before["index"]), (before, after)
    # On the finding's slice: the labelmap (and map) in colour on a grey CT; hiding them takes
    # the colour away.
    item.locator("button.finding-jump").click()
    page.wait_for_function("window.__radsight.ai.drawn['vp-0'] >= 1")
    page.wait_for_timeout(300)
    on = rgb_pixels(page)
    page.locator("input[data-ai='segment-1']").uncheck()
    if page.locator("input[data-ai='heatmap-visible']").count():
        page.locator("input[data-ai='heatmap-visible']").uncheck()
    off = changed_from(page, on)
    diff = np.abs(on - off).max(axis=2) > 20
    assert diff.mean() > 0.001, diff.mean()
    assert np.median(chroma(on)[diff]) > 30
    assert page.evaluate("window.__sameDocument") is True


def test_run_ai_shows_the_422_when_no_model_matches(run_server: RunningServer, page: Page) -> None:
    study, data = make_dx(bright=True, patient="NoModel^DX", accession="NM1")
    stow(run_server, data)
    open_study(page, run_server, study)
    page.click("#ai-run")
    status = page.locator("#ai-panel .ai-run-status[data-kind='error']")
    status.wait_for(timeout=TIMEOUT_MS)
    text = status.inner_text()
    assert text.startswith("AI not run: no installed model matches a series of study"), text
    assert study in text
    assert page.locator("#ai-panel .ai-job").count() == 0
    assert not page.locator("#ai-run").is_disabled()
