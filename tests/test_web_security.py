"""Web security of the HTTP server: the security headers on every response (the DICOMweb fast
path's too), the pages working under their Content-Security-Policy in Chromium, STOW-RS
RetrieveURLs that never echo the Host header, and the cross-site request forgery checks
(Origin of cookie-authenticated changes, the login form's token), against a real server."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pydicom
import pytest
from playwright.sync_api import Browser, Page
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, RunningServer, free_port, start_server, verified_for_a_minute
from tests.dicom_factory import make_ct
from tests.test_stow import MULTIPART, encode, multipart

from radsight.api.security import LOGIN_FORM_COOKIE, TOKEN_COOKIE
from radsight.ingest.importer import import_paths
from test_viewer_browser import TIMEOUT_MS, VIEWER_BUILT, browser, login

__all__ = ["browser"]  # the fixture, imported

PUBLIC_URL = "https://pacs.example.org/radsight"
CORS_ORIGIN = "https://ohif.example.org"
EXPECTED = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}


def policy(response: httpx.Response) -> dict[str, list[str]]:
    value = response.headers.get("content-security-policy")
    assert value, f"{response.request.url}: no Content-Security-Policy"
    return {d.split()[0]: d.split()[1:] for d in value.split(";") if d.strip()}


def assert_security_headers(response: httpx.Response, what: str) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (what, name, response.headers.get(name))
    csp = policy(response)
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"], what
    assert not {"'unsafe-inline'", "*", "data:", "blob:"} & set(csp["script-src"]), (what, csp["script-src"])
    assert "server" not in response.headers, what  # no software name and version


@contextlib.contextmanager
def logged_in(base_url: str, origin: str | None = None) -> Iterator[httpx.Client]:
    """A client holding the login cookie, as a browser gets it: the form's page, then the form."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        token = form_token(client)
        r = client.post("/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "next": "/",
                                        "form_token": token}, headers={"Origin": origin or base_url})
        assert r.status_code == 303, r.text
        assert TOKEN_COOKIE in client.cookies
        yield client


def form_token(client: httpx.Client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    found = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert found and client.cookies.get(LOGIN_FORM_COOKIE) == found.group(1)
    return found.group(1)


def new_study(server: RunningServer) -> str:
    """A study stored with Basic credentials (a non-browser client: no Origin), with its worklist row."""
    ds = make_ct()
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=multipart([encode(ds)]), headers={"Content-Type": MULTIPART})
    assert r.status_code == 200, r.text
    return str(ds.StudyInstanceUID)


def claimed_by(server: RunningServer, study: str) -> str | None:
    with server.client() as c:
        r = c.get(f"/api/worklist/{study}")
    assert r.status_code == 200, r.text
    holder: str | None = r.json()["claimed_by"]
    return holder


# --- headers ------------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers_fast_path_included(server: RunningServer) -> None:
    ds = make_ct()
    with server.client() as c, verified_for_a_minute(server):
        c.get("/dicomweb/studies", params={"limit": 1})  # verified: the fast path takes the next two
        before = server.asgi.answered
        stored = c.post("/dicomweb/studies", content=multipart([encode(ds)]), headers={"Content-Type": MULTIPART})
        c.get("/dicomweb/studies", params={"limit": 1})
        retrieved = c.get(f"/dicomweb/studies/{ds.StudyInstanceUID}",
                          headers={"Accept": "multipart/related; type=application/dicom; transfer-syntax=*"})
        assert (stored.status_code, retrieved.status_code) == (200, 200)
        assert server.asgi.answered - before == 2
        responses = {
            "STOW-RS, fast path": stored,
            "WADO-RS, fast path": retrieved,
            "QIDO-RS": c.get("/dicomweb/studies", params={"limit": 1}),
            "REST": c.get("/api/me"),
            "REST 422": c.post("/api/auth/token", json={}),
            "404": c.get("/no/such/page"),
            "401": httpx.get(f"{server.base_url}/api/me"),
            "login page": httpx.get(f"{server.base_url}/login"),
            "health": httpx.get(f"{server.base_url}/health"),
            "OpenAPI": c.get("/openapi.json"),
        }
    for what, response in responses.items():
        assert response.status_code < 500, what
        assert_security_headers(response, what)


def test_swagger_ui_has_its_own_policy_allowing_only_its_inline_script(server: RunningServer) -> None:
    with server.client() as c:
        docs, page = c.get("/docs"), c.get("/login")
    assert_security_headers(docs, "/docs")
    hashes = [s for s in policy(docs)["script-src"] if s.startswith("'sha256-")]
    assert len(hashes) == 1  # the one inline script that starts Swagger UI
    assert hashes[0] not in policy(page)["script-src"]


