"""The security headers of every HTTP response (OWASP Secure Headers): a pure ASGI middleware
around the whole HTTP application, the DICOMweb fast path included, so that no response goes
out without them.

- ``Content-Security-Policy``: only this server's own scripts, styles, workers and connections;
  the inline scripts and style elements of the built pages by their SHA-256 hash (never
  ``'unsafe-inline'`` for them); ``'wasm-unsafe-eval'`` because Cornerstone's image codecs
  (JPEG, JPEG-LS, JPEG 2000, HTJ2K) are WebAssembly; ``'unsafe-eval'`` because ndarray (under
  dcmjs's SEG reader, the viewer's path for SEGs its worker does not read) compiles its array
  classes from strings; images also from ``data:`` (styles' icons) and ``blob:`` (the
  measurement tools' cursors); style attributes allowed (``style-src-attr``: the annotation
  labels' SVG sets one), style sheets only from this server; no plugins, no ``<base>``, forms
  only to this server, and no framing (``frame-ancestors 'none'``).
- ``X-Frame-Options: DENY``: the same refusal of framing for browsers without CSP level 2.
- ``X-Content-Type-Options: nosniff``: a DICOM or JSON body is never run as a script or page.
- ``Referrer-Policy: same-origin``: no URL of this server (they carry study UIDs) is sent to
  another site. Not ``no-referrer``: under it browsers send ``Origin: null`` on the pages' own
  POST requests (Fetch, "serializing a request origin"), which the cookie requests' Origin check
  (:func:`radsight.api.security.check_origin`) would refuse.

A response that sets its own ``Content-Security-Policy`` keeps it (:func:`page_policy`: the
login page allows its style element, Swagger UI at ``/docs`` its inline script, by hash). The
middleware is ours: four constant headers and the hashes of our own pages need no framework.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "content-security-policy"

_DIRECTIVES: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    # 'unsafe-eval': the viewer's SEG adapter path (dcmjs, through ndarray) compiles code with
    # ``new Function``; inline scripts stay refused.
    "script-src": ("'self'", "'wasm-unsafe-eval'", "'unsafe-eval'"),
    "style-src": ("'self'",),
    "style-src-attr": ("'unsafe-inline'",),
    "img-src": ("'self'", "data:", "blob:"),
    "font-src": ("'self'", "data:"),
    "connect-src": ("'self'",),
    "worker-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}

OTHER_HEADERS: dict[str, str] = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class _InlineCode(HTMLParser):
    """The text of a page's inline ``<script>`` (without ``src``) and ``<style>`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.found: dict[str, list[str]] = {"script": [], "style": []}
        self._inside: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "style" or (tag == "script" and not any(name == "src" for name, _ in attrs)):
            self._inside = tag
            self.found[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._inside:
            self._inside = None

    def handle_data(self, data: str) -> None:
        if self._inside is not None:
            self.found[self._inside][-1] += data


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def inline_hashes(html: str) -> dict[str, list[str]]:
    """The CSP source expressions (``'sha256-...'``) of a page's inline scripts (``"script"``) and
    style elements (``"style"``)."""
    parser = _InlineCode()
    parser.feed(html)
    parser.close()
    return {tag: [_sha256(text) for text in texts] for tag, texts in parser.found.items()}


def content_security_policy(script_hashes: Iterable[str] = (), style_hashes: Iterable[str] = ()) -> str:
    """The policy, allowing also the inline scripts and style elements of the given hashes."""
    directives = dict(_DIRECTIVES)
    directives["script-src"] += tuple(dict.fromkeys(script_hashes))
    directives["style-src"] += tuple(dict.fromkeys(style_hashes))
    return "; ".join(" ".join((name, *sources)) for name, sources in directives.items())


def page_policy(html: str) -> str:
    """The policy for one page: its own inline scripts and style elements allowed by hash."""
    hashes = inline_hashes(html)
    return content_security_policy(hashes["script"], hashes["style"])


def pages_policy(folder: Path) -> str:
    """The policy for the built pages in ``folder`` (``*.html``), read once: their inline scripts
    and style elements are allowed by hash (a rebuilt viewer is served by a restarted server)."""
    pages = [inline_hashes(page.read_text("utf-8")) for page in sorted(folder.glob("*.html"))]
    return content_security_policy([h for p in pages for h in p["script"]], [h for p in pages for h in p["style"]])


class SecurityHeaders:
    """ASGI middleware: adds the security headers to every HTTP response (those a response sets
    itself are kept)."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = [(CSP.encode("latin-1"), policy.encode("latin-1"))] + [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in OTHER_HEADERS.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
