"""OHIF interop: the published OHIF Viewer (npm ``@ohif/app``, its built ``dist/``) uses a
real RadSight as its DICOMweb back end, in Debian's Chromium.

The test serves OHIF's files and passes ``/dicomweb`` through to RadSight from one origin
(as a reverse proxy in front of both would), so no CORS is involved. Authentication is OHIF's
own: a RadSight Bearer token (``POST /api/auth/token``) given to OHIF as ``?token=``, which it
sends as ``Authorization: Bearer`` on every DICOMweb and image request, forwarded untouched.
(OHIF 3.13 ignores ``requestOptions.auth``.)
The dist is fetched once with ``npm pack`` into a cache outside the repository
(``RADSIGHT_OHIF_DIST`` points at an unpacked ``dist/`` instead).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from conftest import ADMIN_PASSWORD, ADMIN_USER, CHROMIUM, CHROMIUM_ARGS, RunningServer, free_port, start_server
from radsight.ingest.importer import import_paths

OHIF_VERSION = "3.13.2"
TIMEOUT_MS = 60_000
# Mean/SD of the first Cornerstone canvas in the page, read in the page (null when none).
CANVAS_STATS = """() => {
  const c = document.querySelector('canvas.cornerstone-canvas');
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0;
  for (let i = 0; i < d.length; i += 16) { const v = d[i]; n++; s += v; s2 += v * v; }
  const mean = s / n;
  return { mean, sd: Math.sqrt(Math.max(0, s2 / n - mean * mean)) };
}"""


def ohif_dist() -> Path:
    """OHIF's built viewer: from RADSIGHT_OHIF_DIST, or ``npm pack`` into the user cache."""
    if os.environ.get("RADSIGHT_OHIF_DIST"):
        return Path(os.environ["RADSIGHT_OHIF_DIST"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radsight" / f"ohif-{OHIF_VERSION}"
    dist = cache / "package" / "dist"
    if (dist / "index.html").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to fetch @ohif/app (or set RADSIGHT_OHIF_DIST)")
    cache.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--silent"], cwd=cache, check=True, capture_output=True, text=True
    )
    tgz = cache / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        tar.extractall(cache, filter="data")
    tgz.unlink()
    return dist


def app_config(origin: str) -> str:
    root = f"{origin}/dicomweb"
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "defaultDataSourceName": "radsight",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "radsight",
                "configuration": {
                    "friendlyName": "RadSight",
                    "name": "radsight",
                    "wadoUriRoot": f"{origin}/wado",
                    "qidoRoot": root,
                    "wadoRoot": root,
                    "qidoSupportsIncludeField": True,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "singlepart": "bulkdata,video",
                    "bulkDataURI": {"enabled": True},
                    "omitQuotationForMultipartRequest": True,
                },
            }
        ],
    }
    return f"window.config = {json.dumps(config)};\n"


def serve_ohif(dist: Path, radsight: str) -> tuple[str, ThreadingHTTPServer]:
    """OHIF's files, its app-config, and /dicomweb + /wado passed through to RadSight as they are."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    config = app_config(origin).encode()
    upstream = httpx.Client(base_url=radsight, timeout=60)
    index = (dist / "index.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "accept-encoding")
            }
            r = upstream.request(self.command, self.path, headers=headers, content=body)
            self._send(r.status_code, r.content, r.headers.get("content-type", "application/octet-stream"))

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.startswith(("/dicomweb/", "/wado")):
                return self._proxy()
            if path == "/app-config.js":
                return self._send(200, config, "text/javascript")
            file = (dist / path.lstrip("/")).resolve()
            if file.is_file() and file.is_relative_to(dist.resolve()):
                ctype = {
                    ".js": "text/javascript",
                    ".css": "text/css",
                    ".wasm": "application/wasm",
                    ".json": "application/json",
                    ".html": "text/html",
                    ".png": "image/png",
                    ".svg": "image/svg+xml",
                }.get(file.suffix, "application/octet-stream")
                return self._send(200, file.read_bytes(), ctype)
            self._send(200, index, "text/html")  # OHIF's own routes (/viewer, ...)

        do_POST = _proxy

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return origin, httpd


@pytest.fixture(scope="module")
def radsight(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("ohif")
    running, stop, _ = start_server(home / "home", f"sqlite:///{home / 'index.sqlite'}")
    try:
        import_paths(
            running.archive.ingest, [shared_data / "ct/totalsegmentator/example_ct_dicom"], fill_missing_uids=True
        )
        import_paths(running.archive.ingest, [shared_data / "dicom/wg04/REF/CT1_UNC"])
        yield running
    finally:
        stop()  # type: ignore[operator]


@pytest.fixture(scope="module")
def ohif(radsight: RunningServer) -> Iterator[str]:
    origin, httpd = serve_ohif(ohif_dist(), radsight.base_url)
    yield origin
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def bearer_token(server: RunningServer) -> str:
    r = httpx.post(f"{server.base_url}/api/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def test_ohif_renders_radsight_images_and_lists_its_studies(
    ohif: str, radsight: RunningServer, browser: Browser
) -> None:
    with radsight.client() as c:
        uid = c.get("/dicomweb/studies", params={"StudyDate": "20221208"}).json()[0]["0020000D"]["Value"][0]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    failed: list[str] = []
    page.on(
        "response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 and "/dicomweb" in r.url else None
    )
    # OHIF's URL form, as a RIS link would open it; OHIF takes the token on its viewer route.
    page.goto(f"{ohif}/viewer?StudyInstanceUIDs={uid}&token={bearer_token(radsight)}")
    # Real pixels on OHIF's Cornerstone canvas: a JPEG 2000 CT slice OHIF decoded itself.
    page.wait_for_function(f"(() => {{ const s = ({CANVAS_STATS})(); return s && s.sd > 10; }})()", timeout=TIMEOUT_MS)
    assert page.evaluate(f"({CANVAS_STATS})()")["sd"] > 10
    assert not failed, failed

    # Back to OHIF's study list (in-app navigation keeps the token): RadSight's studies are there.
    page.evaluate("history.pushState({}, '', '/'); dispatchEvent(new PopStateEvent('popstate'))")
    page.get_by_text("CompressedSamples", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("08-Dec-2022", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    assert not failed, failed
    page.close()
