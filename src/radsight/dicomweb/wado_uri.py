"""WADO-URI (PS3.18 chapter 9): ``/wado?requestType=WADO&...``, for older viewers.

The same lookups, transcoding and rendering as WADO-RS (:mod:`radsight.dicomweb.stored`,
:mod:`radsight.dicomweb.wado_rendered`); only the parameters and the single-part responses differ.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from pydicom.uid import ExplicitVRLittleEndian

from radsight.api.deps import ArchiveDep
from radsight.dicomweb.stored import decode_error_response, find_instances, local_path
from radsight.dicomweb.wado_rendered import render_instance
from radsight.imaging.decode import DecodeError
from radsight.imaging.render import MAX_VIEWPORT, MEDIA_TYPES, RenderError, RenderOptions, Window
from radsight.imaging.transcode import to_explicit_little

router = APIRouter()

DICOM = "application/dicom"


def _bad(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, reason)


def _uid(params: dict[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise _bad(f"{name} is required")
    if len(value) > 64 or not all(c.isdigit() or c == "." for c in value):
        raise _bad(f"{name} {value!r} is not a UID")
    return value


def _positive_int(params: dict[str, str], name: str, upper: int) -> int | None:
    if name not in params:
        return None
    try:
        value = int(params[name])
    except ValueError as exc:
        raise _bad(f"{name} must be an integer") from exc
    if not 1 <= value <= upper:
        raise _bad(f"{name} must be 1..{upper}")
    return value


def _float(params: dict[str, str], name: str) -> float | None:
    if name not in params:
        return None
    try:
        return float(params[name])
    except ValueError as exc:
        raise _bad(f"{name} must be a number") from exc


def _content_type(params: dict[str, str], has_pixels: bool) -> str:
    """The first supported type of the contentType list (PS3.18 9.1.2.1.5)."""
    requested = params.get("contentType", "").strip()
    if not requested:
        return "image/jpeg" if has_pixels else DICOM
    for entry in requested.split(","):
        media_type = entry.split(";")[0].strip().lower()
        if media_type in ("*/*", "image/*"):
            return "image/jpeg" if has_pixels else DICOM
        if media_type == DICOM or media_type in MEDIA_TYPES:
            return media_type
    raise HTTPException(
        status.HTTP_406_NOT_ACCEPTABLE, f"contentType {requested!r}: available are {DICOM}, {', '.join(MEDIA_TYPES)}"
    )


def _region(params: dict[str, str]) -> tuple[float, float, float, float] | None:
    if "region" not in params:
        return None
    try:
        left, top, right, bottom = (float(v) for v in params["region"].split(","))
    except ValueError as exc:
        raise _bad("region must be four numbers: xmin,ymin,xmax,ymax (0.0..1.0)") from exc
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise _bad("region must satisfy 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1")
    return left, top, right, bottom


@router.get("/wado")
def wado(request: Request, archive: ArchiveDep) -> Response:
    params = dict(request.query_params)
    if params.get("requestType") != "WADO":
        raise _bad("requestType must be WADO")
    study, series, sop = _uid(params, "studyUID"), _uid(params, "seriesUID"), _uid(params, "objectUID")
    if params.get("anonymize", "").lower() == "yes":
        # Better refused than silently ignored: the caller expects no identifying data.
        raise _bad("anonymize=yes is not supported by this server")
    inst = find_instances(archive, study, series, sop)[0]
    content_type = _content_type(params, inst.has_pixels)
    if content_type == DICOM:
        syntax = params.get("transferSyntax", ExplicitVRLittleEndian).strip()
        path = local_path(archive, inst)
        if syntax in ("*", inst.transfer_syntax_uid):
            return FileResponse(path, media_type=DICOM)
        if syntax != ExplicitVRLittleEndian:
            raise HTTPException(
                status.HTTP_406_NOT_ACCEPTABLE,
                f"transferSyntax {syntax}: this instance is available as stored ({inst.transfer_syntax_uid}) "
                f"or as {ExplicitVRLittleEndian}",
            )
        try:
            data = to_explicit_little(path, dcmtk_fallback=archive.settings.dcmtk_fallback)
        except DecodeError as exc:
            raise decode_error_response(exc) from exc
        return Response(data, media_type=DICOM)

    center, width = _float(params, "windowCenter"), _float(params, "windowWidth")
    if (center is None) != (width is None):
        raise _bad("windowCenter and windowWidth go together")
    try:
        window = Window(center, width) if center is not None and width is not None else None
    except RenderError as exc:
        raise _bad(str(exc)) from exc
    rows = _positive_int(params, "rows", MAX_VIEWPORT)
    columns = _positive_int(params, "columns", MAX_VIEWPORT)
    frame = _positive_int(params, "frameNumber", 1 << 30) or 1
    quality = _positive_int(params, "imageQuality", 100) or 90
    if not inst.has_pixels:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "the object has no pixel data to render; ask for application/dicom"
        )
    if frame > inst.frames:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"frameNumber {frame}: the object has {inst.frames} frame(s)")
    viewport = None
    if rows is not None or columns is not None:
        viewport = (columns or MAX_VIEWPORT, rows or MAX_VIEWPORT)
    options = RenderOptions(
        media_type=content_type, window=window, viewport=viewport, quality=quality, region=_region(params)
    )
    return Response(render_instance(archive, inst, frame - 1, options), media_type=content_type)
