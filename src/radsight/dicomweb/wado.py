"""DICOMweb WADO-RS (PS3.18 10.4): instances and their metadata.

Retrieval sends the stored files unchanged when the client accepts the stored transfer
syntax (the default), streamed from storage; ``transfer-syntax=1.2.840.10008.1.2.1`` gets
an uncompressed transcoded copy, one instance at a time. Everything is looked up in the
index; headers are read only for metadata (then cached). Frames and bulk data are in
:mod:`radsight.dicomweb.wado_frames`, rendered images and thumbnails in
:mod:`radsight.dicomweb.wado_rendered`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import StreamingResponse
from pydicom.uid import ExplicitVRLittleEndian

from radsight.api.deps import ArchiveDep
from radsight.archive import Archive
from radsight.dicomweb.multipart import ANY_TYPE, CHUNK_BYTES, MediaRange, MultipartWriter, Part, parse_accept
from radsight.dicomweb.stored import (
    StoredInstance,
    decode_error_response,
    dicomweb_base,
    find_instances,
    local_path,
    not_acceptable,
    open_key,
)
from radsight.dicomweb.wado_metadata import ensure_cached, join_metadata
from radsight.imaging.decode import DecodeError
from radsight.imaging.transcode import to_explicit_little
from radsight.storage.base import StorageError

log = logging.getLogger(__name__)

router = APIRouter()

DICOM_JSON = "application/dicom+json"


# -- retrieve instances ---------------------------------------------------------------------


def dicom_output_syntax(ranges: list[MediaRange], stored: str) -> str | None:
    """The transfer syntax an instance goes out in: the stored one, Explicit VR LE, or None.

    No transfer-syntax parameter (and ``*``) means as stored: byte-identical retrieval is
    what archives and viewers expect, and it costs no decoding.
    """
    for r in ranges:
        if r.part_type not in ANY_TYPE | {"application/dicom"}:
            continue
        ts = r.transfer_syntax
        if ts in (None, "*", stored):
            return stored
        if ts == ExplicitVRLittleEndian:
            return ExplicitVRLittleEndian
    return None


def retrieve(
    request: Request, archive: Archive, study: str, series: str | None = None, instance: str | None = None
) -> Response:
    """The instances of a study / series / instance as ``multipart/related; type=application/dicom``.

    Blocking (index, storage, transcoding): the routes run in the thread pool, the DICOMweb fast
    path in the event loop's executor; both answer with this.
    """
    return retrieve_response(archive, request, find_instances(archive, study, series, instance))


def retrieve_response(archive: Archive, request: Request, instances: list[StoredInstance]) -> Response:
    ranges = parse_accept(request.headers.get("accept"))
    base = dicomweb_base(request)
    plans: list[tuple[StoredInstance, str]] = []
    for inst in instances:
        syntax = dicom_output_syntax(ranges, inst.transfer_syntax_uid)
        if syntax is None:
            raise not_acceptable(
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
        # A body the stream would write in one piece anyway (a series of CT slices as stored, a
        # single instance) is read here and answered whole: no thread hand-over per write and no
        # disconnect watcher (docs/benchmarks.md).
        try:
            chunks = list(writer.stream(parts, open_key(archive)))
        except StorageError:
            _require_stored(archive, parts, instances)  # the 404 naming the instance
            raise
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one buffer, not copied again
        return Response(body, media_type=writer.content_type)
    _require_stored(archive, parts, instances)  # before streaming starts, rather than cutting it short
    headers = {"Content-Length": str(length)} if length is not None else {}
    return StreamingResponse(writer.stream(parts, open_key(archive)), media_type=writer.content_type, headers=headers)


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
    return retrieve(request, archive, study)


@router.get("/studies/{study}/series/{series}")
def retrieve_series(study: str, series: str, request: Request, archive: ArchiveDep) -> Response:
    return retrieve(request, archive, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}")
def retrieve_instance(study: str, series: str, instance: str, request: Request, archive: ArchiveDep) -> Response:
    return retrieve(request, archive, study, series, instance)


# -- metadata --------------------------------------------------------------------------------


def _check_json_accept(request: Request) -> None:
    for r in parse_accept(request.headers.get("accept")):
        if r.part_type in ANY_TYPE | {DICOM_JSON, "application/json"}:
            return
    raise not_acceptable(f"metadata is available as {DICOM_JSON}")


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
