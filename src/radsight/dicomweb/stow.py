"""DICOMweb STOW-RS (PS3.18 10.5): ``POST /studies`` and ``POST /studies/{study}``.

The body (``multipart/related; type="application/dicom"``, or a single ``application/dicom``
instance) is read part by part and each part is handed to the ingest service as soon as it
is complete; parts up to 4 MB are held in memory, larger ones streamed into spool files,
so a request of several GB never sits in memory.
The multipart framing is parsed by python-multipart's ``MultipartParser``: despite its
name it is a generic RFC 2046 boundary parser (Starlette's form parsing uses it for
``multipart/form-data`` on top), streaming and maintained; only the form-data layer on
top of it is specific to forms, and we do not use that layer.

Response (PS3.18 Table 10.5.3-3): RetrieveURL of the study (Type 2; under the configured
``public_url``, else root-relative: :func:`service_root`), ReferencedSOPSequence for the
instances stored (duplicates included: the archive holds the instance, which is what the
sender needs to know; PS3.18 has no warning code meaning "already stored" and 0xB007 would
wrongly say the data set does not match its SOP class), and FailedSOPSequence with
FailureReason = the C-STORE status (0xA700 out of resources, 0xA900 data set does not match
SOP class / wrong study, 0xC000 cannot understand). The standard item has no text field,
so the human reason travels in a private element of each failed item, (0009,xx01) LT with
private creator ``RADSIGHT`` (see ``FAILURE_TEXT_CREATOR``): standard-conformant (private
elements are allowed in any data set) and ignored by clients that do not know it.
HTTP status: 200 all stored, 202 some failed, 409 none stored. Instances stored before a
request fails (malformed framing, too large) stay stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.types import Scope

from radsight.api.deps import ArchiveDep
from radsight.archive import Archive
from radsight.config import Settings
from radsight.dicomweb.multipart import boundary_error
from radsight.ingest.errors import Reason
from radsight.ingest.events import IngestResult, Outcome

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter()
log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
FAILURE_TEXT_CREATOR = "RADSIGHT"
FAILURE_TEXT_GROUP = 0x0009
FAILURE_TEXT_ELEMENT = 0x01


class _BadRequest(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


# Parts up to this size (every CT and MR image, most US) are received into memory, parsed
# there and written once, straight into storage; a larger part (CR/DX/MG, big multi-frame
# objects) goes to a spool file as it arrives, so a request of several GB never sits in
# memory, and four clients' parts in flight stay within tens of MB. A part in memory is never
# written to a spool file and read back (docs/benchmarks.md).
IN_MEMORY_PART_MAX = 4 * 1024 * 1024


@dataclass
class _PartWriter:
    """Receives python-multipart's callbacks and collects each part, in memory or in a spool file."""

    archive: Archive
    # (the part's bytes or its spool path, part media type)
    finished: list[tuple[bytes | Path, str]] = field(default_factory=list)
    count: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _fh: BinaryIO | None = None
    _path: Path | None = None
    _headers: dict[str, str] = field(default_factory=dict)
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)

    def callbacks(self) -> MultipartCallbacks:
        callbacks: dict[str, Any] = {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }
        return cast("MultipartCallbacks", callbacks)

    def part_begin(self) -> None:
        self._headers = {}

    def header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def headers_finished(self) -> None:
        self._buf = bytearray()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is None:
            self._buf += memoryview(data)[start:end]
            if len(self._buf) > IN_MEMORY_PART_MAX:
                self._spill()
        else:
            # Plain blocking writes: they go to the page cache and are short (one network
            # chunk); the fsync happens in the ingest service, which runs in the thread pool.
            self._fh.write(memoryview(data)[start:end])

    def _spill(self) -> None:
        """The part outgrew memory: continue it in a spool file."""
        self._path = self.archive.ingest.new_spool_path()
        self._fh = open(self._path, "wb")  # noqa: SIM115 - closed in part_end / discard
        self._fh.write(self._buf)
        self._buf = bytearray()

    def part_end(self) -> None:
        self.count += 1
        media_type = self._headers.get("content-type", "")
        if self._fh is None:
            self.finished.append((bytes(self._buf), media_type))
            self._buf = bytearray()
            return
        assert self._path is not None
        self._fh.close()
        self.finished.append((self._path, media_type))
        self._fh = self._path = None

    def discard(self) -> None:
        """Remove the spool files of parts not handed to the ingest service."""
        if self._fh is not None:
            self._fh.close()
        paths = [p for p, _ in self.finished if isinstance(p, Path)] + ([self._path] if self._path else [])
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.finished.clear()
        self._buf = bytearray()
        self._fh = self._path = None


