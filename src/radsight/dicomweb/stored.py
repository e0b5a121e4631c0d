"""The stored instances WADO-RS and WADO-URI serve: looked up in the index (never by reading
headers), their stored objects, and the errors every retrieval resource shares.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from fastapi import HTTPException, Request, status
from sqlalchemy import Select, bindparam, select

from radsight.archive import Archive
from radsight.imaging.decode import NoPixelData
from radsight.index.models import Instance, Series, Study

# Responses derived from an instance's pixels (frames, renderings): an instance never changes
# under its storage key, so clients may keep them.
PIXELS_CACHE_CONTROL = "private, max-age=86400"


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
    """find_instances' query, built once per shape with bound parameters (a retrieval is one query,
    and building SQLAlchemy's expression objects costs more than running it)."""
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


def single_instance(archive: Archive, study: str, series: str, instance: str) -> StoredInstance:
    return find_instances(archive, study, series, instance)[0]


def local_path(archive: Archive, inst: StoredInstance) -> Path:
    path = archive.storage.local_path(inst.storage_key)
    if path is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the stored object of {inst.sop_instance_uid} is missing")
    return path


def open_key(archive: Archive) -> Callable[[str], BinaryIO]:
    """How a multipart writer opens the stored objects of its parts."""
    return archive.storage.open


def dicomweb_base(request: Request) -> str:
    """The DICOMweb service root of the request's base URL, which Content-Location headers and
    BulkDataURIs start with."""
    return str(request.base_url).rstrip("/") + "/dicomweb"


def require_pixels(inst: StoredInstance) -> None:
    if not inst.has_pixels:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"instance {inst.sop_instance_uid} has no pixel data")


def not_acceptable(what: str) -> HTTPException:
    return HTTPException(status.HTTP_406_NOT_ACCEPTABLE, what)


def decode_error_response(exc: Exception) -> HTTPException:
    if isinstance(exc, NoPixelData):
        return HTTPException(status.HTTP_404_NOT_FOUND, "the instance has no pixel data")
    # Not a server fault: this archive holds data no installed decoder can read.
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"pixel data cannot be decoded: {exc}")
