"""DICOMweb WADO-RS (PS3.18 10.4): frames and bulk data of an instance.

Frames are read from the stored file at the indexed Pixel Data offset and go out compressed
as stored when the client accepts that (Cornerstone decodes them itself), decoded to native
otherwise. Bulk data other than Pixel Data is read from the instance's header.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydicom.uid import ExplicitVRLittleEndian

from radsight.api.deps import ArchiveDep
from radsight.archive import Archive
from radsight.dicomweb.multipart import ANY_TYPE, MediaRange, MultipartWriter, Part, parse_accept
from radsight.dicomweb.stored import (
    PIXELS_CACHE_CONTROL,
    StoredInstance,
    decode_error_response,
    dicomweb_base,
    local_path,
    not_acceptable,
    open_key,
    require_pixels,
    single_instance,
)
from radsight.dicomweb.wado_metadata import find_bulk_element
from radsight.imaging.decode import DecodeError, NoPixelData, decode_frames, is_encapsulated, read_header
from radsight.imaging.frames import (
    decoded_frame_bytes,
    native_frames,
    single_frame_as_stored,
    stored_encapsulated_frames,
)

router = APIRouter()

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
            if r.part_type in ANY_TYPE | {OCTET} and r.transfer_syntax in (None, "*", ExplicitVRLittleEndian, stored):
                return FramePlan(False, decoded.content_type, OCTET, r.media_type.startswith("multipart/"))
        return None
    codec = FRAME_MEDIA_TYPES.get(stored, OCTET)
    for r in ranges:
        kind, ts, multipart = r.part_type, r.transfer_syntax, r.media_type != r.part_type
        if kind == OCTET:
            if ts in ("*", stored):
                return FramePlan(False, f"{OCTET}; transfer-syntax={stored}", OCTET, multipart)
            if ts in (None, ExplicitVRLittleEndian):
                return FramePlan(True, decoded.content_type, OCTET, multipart)
        elif kind in ANY_TYPE or kind == codec or (kind == "image/*" and codec.startswith("image/")):
            if ts in (None, "*", stored):
                return FramePlan(False, f"{codec}; transfer-syntax={stored}", codec, multipart)
            if ts == ExplicitVRLittleEndian and kind in ANY_TYPE:
                return FramePlan(True, decoded.content_type, OCTET, multipart)
    return None


MAX_FRAME_NUMBERS = 1000
"""Most frames one frames request names; larger sets go out through the instance or its bulk data."""


def parse_frame_list(text: str, frames: int | None = None) -> list[int]:
    """1-based frame numbers from "1,3,5", each at most once: 400 when malformed, repeated or more
    than MAX_FRAME_NUMBERS, 404 when out of range."""
    pieces = text.split(",")
    if len(pieces) > MAX_FRAME_NUMBERS:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"the frame list names {len(pieces)} frames; a request names at most {MAX_FRAME_NUMBERS}",
        )
    numbers: list[int] = []
    seen: set[int] = set()
    for piece in pieces:
        piece = piece.strip()
        # ASCII digits within int()'s default limit of 4300 (it refuses "²" and longer numbers).
        if not (piece.isascii() and piece.isdigit() and len(piece) <= 4300) or int(piece) < 1:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"frame list {text[:80]!r}: frame numbers are integers >= 1"
            )
        number = int(piece)
        if number in seen:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"frame {number} is asked for more than once")
        seen.add(number)
        numbers.append(number)
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


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}")
def retrieve_frames(
    study: str, series: str, instance: str, frame_list: str, request: Request, archive: ArchiveDep
) -> Response:
    parse_frame_list(frame_list)  # 400 before any lookup
    inst = single_instance(archive, study, series, instance)
    require_pixels(inst)
    numbers = parse_frame_list(frame_list, inst.frames)
    plan = frame_plan(parse_accept(request.headers.get("accept")), inst.transfer_syntax_uid)
    if plan is None:
        codec = FRAME_MEDIA_TYPES.get(inst.transfer_syntax_uid, OCTET)
        raise not_acceptable(
            f"frames of this instance (stored as {inst.transfer_syntax_uid}) are available as {codec} "
            f"(as stored) or {OCTET} with transfer-syntax={ExplicitVRLittleEndian}"
        )
    data = frame_bytes(archive, inst, [n - 1 for n in numbers], plan.decode)
    headers = {"Cache-Control": PIXELS_CACHE_CONTROL}
    if not plan.multipart and len(data) == 1:
        return Response(data[0], media_type=plan.content_type, headers=headers)
    base = dicomweb_base(request) + inst.path
    writer = MultipartWriter(plan.part_type)
    parts = [Part(plan.content_type, f"{base}/frames/{n}", data=d) for n, d in zip(numbers, data, strict=True)]
    return Response(b"".join(writer.stream(parts, open_key(archive))), media_type=writer.content_type, headers=headers)


# -- bulk data -------------------------------------------------------------------------------


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag_path:path}")
def retrieve_bulk_data(
    study: str, series: str, instance: str, tag_path: str, request: Request, archive: ArchiveDep
) -> Response:
    inst = single_instance(archive, study, series, instance)
    ranges = parse_accept(request.headers.get("accept"))
    location = dicomweb_base(request) + inst.path + "/bulkdata/" + tag_path
    writer = MultipartWriter(OCTET)
    if tag_path.upper().strip("/") in ("7FE00010", "7FE00008", "7FE00009"):
        require_pixels(inst)
        plan = frame_plan(ranges, inst.transfer_syntax_uid)
        if plan is None:
            raise not_acceptable(f"pixel data is available as {OCTET}")
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
        if not any(r.part_type in ANY_TYPE | {OCTET} for r in ranges):
            raise not_acceptable(f"bulk data is available as {OCTET}")
        value = bytes(elem.value or b"")
        if ranges[0].media_type == OCTET:
            # Asked for as a single part: the value itself (PS3.18 8.7.3.3.2 allows both).
            return Response(value, media_type=OCTET)
        parts = [Part(OCTET, location, data=value)]
    return Response(b"".join(writer.stream(parts, open_key(archive))), media_type=writer.content_type)
