"""The AI-prioritised reading worklist in a real browser (Debian's Chromium via Playwright)
against a real ``radsight serve`` with the AI engine running (issue 6).

Studies arrive by STOW-RS as small real digital X-ray images; the engine's stability trigger
runs a real (test) classification model on them: a bright image gives a probability near 1,
above the package's critical threshold, a dark one near 0 (routine). So the priority, the reason
text, the alert and the live events all come from the real pipeline; nothing is mocked.
Assertions are on the DOM of real rendered rows and on pixels (the critical badge's colour);
``window.__radsight`` only says when to look. ``RADSIGHT_SCREENSHOTS=1`` also writes
screenshots (reading worklist, locked viewer, dashboard) in docs/screenshots/. One server for
the module; SQLite (the front end does not depend on the database backend).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from ai_testmodels import make_classification_package
from conftest import ADMIN_PASSWORD, RunningServer, start_server
from dicom_factory import make_ct
from radsight.ai import registry
from radsight.api.auth import add_user
from radsight.archive import Archive
from radsight.config import Settings
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, _screenshot_dir, _screenshots, browser

__all__ = ["browser"]  # fixture used here

MODEL = "cxr-test"
READERS = {"alice": "alice-secret-1", "bob": "bob-secret-12"}
DX_CLASS = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation
MODEL_CARD = "# cxr-test\n\nIntended use: testing the worklist. Trained on nothing; mean brightness.\n"
LIVE_BUDGET_S = 20.0  # arrival -> AI -> priority -> event -> row on top, on 2 shared cores


def make_dx(*, bright: bool, patient: str, accession: str) -> tuple[str, bytes]:
    """A 64x64 chest "X-ray": mostly bright (the test model says ~0.99) or mostly dark (~0.01)."""
    study = generate_uid()
    ds: Dataset = make_ct(
        patient_name=patient,
        patient_id=accession,
        study_uid=study,
        modality="DX",
        rows=64,
        columns=64,
        accession=accession,
        description="Chest PA",
    )
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX_CLASS
    for k in ("RescaleIntercept", "RescaleSlope", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(ds, k)
    ds.ImagerPixelSpacing = [0.5, 0.5]
    ds.BodyPartExamined = "CHEST"
    img = np.full((64, 64), 3900 if bright else 100, dtype=np.uint16)
    img[:8, :8] = 100 if bright else 3900  # min != max for the model's min-max normalisation
    ds.PixelData = img.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return study, buf.getvalue()


def stow(server: RunningServer, part10: bytes) -> None:
    boundary = "radsight-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + part10
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with server.client() as c:
        r = c.post(
            "/dicomweb/studies",
            content=body,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
        )
    assert r.status_code in (200, 202), r.text


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def worklist_item(server: RunningServer, study: str) -> dict[str, Any] | None:
    with server.client() as c:
        r = c.get("/api/worklist", params={"limit": 500})
    r.raise_for_status()
    return next((i for i in r.json()["items"] if i["StudyInstanceUID"] == study), None)


def ai_done(server: RunningServer, study: str) -> bool:
    with server.client() as c:
        jobs = c.get(f"/api/studies/{study}/jobs").json()
    return bool(jobs) and all(j["state"] == "done" for j in jobs)


def findings_of(server: RunningServer, study: str) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get(f"/api/studies/{study}/findings")
    r.raise_for_status()
    body = r.json()
    return body if isinstance(body, list) else body["findings"]


@pytest.fixture(scope="module")
def wl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    home = tmp_path_factory.mktemp("worklist")
    url = f"sqlite:///{home / 'index.sqlite'}"
    # The model is installed before the engine starts, as an operator would.
    a = Archive.open(Settings(home=home / "home", database_url=url))
    package = make_classification_package(home / "pkg", name=MODEL, version="1.0.0")
    (package / "model-card.md").write_text(MODEL_CARD, encoding="utf-8")
    registry.install(a, package)
    with a.db.session() as s:
        for user, password in READERS.items():
            add_user(s, user, password, "radiologist")
    a.close()
    running, stop, _ = start_server(
        home / "home", url, ai=True, ai_stable_seconds=0.5, ai_retry_backoff_seconds=0.2, ai_builtin_models=False
    )
    try:
        # Two routine studies already read in by the AI before anyone looks.
        for n in (1, 2):
            study, data = make_dx(bright=False, patient=f"Routine^R{n}", accession=f"R{n}")
            stow(running, data)
            wait_for(lambda s=study: ai_done(running, s), 60, f"routine study {n}'s AI job")
        yield running
    finally:
        stop()  # type: ignore[operator]


def reader_page(browser: Browser, server: RunningServer, user: str, path: str = "/") -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.__dict__["_radsight_errors"] = errors
    page.goto(server.base_url + path)
    page.wait_for_url("**/login?next=*")
    page.fill("#username", user)
    page.fill("#password", READERS.get(user, ADMIN_PASSWORD))
    page.click("button[type=submit]")
    page.wait_for_url(server.base_url + path)
    return context, page


def no_page_errors(*pages: Page) -> None:
    for p in pages:
        assert not p.__dict__["_radsight_errors"], p.__dict__["_radsight_errors"]


def wait_live(page: Page) -> None:
    page.wait_for_selector("#studies tbody tr", timeout=TIMEOUT_MS)
    page.wait_for_function("window.__radsight.live.connected === true", timeout=TIMEOUT_MS)


def row(page: Page, study: str) -> Any:
    return page.locator(f"#studies tbody tr[data-study-uid='{study}']")


@pytest.fixture(scope="module")
def critical(wl_server: RunningServer, browser: Browser) -> Iterator[dict[str, Any]]:
    """alice's and bob's worklists open; then a critical study arrives. Shared by the tests below."""
    ctx_a, alice = reader_page(browser, wl_server, "alice")
    ctx_b, bob = reader_page(browser, wl_server, "bob")
    for p in (alice, bob):
        wait_live(p)
        p.evaluate("window.__notReloaded = true")
    study, data = make_dx(bright=True, patient="Critical^Case", accession="C1")
    t0 = time.monotonic()
    stow(wl_server, data)
    alice.wait_for_function(
        f"document.querySelector('#studies tbody tr')?.dataset.studyUid === '{study}'", timeout=LIVE_BUDGET_S * 1000
    )
    seconds = time.monotonic() - t0
    print(f"\nnew critical study on top of the open worklist {seconds:.1f} s after STOW")
    yield {"study": study, "alice": alice, "bob": bob, "seconds": seconds}
    no_page_errors(alice, bob)
    ctx_a.close()
    ctx_b.close()


def test_new_critical_study_appears_on_top_of_an_open_worklist_without_reload(critical: dict[str, Any]) -> None:
    alice, study = critical["alice"], critical["study"]
    assert critical["seconds"] < LIVE_BUDGET_S
    assert alice.evaluate("window.__notReloaded") is True, "the page was reloaded"
    top = alice.locator("#studies tbody tr").first
    assert top.get_attribute("data-study-uid") == study
    prio = top.locator("td[data-column=priority]")
    assert prio.locator(".prio").inner_text().strip().lower() == "critical"
    reason = prio.locator(".reason").inner_text()
    assert "Pneumonia" in reason and MODEL in reason, reason
    assert top.locator("td[data-column=status]").inner_text().strip() == "Unread"
    assert alice.locator("#studies tbody tr[data-priority=routine]").count() >= 2
    # Pixels: the badge is drawn in the critical red (#e5484d), a routine one is not. The study's
    # alert banner appears above the list too (it moves the rows): the screenshots come after it.
    alice.locator(f"#alerts .alert[data-study-uid='{study}']").wait_for(timeout=TIMEOUT_MS)
    badge = np.asarray(Image.open(io.BytesIO(prio.locator(".prio").screenshot())).convert("RGB"), dtype=np.float32)
    red = (badge[..., 0] > 180) & (badge[..., 1] < 110) & (badge[..., 2] < 110)
    assert red.mean() > 0.3, red.mean()
    routine = alice.locator("#studies tbody tr[data-priority=routine] .prio").first.screenshot()
    rbadge = np.asarray(Image.open(io.BytesIO(routine)).convert("RGB"), dtype=np.float32)
    assert ((rbadge[..., 0] > 180) & (rbadge[..., 1] < 110)).mean() < 0.05
    if _screenshots():
        alice.wait_for_selector(f"#alerts .alert[data-study-uid='{study}']", timeout=TIMEOUT_MS)
        alice.screenshot(path=str(_screenshot_dir() / "reading-worklist.png"))
    # bob's list moved too.
    critical["bob"].wait_for_function(
        f"document.querySelector('#studies tbody tr')?.dataset.studyUid === '{study}'", timeout=TIMEOUT_MS
    )


def test_filters_narrow_the_reading_worklist(critical: dict[str, Any]) -> None:
    alice, study = critical["alice"], critical["study"]
    alice.select_option("#wl-filters select[name=priority]", "critical")
    alice.wait_for_function("document.querySelectorAll('#studies tbody tr').length === 1", timeout=TIMEOUT_MS)
    assert row(alice, study).count() == 1
    assert "priority=critical" in alice.url
    alice.select_option("#wl-filters select[name=priority]", "")
    alice.wait_for_function("document.querySelectorAll('#studies tbody tr').length >= 3", timeout=TIMEOUT_MS)


def test_alert_banner_shows_everywhere_and_acknowledging_removes_it(
    critical: dict[str, Any], wl_server: RunningServer
) -> None:
    alice, bob, study = critical["alice"], critical["bob"], critical["study"]
    for p in (alice, bob):
        p.wait_for_selector(f"#alerts .alert[data-study-uid='{study}']", timeout=TIMEOUT_MS)
    banner = alice.locator(f"#alerts .alert[data-study-uid='{study}']")
    text = banner.inner_text()
    assert "CRITICAL" in text and "Pneumonia" in text and "Critical Case" in text, text
    banner.locator("button.alert-ack").click()
    alice.wait_for_selector(f"#alerts .alert[data-study-uid='{study}']", state="detached", timeout=TIMEOUT_MS)
    # bob did nothing: the alert-acknowledged event removed it from his banner.
    bob.wait_for_selector(f"#alerts .alert[data-study-uid='{study}']", state="detached", timeout=TIMEOUT_MS)
    with wl_server.client() as c:
        pending = c.get("/api/alerts", params={"unacknowledged": "true"}).json()
    pending = pending if isinstance(pending, list) else pending.get("items", pending.get("alerts", []))
    assert not [a for a in pending if a.get("StudyInstanceUID") == study]


def test_claim_by_one_reader_shows_locked_for_another(
    critical: dict[str, Any], wl_server: RunningServer, browser: Browser
) -> None:
    bob, study = critical["bob"], critical["study"]
    ctx, viewer = reader_page(browser, wl_server, "alice", f"/viewer?StudyInstanceUIDs={study}")
    try:
        viewer.wait_for_function(
            "window.__radsight.reading && window.__radsight.reading.claim === 'mine'", timeout=TIMEOUT_MS
        )
        assert viewer.locator("#claim-status").inner_text().strip() == "In progress — you"
        # bob's open worklist shows it locked, live.
        status = row(bob, study).locator("td[data-column=status]")
        bob.wait_for_function(
            f"document.querySelector(\"tr[data-study-uid='{study}']\")?.classList.contains('locked')",
            timeout=TIMEOUT_MS,
        )
        assert "In progress — alice" in status.inner_text()
        # bob opens it anyway: read-only, naming alice; no sign-off, no accept / reject.
        ctx_b, bob_viewer = reader_page(browser, wl_server, "bob", f"/viewer?StudyInstanceUIDs={study}")
        try:
            bob_viewer.wait_for_function(
                "window.__radsight.reading && window.__radsight.reading.claim === 'locked'", timeout=TIMEOUT_MS
            )
            notice = bob_viewer.locator("#claim-status").inner_text()
            assert "Read-only" in notice and "alice" in notice, notice
            assert bob_viewer.locator("#sign-off").is_disabled()
            assert bob_viewer.evaluate("document.body.classList.contains('read-only')")
            if _screenshots():
                bob_viewer.wait_for_selector(".finding", timeout=TIMEOUT_MS)
                bob_viewer.screenshot(path=str(_screenshot_dir() / "viewer-locked.png"))
            no_page_errors(bob_viewer)
        finally:
            ctx_b.close()
        # The finding's model card, from the findings panel.
        viewer.wait_for_selector(".finding", timeout=TIMEOUT_MS)
        viewer.click(".finding .model-card-link")
        viewer.wait_for_function(
            "document.querySelector('#model-card pre')?.textContent.includes('Intended use')", timeout=TIMEOUT_MS
        )
        assert viewer.locator("#model-card pre").inner_text().strip() == MODEL_CARD.strip()
        viewer.click("#model-card button[aria-label=Close]")
        # Sign-off with the finding still pending: the server says which, the page shows it.
        viewer.click("#sign-off")
        viewer.wait_for_function("document.querySelector('#sign-error').textContent.length > 0", timeout=TIMEOUT_MS)
        assert "Cannot sign off" in viewer.locator("#sign-error").inner_text()
        # Accept the finding, sign off: read by alice, everywhere.
        viewer.locator(".finding .finding-accept").first.click()
        viewer.wait_for_selector(".finding.status-accepted", timeout=TIMEOUT_MS)
        viewer.click("#sign-off")
        viewer.wait_for_function("window.__radsight.reading.claim === 'read'", timeout=TIMEOUT_MS)
        assert "Read by alice" in viewer.locator("#claim-status").inner_text()
        bob.wait_for_function(
            f"document.querySelector(\"tr[data-study-uid='{study}']\")?.dataset.status === 'read'", timeout=TIMEOUT_MS
        )
        assert "Read by alice" in status.inner_text()
        # bob narrows his list to what alice read.
        bob.fill("#wl-filters input[name=reader]", "alice")
        bob.select_option("#wl-filters select[name=status]", "read")
        bob.wait_for_function("document.querySelectorAll('#studies tbody tr').length === 1", timeout=TIMEOUT_MS)
        assert row(bob, study).count() == 1 and "reader=alice" in bob.url
        bob.click("#wl-filters button[type=reset]")
        bob.wait_for_function("document.querySelectorAll('#studies tbody tr').length >= 3", timeout=TIMEOUT_MS)
        no_page_errors(viewer)
    finally:
        ctx.close()


def test_leaving_the_viewer_releases_the_claim(
    critical: dict[str, Any], wl_server: RunningServer, browser: Browser
) -> None:
    bob = critical["bob"]
    item = next(i for i in _items(wl_server) if i["status"] == "unread" and i["priority"] == "routine")
    study = item["StudyInstanceUID"]
    ctx, viewer = reader_page(browser, wl_server, "alice", f"/viewer?StudyInstanceUIDs={study}")
    viewer.wait_for_function(
        "window.__radsight.reading && window.__radsight.reading.claim === 'mine'", timeout=TIMEOUT_MS
    )
    bob.wait_for_function(
        f"document.querySelector(\"tr[data-study-uid='{study}']\")?.dataset.status === 'in_progress'",
        timeout=TIMEOUT_MS,
    )
    # The reader raises the order priority: bob's list shows it live (STAT is urgent by default).
    viewer.select_option("#order-priority", "STAT")
    bob.wait_for_function(
        f"document.querySelector(\"tr[data-study-uid='{study}'] .order\")?.textContent === 'STAT'", timeout=TIMEOUT_MS
    )
    assert row(bob, study).get_attribute("data-priority") == "urgent"
    viewer.goto(wl_server.base_url + "/")  # pagehide -> release (fetch keepalive)
    bob.wait_for_function(
        f"document.querySelector(\"tr[data-study-uid='{study}']\")?.dataset.status === 'unread'", timeout=TIMEOUT_MS
    )
    ctx.close()


def _items(server: RunningServer) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get("/api/worklist", params={"limit": 500})
    r.raise_for_status()
    return list(r.json()["items"])


def test_dashboard_draws_one_box_per_priority_group(
    critical: dict[str, Any], wl_server: RunningServer, browser: Browser
) -> None:
    # A routine study signed over the API too, so two priority groups have sign-off times.
    routine = next(i for i in _items(wl_server) if i["status"] == "unread" and i["priority"] == "routine")
    uid = routine["StudyInstanceUID"]
    with wl_server.client() as c:
        assert c.post(f"/api/worklist/{uid}/claim").status_code == 200
        decisions = [{"finding_id": f["id"], "status": "rejected"} for f in findings_of(wl_server, uid)]
        r = c.post(f"/api/worklist/{uid}/sign", json={"decisions": decisions})
        assert r.status_code == 200, r.text
        summary = c.get("/api/turnaround").json()
    ctx, page = reader_page(browser, wl_server, "alice", "/dashboard")
    try:
        page.wait_for_function("window.__radsight.loaded === true", timeout=TIMEOUT_MS)
        assert page.evaluate("window.__radsight.error") == ""
        groups = page.locator("#turnaround-plot g.group")
        assert groups.count() == 3
        boxes = {g.get_attribute("data-priority"): g.locator("rect.box").count() for g in groups.all()}
        assert boxes == {"critical": 1, "urgent": 0, "routine": 1}, (boxes, summary)
        # The table's n per group is what the server counted.
        cells = page.locator("#summary tbody tr[data-priority=critical] td").all_inner_texts()
        assert cells[0] == "Critical" and cells[-3] == "1", cells
        # Pixels: the critical box is drawn in its colour.
        png = page.locator("#turnaround-plot").screenshot()
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
        assert ((img[..., 0] > 150) & (img[..., 1] < 110) & (img[..., 2] < 110)).sum() > 50
        if _screenshots():
            page.screenshot(path=str(_screenshot_dir() / "dashboard.png"))
        # A range of days before any arrival: nothing to plot.
        page.fill("#range input[name=since]", "2020-01-01")
        page.fill("#range input[name=until]", "2020-01-31")
        page.click("#range button[type=submit]")
        page.wait_for_function(
            "document.querySelectorAll('#turnaround-plot rect.box').length === 0", timeout=TIMEOUT_MS
        )
        assert page.locator("#note").inner_text().startswith("0 studies")
        assert "since=2020-01-01" in page.url
        no_page_errors(page)
    finally:
        ctx.close()


def test_all_studies_mode_still_pages_through_qido(wl_server: RunningServer, browser: Browser) -> None:
    ctx, page = reader_page(browser, wl_server, "alice", "/?mode=all&limit=2")
    try:
        page.wait_for_function("document.querySelectorAll('#studies tbody tr').length === 2", timeout=TIMEOUT_MS)
        assert page.locator("input[name=PatientName]").is_visible()
        assert not page.locator("#wl-filters").is_visible()
        page.click("#next")
        page.wait_for_function(
            "document.querySelector('#page-info').textContent.startsWith('Page 2')", timeout=TIMEOUT_MS
        )
        no_page_errors(page)
    finally:
        ctx.close()