# --- STOW-RS RetrieveURL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[RunningServer]:
    """A server with a public URL and one CORS origin configured, holding an uncompressed CT and a
    JPEG 2000 MR (decoded by a WebAssembly codec in the browser). SQLite: the web layer does not
    depend on the database."""
    home = tmp_path_factory.mktemp("web")
    running, stop, _ = start_server(home / "home", f"sqlite:///{home / 'index.sqlite'}",
                                    public_url=PUBLIC_URL, cors_origins=[CORS_ORIGIN])
    try:
        wg04 = shared_data / "dicom/wg04"
        import_paths(running.archive.ingest, [wg04 / "REF/CT1_UNC", wg04 / "J2KR/MR1_J2KR"])
        yield running
    finally:
        stop()  # type: ignore[operator]


def test_retrieve_urls_start_with_the_public_url_whatever_the_host_header(site: RunningServer) -> None:
    with site.client() as c, verified_for_a_minute(site):
        for via_route in (False, True):
            ds = make_ct()
            headers = {"Content-Type": MULTIPART, "Host": "evil.example",
                       **({"Origin": "https://pacs.example.org"} if via_route else {})}
            c.get("/dicomweb/studies", params={"limit": 1})  # verified in the last second
            before = site.asgi.answered
            r = c.post(f"/dicomweb/studies/{ds.StudyInstanceUID}", content=multipart([encode(ds)]), headers=headers)
            assert r.status_code == 200, r.text
            assert site.asgi.answered - before == (0 if via_route else 1)
            assert "evil.example" not in r.text and "evil.example" not in str(r.headers)
            answer = pydicom.Dataset.from_json(r.json())
            study_url = f"{PUBLIC_URL}/dicomweb/studies/{ds.StudyInstanceUID}"
            assert answer.RetrieveURL == study_url
            assert answer.ReferencedSOPSequence[0].RetrieveURL == (
                f"{study_url}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}")


# --- cross-site request forgery -------------------------------------------------------------------


def test_cookie_changes_must_come_from_this_site(server: RunningServer) -> None:
    study = new_study(server)
    claim = f"/api/worklist/{study}/claim"
    with logged_in(server.base_url) as browser_like:
        refused = {
            "foreign Origin": {"Origin": "http://evil.example"},
            "Origin null": {"Origin": "null"},
            "foreign Referer": {"Referer": "http://evil.example/page.html"},
            "same host, other port": {"Origin": server.base_url.rsplit(":", 1)[0] + ":1"},
            "neither Origin nor Referer": {},
        }
        for what, headers in refused.items():
            r = browser_like.post(claim, headers=headers)
            assert r.status_code == 403, (what, r.status_code, r.text)
            assert "cross-site request forgery" in r.json()["detail"], what
        assert claimed_by(server, study) is None
        # Reads are not changes (what another site may read is CORS's business).
        assert browser_like.get(f"/api/worklist/{study}", headers={"Origin": "http://evil.example"}).status_code == 200
        # From this site's pages: by Origin, or by Referer where a browser sends no Origin.
        r = browser_like.post(claim, headers={"Origin": server.base_url})
        assert r.status_code == 200, r.text
        assert claimed_by(server, study) == ADMIN_USER
        r = browser_like.post(f"/api/worklist/{study}/release", headers={"Referer": f"{server.base_url}/viewer?x=1"})
        assert r.status_code == 200, r.text
        assert claimed_by(server, study) is None


