"""DICOMweb WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered images.

Retrieval sends the stored files unchanged when the client accepts the stored transfer
syntax (the default), streamed from storage; ``transfer-syntax=1.2.840.10008.1.2.1`` gets
an uncompressed transcoded copy, one instance at a time. Frames are read from the stored
file at the indexed Pixel Data offset and go out compressed as stored when the client
accepts that (Cornerstone decodes them itself), decoded otherwise. Everything is looked up
in the index; headers are read only for metadata (then cached) and for pixel work.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, cast

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import Select, bindparam, select

from radsight.api.deps import ArchiveDep
from radsight.archive import Archive
from radsight.dicomweb.multipart import CHUNK_BYTES, MediaRange, MultipartWriter, Part, parse_accept
from radsight.dicomweb.wado_metadata import ensure_cached, find_bulk_element, join_metadata
from radsight.imaging.decode import DecodeError, NoPixelData, decode_frames, is_encapsulated, read_header
from radsight.imaging.frames import (
    decoded_frame_bytes,
    native_frames,
    single_frame_as_stored,
    stored_encapsulated_frames,
)
from radsight.imaging.render import MAX_VIEWPORT, MEDIA_TYPES, RenderError, RenderOptions, Window, render
from radsight.imaging.transcode import to_explicit_little
from radsight.index.models import Instance, Series, Study
from radsight.storage.base import StorageError

log = logging.getLogger(__name__)

router = APIRouter()

DICOM_JSON = "application/dicom+json"
OCTET = "application/octet-stream"
# The media type of each compressed syntax's frames (PS3.18 Table 8.7.3-5); aliases accepted.
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_ALIASES = {"image/x-jls": "image/jls", "image/x-dicom-rle": "image/dicom-rle"}
_ANY = {"*/*", "application/*"}
THUMBNAIL_SIZE = 128
RENDER_CACHE_CONTROL = "private, max-age=86400"


# -- looking instances up ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredInstance:
    pk: int
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    storage_key: str
    file_size: int
    pixel_data_offset: int | None
    rows: int | None
    columns: int | None
    bits_allocated: int | None
    number_of_frames: int | None
    metadata_json: str | None = None

    @property
    def has_pixels(self) -> bool:
        # Deflated files have no plain offset but do have Rows.
        return self.pixel_data_offset is not None or self.rows is not None

    @property
    def frames(self) -> int:
        return max(self.number_of_frames or 1, 1)

    @property
    def path(self) -> str:
        return f"/studies/{self.study_uid}/series/{self.series_uid}/instances/{self.sop_instance_uid}"


@functools.cache
def _find_statement(by_series: bool, by_instance: bool, with_metadata: bool) -> Select[Any]:
    """find_instances' query, built once per shape with bound parameters: building it for every
    request (SQLAlchemy's expression objects) was ~20% of the server's time per WADO-RS
    retrieval of a 20-instance series."""
    columns: list[Any] = [
        Instance.id,
        Study.study_instance_uid,
        Series.series_instance_uid,
        Instance.sop_instance_uid,
        Instance.sop_class_uid,
        Instance.transfer_syntax_uid,
        Instance.storage_key,
        Instance.file_size,
        Instance.pixel_data_offset,
        Instance.rows,
        Instance.columns,
        Instance.bits_allocated,
        Instance.number_of_frames,
    ]
    if with_metadata:
        columns.append(Instance.metadata_json)
    query = (
        select(*columns)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Study.study_instance_uid == bindparam("study"))
    )
    if by_series:
        query = query.where(Series.series_instance_uid == bindparam("series"))
    if by_instance:
        query = query.where(Instance.sop_instance_uid == bindparam("instance"))
    return query.order_by(
        Series.series_number.asc().nulls_last(),
        Series.id,
        Instance.instance_number.asc().nulls_last(),
        Instance.id,
    )


def find_instances(
    archive: Archive,
    study: str,
    series: str | None = None,
    instance: str | None = None,
    *,
    with_metadata: bool = False,
) -> list[StoredInstance]:
    """The stored instances of a study / series / instance, in series and instance number order.

    404 when nothing matches, including UIDs that exist but do not belong together.
    """
    params = {"study": study}
    if series is not None:
        params["series"] = series
    if instance is not None:
        params["instance"] = instance
    statement = _find_statement(series is not None, instance is not None, with_metadata)
    with archive.db.engine.connect() as c:
        found = [StoredInstance(*cast(tuple[Any, ...], row)) for row in c.execute(statement, params)]
    if not found:
        what = "instance" if instance else "series" if series else "study"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what} in this archive")
    return found


def local_path(archive: Archive, inst: StoredInstance) -> Path:
    path = archive.storage.local_path(inst.storage_key)
    if path is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the stored object of {inst.sop_instance_uid} is missing")
    return path


def dicomweb_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _open_key(archive: Archive) -> Callable[[str], BinaryIO]:
    return archive.storage.open


# -- content negotiation -----------------------------------------------------------------


def part_type(r: MediaRange) -> str:
    """The media type of the parts a range asks for ("*/*" where it leaves that open)."""
    if r.media_type == "multipart/related":
        return _ALIASES.get(r.type_param or "*/*", r.type_param or "*/*")
    if r.media_type in ("multipart/*", "*/*"):
        return "*/*"
    return _ALIASES.get(r.media_type, r.media_type)


def _not_acceptable(what: str) -> HTTPException:
    return HTTPException(status.HTTP_406_NOT_ACCEPTABLE, what)


def dicom_output_syntax(ranges: list[MediaRange], stored: str) -> str | None:
    """The transfer syntax an instance goes out in: the stored one, Explicit VR LE, or None.

    No transfer-syntax parameter (and ``*``) means as stored: byte-identical retrieval is
    what archives and viewers expect, and it costs no decoding.
    """
    for r in ranges:
        if part_type(r) not in _ANY | {"application/dicom"}:
            continue
        ts = r.transfer_syntax
        if ts in (None, "*", stored):
            return stored
        if ts == ExplicitVRLittleEndian:
            return ExplicitVRLittleEndian
    return None


@dataclass(frozen=True, slots=True)
class FramePlan:
    decode: bool
    content_type: str
    part_type: str
    multipart: bool = True


def frame_plan(ranges: list[MediaRange], stored: str) -> FramePlan | None:
    """How frames go out for this Accept: compressed as stored, or decoded to native."""
    decoded = FramePlan(True, f"{OCTET}; transfer-syntax={ExplicitVRLittleEndian}", OCTET)
    if not is_encapsulated(stored):
        for r in ranges:
            if part_type(r) in _ANY | {OCTET} and r.transfer_syntax in (None, "*", ExplicitVRLittleEndian, stored):
                return FramePlan(False, decoded.content_type, OCTET, r.media_type.startswith("multipart/"))
        return None
    codec = FRAME_MEDIA_TYPES.get(stored, OCTET)
    for r in ranges:
        kind, ts, multipart = part_type(r), r.transfer_syntax, r.media_type != part_type(r)
        if kind == OCTET:
            if ts in ("*", stored):
                return FramePlan(False, f"{OCTET}; transfer-syntax={stored}", OCTET, multipart)
            if ts in (None, ExplicitVRLittleEndian):
                return FramePlan(True, decoded.content_type, OCTET, multipart)
        elif kind in _ANY or kind == codec or (kind == "image/*" and codec.startswith("image/")):
            if ts in (None, "*", stored):
                return FramePlan(False, f"{codec}; transfer-syntax={stored}", codec, multipart)
            if ts == ExplicitVRLittleEndian and kind in _ANY:
                return FramePlan(True, decoded.content_type, OCTET, multipart)
    return None


def decode_error_response(exc: Exception) -> HTTPException:
    if isinstance(exc, NoPixelData):
        return HTTPException(status.HTTP_404_NOT_FOUND, "the instance has no pixel data")
    # Not a server fault: this archive holds data no installed decoder can read.
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"pixel data cannot be decoded: {exc}")


# -- retrieve instances ---------------------------------------------------------------------


def retrieve_response(archive: Archive, request: Request, instances: list[StoredInstance]) -> Response:
    ranges = parse_accept(request.headers.get("accept"))
    base = dicomweb_base(request)
    plans: list[tuple[StoredInstance, str]] = []
    for inst in instances:
        syntax = dicom_output_syntax(ranges, inst.transfer_syntax_uid)
        if syntax is None:
            raise _not_acceptable(
                f"instance {inst.sop_instance_uid} is stored as {inst.transfer_syntax_uid}; this server sends it "
                f"as stored or as {ExplicitVRLittleEndian} (Explicit VR Little Endian)"
            )
        plans.append((inst, syntax))
    dcmtk = archive.settings.dcmtk_fallback
    parts: list[Part] = []
    for inst, syntax in plans:
        content_type = f"application/dicom; transfer-syntax={syntax}"
        location = base + inst.path
        if syntax == inst.transfer_syntax_uid:
            parts.append(Part(content_type, location, storage_key=inst.storage_key, size=inst.file_size))
            continue
        path = local_path(archive, inst)
        if len(plans) == 1:
            # One instance: transcode before answering so a failure gets its own status.
            try:
                parts.append(Part(content_type, location, data=to_explicit_little(path, dcmtk_fallback=dcmtk)))
            except DecodeError as exc:
                raise decode_error_response(exc) from exc
            continue
        parts.append(Part(content_type, location, produce=functools.partial(_transcode, path, dcmtk)))
    writer = MultipartWriter("application/dicom")
    length = writer.total_length(parts)
    if length is not None and length <= CHUNK_BYTES:
        # A small body (a series of CT slices as stored, a single instance) is read here, in
        # the endpoint's thread, and answered whole: streaming it cost a thread hand-over per
        # write and the streaming response's disconnect watcher, ~10% of the server's time per
        # retrieval of a 3 MB series. The stream writes such a body in one piece anyway.
        try:
            chunks = list(writer.stream(parts, _open_key(archive)))
        except StorageError:
            _require_stored(archive, parts, instances)  # the 404 naming the instance
            raise
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one buffer, not copied again
        return Response(body, media_type=writer.content_type)
    _require_stored(archive, parts, instances)  # before streaming starts, rather than cutting it short
    headers = {"Content-Length": str(length)} if length is not None else {}
    return StreamingResponse(writer.stream(parts, _open_key(archive)), media_type=writer.content_type, headers=headers)


def _require_stored(archive: Archive, parts: list[Part], instances: list[StoredInstance]) -> None:
    """404 naming the first instance sent as stored whose stored object is missing."""
    for part, inst in zip(parts, instances, strict=True):
        if part.storage_key is not None and not archive.storage.exists(part.storage_key):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"the stored object of {inst.sop_instance_uid} is missing")


def _transcode(path: Path, dcmtk: bool) -> bytes:
    try:
        return to_explicit_little(path, dcmtk_fallback=dcmtk)
    except DecodeError:
        # The response is already streaming: the connection is cut, which the client sees
        # as an incomplete response rather than a silently missing instance.
        log.exception("transcoding %s failed during a series/study retrieval", path)
        raise


@router.get("/studies/{study}")
def retrieve_study(study: str, request: Request, archive: ArchiveDep) -> Response:
    return retrieve_response(archive, request, find_instances(archive, study))


@router.get("/studies/{study}/series/{series}")
def retrieve_series(study: str, series: str, request: Request, archive: ArchiveDep) -> Response:
    return retrieve_response(archive, request, find_instances(archive, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}")
def retrieve_instance(study: str, series: str, instance: str, request: Request, archive: ArchiveDep) -> Response:
    return retrieve_response(archive, request, find_instances(archive, study, series, instance))


# -- metadata --------------------------------------------------------------------------------


def _check_json_accept(request: Request) -> None:
    for r in parse_accept(request.headers.get("accept")):
        if part_type(r) in _ANY | {DICOM_JSON, "application/json"}:
            return
    raise _not_acceptable(f"metadata is available as {DICOM_JSON}")


def instance_jsons(archive: Archive, instances: list[StoredInstance]) -> list[str]:
    """The cached DICOM JSON of each instance, building (and caching) the missing ones."""
    rows = [
        (
            inst.pk,
            inst.metadata_json,
            dict(
                path=local_path(archive, inst) if inst.metadata_json is None else None,
                study_uid=inst.study_uid,
                series_uid=inst.series_uid,
                sop_instance_uid=inst.sop_instance_uid,
                sop_class_uid=inst.sop_class_uid,
                transfer_syntax_uid=inst.transfer_syntax_uid,
                pixel_data_offset=inst.pixel_data_offset,
                bits_allocated=inst.bits_allocated,
                has_pixels=inst.has_pixels,
            ),
        )
        for inst in instances
    ]
    return ensure_cached(archive, rows)


def _json_response(request: Request, objects: list[str]) -> Response:
    return Response(join_metadata(objects, dicomweb_base(request)).encode("utf-8"), media_type=DICOM_JSON)


@router.get("/studies/{study}/metadata")
def study_metadata(study: str, request: Request, archive: ArchiveDep) -> Response:
    _check_json_accept(request)
    return _json_response(request, instance_jsons(archive, find_instances(archive, study, with_metadata=True)))


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(study: str, series: str, request: Request, archive: ArchiveDep) -> Response:
    _check_json_accept(request)
    instances = find_instances(archive, study, series, with_metadata=True)
    return _json_response(request, instance_jsons(archive, instances))


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
def instance_metadata(study: str, series: str, instance: str, request: Request, archive: ArchiveDep) -> Response:
    _check_json_accept(request)
    inst = find_instances(archive, study, series, instance, with_metadata=True)[0]
    if inst.metadata_json is not None:
        return _json_response(request, [inst.metadata_json])
    # Fill the whole series in one pass: a viewer asks for its other instances next.
    missing = [
        i
        for i in find_instances(archive, study, series, with_metadata=True)
        if i.metadata_json is None or i.pk == inst.pk
    ]
    built = dict(zip((i.pk for i in missing), instance_jsons(archive, missing), strict=True))
    return _json_response(request, [built[inst.pk]])


# -- frames ----------------------------------------------------------------------------------


def parse_frame_list(text: str, frames: int | None = None) -> list[int]:
    """1-based frame numbers from "1,3,5": 400 when malformed, 404 when out of range."""
    numbers: list[int] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isdigit() or int(piece) < 1:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"frame list {text!r}: frame numbers are integers >= 1")
        numbers.append(int(piece))
    if frames is not None:
        bad = [n for n in numbers if n > frames]
        if bad:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"frame {bad[0]} does not exist: the instance has {frames} frame(s)"
            )
    return numbers


def frame_bytes(archive: Archive, inst: StoredInstance, indices: list[int], decode: bool) -> list[bytes]:
    """Frames at 0-based ``indices``: stored compressed bytes, native bytes, or decoded native bytes."""
    path = local_path(archive, inst)
    dcmtk = archive.settings.dcmtk_fallback
    if not decode and indices == [0] and inst.frames == 1 and inst.pixel_data_offset is not None:
        try:
            fast = single_frame_as_stored(
                path,
                inst.pixel_data_offset,
                inst.transfer_syntax_uid,
                rows=inst.rows or 0,
                columns=inst.columns or 0,
                bits_allocated=inst.bits_allocated or 0,
            )
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"cannot read the frame: {exc}") from exc
        if fast is not None:
            return [fast]
    header = read_header(path)
    try:
        if decode and is_encapsulated(inst.transfer_syntax_uid):
            return [decoded_frame_bytes(a) for a in decode_frames(path, header, indices, dcmtk_fallback=dcmtk)]
        if is_encapsulated(inst.transfer_syntax_uid):
            if inst.pixel_data_offset is None:
                raise NoPixelData("no pixel data")
            return list(stored_encapsulated_frames(path, inst.pixel_data_offset, header, indices))
        return list(native_frames(path, inst.pixel_data_offset, header, indices, dcmtk_fallback=dcmtk))
    except (DecodeError, NoPixelData) as exc:
        raise decode_error_response(exc) from exc
    except ValueError as exc:
        # pydicom's frame parser on malformed encapsulated data: say so, as a 422.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"cannot read the frame: {exc}") from exc


def _single_instance(archive: Archive, study: str, series: str, instance: str) -> StoredInstance:
    inst = find_instances(archive, study, series, instance)[0]
    return inst


def _require_pixels(inst: StoredInstance) -> None:
    if not inst.has_pixels:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"instance {inst.sop_instance_uid} has no pixel data")


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}")
def retrieve_frames(
    study: str, series: str, instance: str, frame_list: str, request: Request, archive: ArchiveDep
) -> Response:
    parse_frame_list(frame_list)  # 400 before any lookup
    inst = _single_instance(archive, study, series, instance)
    _require_pixels(inst)
    numbers = parse_frame_list(frame_list, inst.frames)
    plan = frame_plan(parse_accept(request.headers.get("accept")), inst.transfer_syntax_uid)
    if plan is None:
        codec = FRAME_MEDIA_TYPES.get(inst.transfer_syntax_uid, OCTET)
        raise _not_acceptable(
            f"frames of this instance (stored as {inst.transfer_syntax_uid}) are available as {codec} "
            f"(as stored) or {OCTET} with transfer-syntax={ExplicitVRLittleEndian}"
        )
    data = frame_bytes(archive, inst, [n - 1 for n in numbers], plan.decode)
    headers = {"Cache-Control": RENDER_CACHE_CONTROL}
    if not plan.multipart and len(data) == 1:
        return Response(data[0], media_type=plan.content_type, headers=headers)
    base = dicomweb_base(request) + inst.path
    writer = MultipartWriter(plan.part_type)
    parts = [Part(plan.content_type, f"{base}/frames/{n}", data=d) for n, d in zip(numbers, data, strict=True)]
    return Response(b"".join(writer.stream(parts, _open_key(archive))), media_type=writer.content_type, headers=headers)


# -- bulk data -------------------------------------------------------------------------------


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag_path:path}")
def retrieve_bulk_data(
    study: str, series: str, instance: str, tag_path: str, request: Request, archive: ArchiveDep
) -> Response:
    inst = _single_instance(archive, study, series, instance)
    ranges = parse_accept(request.headers.get("accept"))
    location = dicomweb_base(request) + inst.path + "/bulkdata/" + tag_path
    writer = MultipartWriter(OCTET)
    if tag_path.upper().strip("/") in ("7FE00010", "7FE00008", "7FE00009"):
        _require_pixels(inst)
        plan = frame_plan(ranges, inst.transfer_syntax_uid)
        if plan is None:
            raise _not_acceptable(f"pixel data is available as {OCTET}")
        indices = list(range(inst.frames))
        data = frame_bytes(archive, inst, indices, plan.decode)
        if plan.decode or not is_encapsulated(inst.transfer_syntax_uid):
            data = [b"".join(data)]
        if not plan.multipart and len(data) == 1:
            return Response(data[0], media_type=plan.content_type)
        writer = MultipartWriter(plan.part_type)
        parts = [Part(plan.content_type, location, data=d) for d in data]
    else:
        header = read_header(local_path(archive, inst))
        elem = find_bulk_element(header, tag_path)
        if elem is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no bulk data at {tag_path!r} in this instance")
        if not any(part_type(r) in _ANY | {OCTET} for r in ranges):
            raise _not_acceptable(f"bulk data is available as {OCTET}")
        value = bytes(elem.value or b"")
        if ranges[0].media_type == OCTET:
            # Asked for as a single part: the value itself (PS3.18 8.7.3.3.2 allows both).
            return Response(value, media_type=OCTET)
        parts = [Part(OCTET, location, data=value)]
    return Response(b"".join(writer.stream(parts, _open_key(archive))), media_type=writer.content_type)


# -- rendered and thumbnails -----------------------------------------------------------------

_CACHED_VIEWPORT = 256


def _render(path: str, storage_key: str, index: int, options: RenderOptions, dcmtk: bool) -> bytes:
    header = read_header(Path(path))
    arr = decode_frames(Path(path), header, [index], dcmtk_fallback=dcmtk)[0]
    return render(arr, header, options)


# Keyed by storage key too: an overwritten instance gets a new key, so never a stale image.
_render_small = functools.lru_cache(maxsize=1024)(_render)


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name}: expected comma-separated numbers") from exc


def parse_window(text: str | None) -> Window | None:
    """PS3.18 8.3.5.1.3: ``window=center,width[,function]``."""
    if not text:
        return None
    pieces = text.split(",")
    if len(pieces) not in (2, 3):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "window: expected center,width[,function]")
    center, width = _floats(",".join(pieces[:2]), "window")
    function = pieces[2].strip().upper() if len(pieces) == 3 else "LINEAR"
    try:
        return Window(center, width, function)
    except RenderError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"window: {exc}") from exc


def parse_viewport(text: str | None) -> tuple[int, int] | None:
    """PS3.18 8.3.5.1.2: ``viewport=vw,vh[,sx,sy,sw,sh]`` (the source region is not supported)."""
    if not text:
        return None
    pieces = text.split(",")
    if len(pieces) not in (2, 6):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "viewport: expected width,height")
    try:
        vw, vh = int(pieces[0]), int(pieces[1])
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "viewport: width and height are integers") from exc
    if not (0 < vw <= MAX_VIEWPORT and 0 < vh <= MAX_VIEWPORT):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"viewport: width and height are 1..{MAX_VIEWPORT}")
    return vw, vh


def parse_quality(value: int | None) -> int:
    if value is None:
        return 90
    if not 1 <= value <= 100:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "quality: 1..100")
    return value


def rendered_media_type(request: Request, accept_param: str | None) -> str:
    ranges = parse_accept(accept_param or request.headers.get("accept"))
    for r in ranges:
        kind = part_type(r)
        if kind in MEDIA_TYPES:
            return kind
        if kind in ("*/*", "image/*"):
            return "image/jpeg"
    raise _not_acceptable(f"rendered images are available as {', '.join(MEDIA_TYPES)}")


def render_instance(archive: Archive, inst: StoredInstance, index: int, options: RenderOptions) -> bytes:
    """The rendered frame; small renderings (thumbnails) are kept in a process-wide LRU cache."""
    _require_pixels(inst)
    path = str(local_path(archive, inst))
    small = options.viewport is not None and max(options.viewport) <= _CACHED_VIEWPORT
    draw = _render_small if small else _render
    try:
        return draw(path, inst.storage_key, index, options, archive.settings.dcmtk_fallback)
    except (DecodeError, NoPixelData) as exc:
        raise decode_error_response(exc) from exc
    except RenderError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


def _rendered(
    archive: Archive,
    request: Request,
    inst: StoredInstance,
    index: int,
    *,
    window: str | None,
    viewport: str | None,
    quality: int | None,
    accept: str | None,
    default_viewport: tuple[int, int] | None = None,
) -> Response:
    media_type = rendered_media_type(request, accept)
    options = RenderOptions(
        media_type=media_type,
        window=parse_window(window),
        viewport=parse_viewport(viewport) or default_viewport,
        quality=parse_quality(quality),
    )
    if not 0 <= index < inst.frames:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"frame {index + 1} does not exist")
    body = render_instance(archive, inst, index, options)
    return Response(body, media_type=media_type, headers={"Cache-Control": RENDER_CACHE_CONTROL})


WindowQ = Annotated[str | None, Query(description="center,width[,function]")]
ViewportQ = Annotated[str | None, Query(description="width,height")]
QualityQ = Annotated[int | None, Query()]
AcceptQ = Annotated[str | None, Query(description="media type, instead of the Accept header")]


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
def rendered_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    archive: ArchiveDep,
    window: WindowQ = None,
    viewport: ViewportQ = None,
    quality: QualityQ = None,
    accept: AcceptQ = None,
) -> Response:
    inst = _single_instance(archive, study, series, instance)
    # A multi-frame instance in a single-image format: its first frame.
    return _rendered(archive, request, inst, 0, window=window, viewport=viewport, quality=quality, accept=accept)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}/rendered")
def rendered_frame(
    study: str,
    series: str,
    instance: str,
    frame_list: str,
    request: Request,
    archive: ArchiveDep,
    window: WindowQ = None,
    viewport: ViewportQ = None,
    quality: QualityQ = None,
    accept: AcceptQ = None,
) -> Response:
    numbers = parse_frame_list(frame_list)
    if len(numbers) != 1:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "a rendered frame request names one frame")
    inst = _single_instance(archive, study, series, instance)
    return _rendered(
        archive, request, inst, numbers[0] - 1, window=window, viewport=viewport, quality=quality, accept=accept
    )


def _rendered_many(
    archive: Archive,
    request: Request,
    instances: list[StoredInstance],
    *,
    window: str | None,
    viewport: str | None,
    quality: int | None,
    accept: str | None,
) -> Response:
    """Series / study rendered (PS3.18 10.4.1.1.3): one rendered part per image instance (its first
    frame), each rendered only when the stream reaches it."""
    media_type = rendered_media_type(request, accept)
    options = RenderOptions(
        media_type=media_type,
        window=parse_window(window),
        viewport=parse_viewport(viewport),
        quality=parse_quality(quality),
    )
    images = [i for i in instances if i.has_pixels]
    if not images:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no instance with pixel data to render")
    base = dicomweb_base(request)
    writer = MultipartWriter(media_type)
    parts = [
        Part(media_type, f"{base}{inst.path}/rendered", produce=functools.partial(_render_part, archive, inst, options))
        for inst in images
    ]
    return StreamingResponse(writer.stream(parts, _open_key(archive)), media_type=writer.content_type)


def _render_part(archive: Archive, inst: StoredInstance, options: RenderOptions) -> bytes:
    try:
        return render_instance(archive, inst, 0, options)
    except HTTPException:
        # Already streaming: cut the connection (the client sees an incomplete response).
        log.exception("rendering %s failed during a series/study rendered response", inst.sop_instance_uid)
        raise


@router.get("/studies/{study}/rendered")
def rendered_study(
    study: str,
    request: Request,
    archive: ArchiveDep,
    window: WindowQ = None,
    viewport: ViewportQ = None,
    quality: QualityQ = None,
    accept: AcceptQ = None,
) -> Response:
    instances = find_instances(archive, study)
    return _rendered_many(archive, request, instances, window=window, viewport=viewport, quality=quality, accept=accept)


@router.get("/studies/{study}/series/{series}/rendered")
def rendered_series(
    study: str,
    series: str,
    request: Request,
    archive: ArchiveDep,
    window: WindowQ = None,
    viewport: ViewportQ = None,
    quality: QualityQ = None,
    accept: AcceptQ = None,
) -> Response:
    instances = find_instances(archive, study, series)
    return _rendered_many(archive, request, instances, window=window, viewport=viewport, quality=quality, accept=accept)


def _middle_image(instances: list[StoredInstance]) -> StoredInstance:
    images = [i for i in instances if i.has_pixels]
    if not images:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no instance with pixel data to make a thumbnail of")
    return images[len(images) // 2]


def _thumbnail(
    archive: Archive, request: Request, inst: StoredInstance, viewport: str | None, accept: str | None
) -> Response:
    index = inst.frames // 2
    return _rendered(
        archive,
        request,
        inst,
        index,
        window=None,
        viewport=viewport,
        quality=85,
        accept=accept,
        default_viewport=(THUMBNAIL_SIZE, THUMBNAIL_SIZE),
    )


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(
    study: str, request: Request, archive: ArchiveDep, viewport: ViewportQ = None, accept: AcceptQ = None
) -> Response:
    instances = find_instances(archive, study)
    # The first series (by series number) with images, its middle instance.
    for series_uid in dict.fromkeys(i.series_uid for i in instances):
        images = [i for i in instances if i.series_uid == series_uid and i.has_pixels]
        if images:
            return _thumbnail(archive, request, _middle_image(images), viewport, accept)
    raise HTTPException(status.HTTP_404_NOT_FOUND, "the study has no instance with pixel data")


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(
    study: str, series: str, request: Request, archive: ArchiveDep, viewport: ViewportQ = None, accept: AcceptQ = None
) -> Response:
    return _thumbnail(archive, request, _middle_image(find_instances(archive, study, series)), viewport, accept)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail")
def instance_thumbnail(
    study: str,
    series: str,
    instance: str,
    request: Request,
    archive: ArchiveDep,
    viewport: ViewportQ = None,
    accept: AcceptQ = None,
) -> Response:
    inst = _single_instance(archive, study, series, instance)
    _require_pixels(inst)
    return _thumbnail(archive, request, inst, viewport, accept)