@functools.lru_cache(maxsize=256)
def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """(type, parameters) of a Content-Type value; cached: clients repeat theirs (callers must
    not change the dict)."""
    main, params = parse_options_header(value)
    return main.decode("latin-1"), {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()}


# The parts' ingest (parse, fsync, commit: blocking) runs on these threads. asyncio's own
# executor rather than Starlette's run_in_threadpool (anyio): its hand-over, once per received
# instance, costs less CPU (docs/benchmarks.md). Eight threads: enough for the group commit to
# batch concurrent requests' instances, and a bound on how many parts are ingested at once.
_INGEST_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stow-ingest")


# Parts of one request ingested at once (in order of arrival, answered in the parts' order):
# a batch of instances in one request then shares index commits (group commit) and overlaps
# its fsyncs instead of waiting for them one part after the other.
PARTS_IN_FLIGHT = 4


def _in_ingest_thread(fn: Callable[..., IngestResult], *args: Any) -> asyncio.Future[IngestResult]:
    return asyncio.get_running_loop().run_in_executor(_INGEST_THREADS, fn, *args)


def _log_unexpected(future: asyncio.Future[IngestResult]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("ingest of a part of an abandoned STOW-RS request failed", exc_info=future.exception())


def _ingest_part(archive: Archive, part: bytes | Path, media_type: str, study: str | None) -> IngestResult:
    """Check one received part and ingest it (runs in the thread pool: parsing and fsync block)."""
    try:
        if media_type:
            main, _ = _media_type(media_type)
            if main != "application/dicom":
                return IngestResult(
                    Outcome.REFUSED,
                    reason=Reason.UNSUPPORTED,
                    message=f"part has media type {main!r}; only application/dicom parts are accepted",
                )
        if isinstance(part, bytes):
            return archive.ingest.ingest_bytes(part, source="stow", study=study)
        return archive.ingest.ingest_file(part, move=True, source="stow", study=study)
    finally:
        if isinstance(part, Path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)


SERVICE_PATH = "/dicomweb"  # where the DICOMweb router is mounted (radsight.dicomweb)


def service_root(scope: Scope, settings: Settings) -> str:
    """The DICOMweb service root that RetrieveURLs start with: under the configured public URL,
    or root-relative (RFC 3986: the client resolves it against the URL it sent the request to).
    Never built from the request's ``Host`` header, which is the client's to choose."""
    root_path: str = scope.get("root_path", "")
    base = str(settings.public_url).rstrip("/") if settings.public_url else root_path
    return base + SERVICE_PATH


def _element(vr: str, *values: object) -> dict[str, Any]:
    """One attribute in DICOM JSON (PS3.18 F.2.2); an empty value has no "Value"."""
    present = [v for v in values if v not in (None, "")]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _response_json(root: str, results: list[IngestResult], study: str | None) -> tuple[dict[str, Any], int]:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-3) as DICOM JSON, and the HTTP status.

    Written as plain dicts rather than through ``pydicom.Dataset.to_json_dict``: these few
    attributes' JSON form is fixed (tests/test_stow.py parses it back with pydicom), and building
    a Dataset for them costs a measurable share of a one-instance request (docs/benchmarks.md).
    Keys are in tag order, as pydicom writes them.
    """
    stored = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    out: dict[str, Any] = {}
    if failed:
        creator = f"{FAILURE_TEXT_GROUP:04X}0010"
        text_tag = f"{FAILURE_TEXT_GROUP:04X}10{FAILURE_TEXT_ELEMENT:02X}"
        out["00081198"] = {"vr": "SQ", "Value": [
            {
                "00081150": _element("UI", r.sop_class_uid),
                "00081155": _element("UI", r.sop_instance_uid),
                "00081197": _element("US", r.dimse_status),
                creator: _element("LO", FAILURE_TEXT_CREATOR),
                text_tag: _element("LT", f"{r.reason}: {r.message}" if r.reason else r.message),
            }
            for r in failed
        ]}
    if stored:
        out["00081199"] = {"vr": "SQ", "Value": [
            {
                "00081150": _element("UI", r.sop_class_uid),
                "00081155": _element("UI", r.sop_instance_uid),
                "00081190": _element("UR", f"{root}/studies/{r.study_instance_uid}/series/"
                                           f"{r.series_instance_uid}/instances/{r.sop_instance_uid}"),
            }
            for r in stored
        ]}
    studies = {r.study_instance_uid for r in stored}
    if study is not None or len(studies) == 1:
        out["00081190"] = _element("UR", f"{root}/studies/{study or studies.pop()}")
    out = dict(sorted(out.items()))
    code = status.HTTP_200_OK if not failed else status.HTTP_202_ACCEPTED if stored else status.HTTP_409_CONFLICT
    return out, code


def _response(request: Request, archive: Archive, results: list[IngestResult], study: str | None) -> JSONResponse:
    body, code = _response_json(service_root(request.scope, archive.settings), results, study)
    return JSONResponse(body, status_code=code, media_type=DICOM_JSON)


async def _receive(request: Request, archive: Archive, study: str | None) -> list[IngestResult]:
    main, params = _media_type(request.headers.get("content-type", ""))
    limit = archive.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _BadRequest(status.HTTP_413_CONTENT_TOO_LARGE, f"body of {length} bytes exceeds {limit}")
    if main == "application/dicom":
        boundary = None
    elif main == "multipart/related":
        part_type = params.get("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise _BadRequest(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f'multipart/related type="{part_type}" is not supported; send type="application/dicom"',
            )
        boundary = params.get("boundary")
        if not boundary:
            raise _BadRequest(status.HTTP_400_BAD_REQUEST, "multipart/related Content-Type without a boundary")
        if (refused := boundary_error(boundary)) is not None:
            raise _BadRequest(status.HTTP_400_BAD_REQUEST, refused)
    else:
        raise _BadRequest(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {main or '(none)'} is not supported; send multipart/related; "
            'type="application/dicom" (or one application/dicom instance)',
        )

    writer = _PartWriter(archive)
    results: list[IngestResult] = []
    # Parts being ingested while the next ones are received, oldest first (results keep the
    # parts' order). Bounded: at most PARTS_IN_FLIGHT parts of a request are held (in memory or
    # spool files) waiting for the ingest threads.
    in_flight: deque[asyncio.Future[IngestResult]] = deque()

    async def hand_over_finished() -> None:
        while writer.finished:
            part, media_type = writer.finished.pop(0)
            in_flight.append(_in_ingest_thread(_ingest_part, archive, part, media_type, study))
            if len(in_flight) >= PARTS_IN_FLIGHT:
                results.append(await in_flight.popleft())

    async def collect() -> None:
        while in_flight:
            results.append(await in_flight.popleft())

    parser = MultipartParser(boundary, writer.callbacks()) if boundary else None
    if parser is None:  # a single application/dicom body is one part
        writer.part_begin()
        writer.headers_finished()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                await collect()
                raise _BadRequest(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"body exceeds {limit} bytes; {len(results)} instance(s) received before were kept",
                )
            if parser is None:
                writer.part_data(chunk, 0, len(chunk))
            else:
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    await collect()
                    raise _BadRequest(status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}") from exc
            await hand_over_finished()
        if parser is None:
            writer.part_end()
        elif parser.state != MultipartState.END:
            await collect()
            raise _BadRequest(
                status.HTTP_400_BAD_REQUEST,
                "malformed multipart body: it ends without the closing boundary "
                f"(--{boundary}--); {len(results)} complete part(s) before it were processed",
            )
        await hand_over_finished()
        await collect()
    finally:
        # A client gone mid-body: the parts already handed over are still ingested (each
        # removes its own spool file); their results have no one to go to.
        for future in in_flight:
            future.add_done_callback(_log_unexpected)
        writer.discard()
    if not results:
        raise _BadRequest(status.HTTP_400_BAD_REQUEST, "the body holds no parts")
    return results


async def store(request: Request, archive: Archive, study: str | None) -> JSONResponse:
    """Store the instances a STOW-RS request carries (into ``study``, when the request names one)
    and answer it; raises HTTPException when the request itself is refused (400, 413, 415).
    The routes and the DICOMweb fast path both answer with this."""
    try:
        results = await _receive(request, archive, study)
    except _BadRequest as exc:
        raise HTTPException(exc.status_code, exc.detail) from exc
    return _response(request, archive, results, study)


@router.post("/studies", name="store_instances")
async def store_instances(request: Request, archive: ArchiveDep) -> JSONResponse:
    """Store Instances (PS3.18 10.5)."""
    return await store(request, archive, None)


@router.post("/studies/{study}", name="store_instances_in_study")
async def store_instances_in_study(study: str, request: Request, archive: ArchiveDep) -> JSONResponse:
    """Store Instances of one study; instances of another study fail with 0xA900."""
    return await store(request, archive, study)
