"""DICOMweb WADO-RS (PS3.18 10.4): rendered images (8.3.5.1) and thumbnails of a study, series,
instance or frame.

A rendering is decoded from the stored file and drawn by :mod:`radsight.imaging.render`;
small ones (thumbnails) are kept in a process-wide LRU cache keyed by the storage key.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from radsight.api.deps import ArchiveDep
from radsight.archive import Archive
from radsight.dicomweb.multipart import MultipartWriter, Part, parse_accept
from radsight.dicomweb.stored import (
    PIXELS_CACHE_CONTROL,
    StoredInstance,
    decode_error_response,
    dicomweb_base,
    find_instances,
    local_path,
    not_acceptable,
    open_key,
    require_pixels,
    single_instance,
)
from radsight.dicomweb.wado_frames import parse_frame_list
from radsight.imaging.decode import DecodeError, NoPixelData, decode_frames, read_header
from radsight.imaging.render import MAX_VIEWPORT, MEDIA_TYPES, RenderError, RenderOptions, Window, render

log = logging.getLogger(__name__)

router = APIRouter()

THUMBNAIL_SIZE = 128
THUMBNAIL_QUALITY = 85


# -- query parameters ------------------------------------------------------------------------


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
        kind = r.part_type
        if kind in MEDIA_TYPES:
            return kind
        if kind in ("*/*", "image/*"):
            return "image/jpeg"
    raise not_acceptable(f"rendered images are available as {', '.join(MEDIA_TYPES)}")


@dataclass
class ThumbnailQuery:
    """The query parameters of a thumbnail (PS3.18 10.4.1.1.4): a FastAPI dependency
    (``Annotated[ThumbnailQuery, Depends()]``)."""

    viewport: Annotated[str | None, Query(description="width,height")] = None
    accept: Annotated[str | None, Query(description="media type, instead of the Accept header")] = None

    def options(self, request: Request) -> RenderOptions:
        """The rendering asked for; 406 for a media type not offered, 400 for a malformed parameter."""
        return RenderOptions(
            media_type=rendered_media_type(request, self.accept),
            viewport=parse_viewport(self.viewport) or (THUMBNAIL_SIZE, THUMBNAIL_SIZE),
            quality=THUMBNAIL_QUALITY,
        )


@dataclass
class RenderQuery(ThumbnailQuery):
    """The query parameters of a rendered resource (PS3.18 8.3.5.1): the thumbnail's and
    ``window`` and ``quality``. A FastAPI dependency, as :data:`RenderQueryDep`."""

    window: Annotated[str | None, Query(description="center,width[,function]")] = None
    quality: Annotated[int | None, Query()] = None

    def options(self, request: Request) -> RenderOptions:
        media_type = rendered_media_type(request, self.accept)
        return RenderOptions(
            media_type=media_type,
            window=parse_window(self.window),
            viewport=parse_viewport(self.viewport),
            quality=parse_quality(self.quality),
        )


RenderQueryDep = Annotated[RenderQuery, Depends()]
ThumbnailQueryDep = Annotated[ThumbnailQuery, Depends()]


# -- rendering -------------------------------------------------------------------------------

_CACHED_VIEWPORT = 256


def _render(path: str, storage_key: str, index: int, options: RenderOptions, dcmtk: bool) -> bytes:
    header = read_header(Path(path))
    arr = decode_frames(Path(path), header, [index], dcmtk_fallback=dcmtk)[0]
    return render(arr, header, options)


# Keyed by storage key too: an overwritten instance gets a new key, so never a stale image.
_render_small = functools.lru_cache(maxsize=1024)(_render)


def render_instance(archive: Archive, inst: StoredInstance, index: int, options: RenderOptions) -> bytes:
    """The rendered frame; small renderings (thumbnails) are kept in a process-wide LRU cache."""
    require_pixels(inst)
    path = str(local_path(archive, inst))
    small = options.viewport is not None and max(options.viewport) <= _CACHED_VIEWPORT
    draw = _render_small if small else _render
    try:
        return draw(path, inst.storage_key, index, options, archive.settings.dcmtk_fallback)
    except (DecodeError, NoPixelData) as exc:
        raise decode_error_response(exc) from exc
    except RenderError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


# -- resources -------------------------------------------------------------------------------


def _rendered(
    archive: Archive, request: Request, inst: StoredInstance, index: int, query: ThumbnailQuery
) -> Response:
    """One frame (0-based ``index``) of one instance, rendered as ``query`` asks."""
    options = query.options(request)
    if not 0 <= index < inst.frames:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"frame {index + 1} does not exist")
    body = render_instance(archive, inst, index, options)
    return Response(body, media_type=options.media_type, headers={"Cache-Control": PIXELS_CACHE_CONTROL})


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
def rendered_instance(
    study: str, series: str, instance: str, request: Request, archive: ArchiveDep, query: RenderQueryDep
) -> Response:
    inst = single_instance(archive, study, series, instance)
    # A multi-frame instance in a single-image format: its first frame.
    return _rendered(archive, request, inst, 0, query)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}/rendered")
def rendered_frame(
    study: str,
    series: str,
    instance: str,
    frame_list: str,
    request: Request,
    archive: ArchiveDep,
    query: RenderQueryDep,
) -> Response:
    numbers = parse_frame_list(frame_list)
    if len(numbers) != 1:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "a rendered frame request names one frame")
    inst = single_instance(archive, study, series, instance)
    return _rendered(archive, request, inst, numbers[0] - 1, query)


def _rendered_many(archive: Archive, request: Request, instances: list[StoredInstance], query: RenderQuery) -> Response:
    """Series / study rendered (PS3.18 10.4.1.1.3): one rendered part per image instance (its first
    frame), each rendered only when the stream reaches it."""
    options = query.options(request)
    images = [i for i in instances if i.has_pixels]
    if not images:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no instance with pixel data to render")
    base = dicomweb_base(request)
    writer = MultipartWriter(options.media_type)
    parts = [
        Part(
            options.media_type,
            f"{base}{inst.path}/rendered",
            produce=functools.partial(_render_part, archive, inst, options),
        )
        for inst in images
    ]
    return StreamingResponse(writer.stream(parts, open_key(archive)), media_type=writer.content_type)


def _render_part(archive: Archive, inst: StoredInstance, options: RenderOptions) -> bytes:
    try:
        return render_instance(archive, inst, 0, options)
    except HTTPException:
        # Already streaming: cut the connection (the client sees an incomplete response).
        log.exception("rendering %s failed during a series/study rendered response", inst.sop_instance_uid)
        raise


@router.get("/studies/{study}/rendered")
def rendered_study(study: str, request: Request, archive: ArchiveDep, query: RenderQueryDep) -> Response:
    return _rendered_many(archive, request, find_instances(archive, study), query)


@router.get("/studies/{study}/series/{series}/rendered")
def rendered_series(study: str, series: str, request: Request, archive: ArchiveDep, query: RenderQueryDep) -> Response:
    return _rendered_many(archive, request, find_instances(archive, study, series), query)


def _middle_image(instances: list[StoredInstance]) -> StoredInstance:
    images = [i for i in instances if i.has_pixels]
    if not images:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no instance with pixel data to make a thumbnail of")
    return images[len(images) // 2]


def _thumbnail(archive: Archive, request: Request, inst: StoredInstance, query: ThumbnailQuery) -> Response:
    return _rendered(archive, request, inst, inst.frames // 2, query)


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(study: str, request: Request, archive: ArchiveDep, query: ThumbnailQueryDep) -> Response:
    instances = find_instances(archive, study)
    # The first series (by series number) with images, its middle instance.
    for series_uid in dict.fromkeys(i.series_uid for i in instances):
        images = [i for i in instances if i.series_uid == series_uid and i.has_pixels]
        if images:
            return _thumbnail(archive, request, _middle_image(images), query)
    raise HTTPException(status.HTTP_404_NOT_FOUND, "the study has no instance with pixel data")


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(
    study: str, series: str, request: Request, archive: ArchiveDep, query: ThumbnailQueryDep
) -> Response:
    return _thumbnail(archive, request, _middle_image(find_instances(archive, study, series)), query)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail")
def instance_thumbnail(
    study: str, series: str, instance: str, request: Request, archive: ArchiveDep, query: ThumbnailQueryDep
) -> Response:
    inst = single_instance(archive, study, series, instance)
    require_pixels(inst)
    return _thumbnail(archive, request, inst, query)