def test_basic_credentials_a_browser_cached_are_checked_too_bearer_tokens_are_not(server: RunningServer) -> None:
    study = new_study(server)
    claim, release = f"/api/worklist/{study}/claim", f"/api/worklist/{study}/release"
    with server.client() as basic:
        r = basic.post(claim, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-site request forgery" in r.json()["detail"], r.text
        assert claimed_by(server, study) is None
        assert basic.post(claim).status_code == 200  # a DICOMweb or script client names no Origin
        assert basic.post(release).status_code == 200
        token = basic.post("/api/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}", "Origin": "http://evil.example"}
    assert httpx.post(f"{server.base_url}{claim}", headers=bearer, timeout=60).status_code == 200
    assert claimed_by(server, study) == ADMIN_USER


def test_the_public_url_and_the_cors_origins_may_send_cookie_changes(site: RunningServer) -> None:
    study = new_study(site)
    # Behind a proxy: the Host header is not the public name.
    with logged_in(site.base_url, origin="https://pacs.example.org") as c:
        for origin in ("https://pacs.example.org", CORS_ORIGIN, "https://pacs.example.org:443"):
            r = c.post(f"/api/worklist/{study}/claim", headers={"Origin": origin})
            assert r.status_code == 200, (origin, r.text)
        assert c.post(f"/api/worklist/{study}/release", headers={"Origin": "https://pacs.example.org:8443"}
                      ).status_code == 403
    assert claimed_by(site, study) == ADMIN_USER


def test_the_login_form_needs_its_own_token(server: RunningServer) -> None:
    form = {"username": ADMIN_USER, "password": ADMIN_PASSWORD, "next": "/"}
    origin = {"Origin": server.base_url}
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        r = c.post("/login", data=form, headers=origin)  # a form from anywhere but the login page
        assert r.status_code == 403 and TOKEN_COOKIE not in c.cookies, r.status_code
        assert "not sent from this site's login page" in r.text and 'name="form_token"' in r.text
        token = form_token(c)
        with httpx.Client(base_url=server.base_url, timeout=60) as other:
            other_token = form_token(other)
        r = c.post("/login", data={**form, "form_token": other_token}, headers=origin)  # another browser's token
        assert r.status_code == 403 and TOKEN_COOKIE not in c.cookies
        token = form_token(c)
        r = c.post("/login", data={**form, "form_token": token}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and TOKEN_COOKIE not in c.cookies
        token = form_token(c)
        r = c.post("/login", data={**form, "form_token": token, "password": "wrong-password"}, headers=origin)
        assert r.status_code == 401 and TOKEN_COOKIE not in c.cookies
        again = re.search(r'name="form_token" value="([^"]+)"', r.text)  # the page shown again, a new token
        assert again and again.group(1) != token and c.cookies.get(LOGIN_FORM_COOKIE) == again.group(1)
        r = c.post("/login", data={**form, "form_token": again.group(1)}, headers=origin)
        assert r.status_code == 303 and TOKEN_COOKIE in c.cookies
        assert c.get("/api/me").json()["username"] == ADMIN_USER


# --- in the browser -------------------------------------------------------------------------------

WATCH_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber);
});
"""


@pytest.fixture
def watched(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page whose CSP violations (reported events and console messages) are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(WATCH_VIOLATIONS)
    page = context.new_page()
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: seen.append(f"uncaught: {e}"))
    yield page, seen
    context.close()


def violations(page: Page, seen: list[str]) -> list[str]:
    reported: list[str] = page.evaluate("window.__cspViolations")
    return reported + seen


def test_pages_work_under_their_policy_and_inline_scripts_are_refused(
    site: RunningServer, watched: tuple[Page, list[str]]
) -> None:
    if not VIEWER_BUILT.is_file():
        pytest.fail("the viewer is not built: run `make setup`")
    page, seen = watched
    login(page, site, "/?mode=all")
    page.wait_for_selector("#studies tbody tr", timeout=TIMEOUT_MS)
    assert violations(page, seen) == []
    with site.client() as c:
        studies = {ds["00080061"]["Value"][0]: ds["0020000D"]["Value"][0] for ds in c.get("/dicomweb/studies").json()}
    for modality in ("CT", "MR"):  # MR: JPEG 2000, decoded by a WebAssembly codec in a worker
        response = page.goto(f"{site.base_url}/viewer?StudyInstanceUIDs={studies[modality]}")
        assert response is not None and "'wasm-unsafe-eval'" in response.headers["content-security-policy"]
        # A predicate as a function: Playwright's polling then needs no eval in the page.
        page.wait_for_function("() => window.__radsight && window.__radsight.firstImageMs !== undefined",
                               timeout=TIMEOUT_MS)
        assert page.evaluate("window.__radsight.errors") == []
        # The page's own inline script ran (allowed by its hash): it started the prefetch.
        assert page.evaluate("typeof window.__radsightPrefetch") == "object"
        assert violations(page, seen) == [], modality
    page.goto(f"{site.base_url}/dashboard")
    page.wait_for_function("() => window.__radsight && window.__radsight.loaded === true", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__radsight.error") == ""
    page.goto(f"{site.base_url}/docs")
    page.wait_for_selector(".opblock", timeout=TIMEOUT_MS)
    assert violations(page, seen) == []
    # The control: a script injected into the page (what an XSS would add) is refused.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__injected = 1';"
                  " document.body.append(s); }")
    assert page.evaluate("typeof window.__injected") == "undefined"
    assert any("script-src" in v for v in violations(page, seen))


@pytest.fixture
def other_origin() -> Iterator[tuple[str, dict[str, str]]]:
    """A web server on another port of the same host: another origin of the same site, so
    SameSite cookies still go with its requests. Serves the pages put in the returned dict."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", pages
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_page_of_another_origin_cannot_claim_a_study_or_frame_the_viewer(
    site: RunningServer, browser: Browser, other_origin: tuple[str, dict[str, str]]
) -> None:
    study = new_study(site)
    base, pages = other_origin
    pages["/forge.html"] = (f'<form id="f" method="post" action="{site.base_url}/api/worklist/{study}/claim"></form>'
                            "<script>document.getElementById('f').submit()</script>")
    pages["/frame.html"] = f'<iframe id="v" src="{site.base_url}/"></iframe>'
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, site, "/")  # the victim is logged in: the cookie is in the browser
        with page.expect_response(f"{site.base_url}/api/worklist/{study}/claim") as answer:
            page.goto(f"{base}/forge.html")
        assert answer.value.status == 403
        assert "cross-site request forgery" in page.content()
        assert claimed_by(site, study) is None
        page.goto(f"{base}/frame.html")
        page.wait_for_load_state("load")
        frame = page.frame_locator("#v")
        assert frame.locator("#studies").count() == 0  # the worklist did not render inside the frame
    finally:
        context.close()
