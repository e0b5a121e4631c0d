"""DICOMweb QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Matching is done by :mod:`radsight.index.query` (the same engine as C-FIND). Choices:

- Results are ``application/dicom+json``; no match is ``200 []`` (PS3.18 allows 200 with an
  empty array; dicomweb-client and OHIF read it as "no results").
- Each result has the level's default attributes (PS3.18 Tables 10.6.3-3 to -5; ``/series``
  and ``/instances`` add the study (and series) defaults), RetrieveURL and InstanceAvailability.
- ``includefield`` names attributes (keyword or tag, comma-separated or repeated) or ``all``
  (every indexed attribute of the level). Attributes that are not index columns are read from
  the header of one stored instance of the study / series (the instance itself at instance
  level); that file read happens only when such an attribute is asked for.
- Matching on an attribute that is not indexed is refused with 400 naming the attribute
  (rather than ignoring it, which would return results that do not match what was asked).
- ``fuzzymatching=true`` is not supported: the query runs with literal matching and a
  ``Warning: 299`` header says so, as PS3.18 8.3.4 asks of an origin server without it.
- ``limit`` / ``offset`` page in SQL. When more results exist beyond the page (or beyond
  ``MAX_RESULTS`` without a limit) a ``Warning: 299`` header says so.
- Unknown parameters or attribute names, bad dates, bad numbers: 400 with the reason.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pydicom
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.errors import InvalidDicomError
from sqlalchemy import select

from radsight.api.deps import ArchiveDep, SessionDep
from radsight.archive import Archive
from radsight.index import query
from radsight.index.models import Instance, Series, Study
from radsight.index.query import QueryLevel

log = logging.getLogger(__name__)
router = APIRouter()

DICOM_JSON = "application/dicom+json"
MAX_RESULTS = 10_000
"""Most results one response carries (a larger ``limit`` is lowered to it, with a Warning)."""
MAX_OFFSET = 2**63 - 1
"""Largest ``offset``: SQL's OFFSET is a signed 64-bit integer on SQLite and PostgreSQL."""

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CONTROL_PARAMS = {"includefield", "fuzzymatching", "limit", "offset", "accept", "charset", "orderby"}
_SEQUENCE_PATH = re.compile(r"^[^.]+\.[^.]+")
_ACCEPTABLE = {"application/dicom+json", "application/json", "application/*", "*/*"}


def _bad(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail)


def _int_param(name: str, value: str | None, minimum: int, maximum: int | None = None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _bad(f"{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise _bad(f"{name} must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise _bad(f"{name} must be at most {maximum}")
    return number


def _keyword(name: str) -> str:
    if _SEQUENCE_PATH.match(name):
        raise _bad(f"{name!r}: matching on attributes inside sequences is not supported")
    try:
        return query.keyword_for(name)
    except query.UnknownAttribute as exc:
        raise _bad(str(exc)) from None


def _check_accept(request: Request) -> None:
    accept = request.query_params.get("accept") or request.headers.get("accept")
    if not accept:
        return
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in _ACCEPTABLE:
            return
    raise HTTPException(
        status.HTTP_406_NOT_ACCEPTABLE, f"results are available as {DICOM_JSON} only (asked for {accept!r})"
    )


class _Query:
    """The parsed query parameters of one request."""

    def __init__(self, request: Request, level: QueryLevel) -> None:
        self.level = level
        self.filters: dict[str, str] = {}
        self.include: list[str] = []  # keywords asked for with includefield
        self.include_all = False
        self.warnings: list[str] = []
        single: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name == "includefield":
                for item in (v.strip() for v in value.split(",")):
                    if item == "all":
                        self.include_all = True
                    elif item:
                        self.include.append(_keyword(item))
                continue
            key = name if name in _CONTROL_PARAMS else _keyword(name)
            if key in single:
                raise _bad(f"{name} is given more than once")
            single[key] = value
        fuzzy = single.pop("fuzzymatching", "false").lower()
        if fuzzy not in ("true", "false"):
            raise _bad("fuzzymatching must be true or false")
        if fuzzy == "true":
            self.warnings.append(
                "The fuzzymatching parameter is not supported. Only literal matching has been performed."
            )
        self.limit = _int_param("limit", single.pop("limit", None), 1)
        self.offset = _int_param("offset", single.pop("offset", None), 0, MAX_OFFSET) or 0
        single.pop("accept", None)
        single.pop("charset", None)
        # ``orderby`` is not in PS3.18; dcm4chee-arc offers it under this name (comma-separated
        # keywords, ``-`` for descending). Worklists need server-side sorting to page through
        # tens of thousands of studies, so RadSight offers it the same way.
        self.order_by: list[tuple[str, bool]] = []
        for item in (v.strip() for v in single.pop("orderby", "").split(",")):
            if item:
                self.order_by.append((_keyword(item.lstrip("-")), item.startswith("-")))
        for keyword, value in single.items():
            tag = tag_for_keyword(keyword)
            if tag is not None and dictionary_VR(tag) == "UI":
                value = value.replace(",", "\\")  # PS3.18 8.3.4.1: UID lists are comma-separated
            self.filters[keyword] = value

    def set_path(self, keyword: str, uid: str) -> None:
        if len(uid) > 64 or not _UID.match(uid):
            raise _bad(f"{uid!r} in the path is not a valid {keyword}")
        given = self.filters.get(keyword)
        if given not in (None, "", uid):
            raise _bad(f"{keyword} is {uid} in the path and {given!r} in the query")
        self.filters[keyword] = uid


def _header_source(session: Any, level: QueryLevel, ds: pydicom.Dataset) -> str | None:
    """Storage key of the instance whose header completes ``ds`` (the first stored of its entity)."""
    stmt = select(Instance.storage_key).order_by(Instance.id).limit(1)
    if level is QueryLevel.IMAGE:
        stmt = stmt.where(Instance.sop_instance_uid == ds.SOPInstanceUID)
    elif level is QueryLevel.SERIES:
        stmt = stmt.join(Series, Instance.series_pk == Series.id).where(
            Series.series_instance_uid == ds.SeriesInstanceUID
        )
    else:
        stmt = (
            stmt.join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_instance_uid == ds.StudyInstanceUID)
        )
    key: str | None = session.scalar(stmt)
    return key


def _add_from_header(archive: Archive, key: str | None, ds: pydicom.Dataset, keywords: list[str]) -> None:
    if key is None:
        return
    path = archive.storage.local_path(key)
    header: pydicom.Dataset
    try:
        with path.open("rb") if path is not None else archive.storage.open(key) as fh:
            header = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=list(keywords))
        header.decode()  # text in the file's character set -> str; the result is ISO_IR 192
    except (OSError, InvalidDicomError, ValueError) as exc:
        # The index answered; one unreadable file must not fail the search (`radsight check` reports it).
        log.warning("includefield: cannot read the header of %s: %s", key, exc)
        header = pydicom.Dataset()
    for keyword in keywords:
        if keyword in header:
            ds.add(header[keyword])
        else:
            tag = tag_for_keyword(keyword)
            assert tag is not None
            ds.add_new(tag, dictionary_VR(tag), None)


def _retrieve_url(root: str, level: QueryLevel, ds: pydicom.Dataset) -> str:
    url = f"{root}/studies/{ds.StudyInstanceUID}"
    if level in (QueryLevel.SERIES, QueryLevel.IMAGE):
        url += f"/series/{ds.SeriesInstanceUID}"
    if level is QueryLevel.IMAGE:
        url += f"/instances/{ds.SOPInstanceUID}"
    return url


def _search(
    request: Request,
    archive: Archive,
    session: Any,
    level: QueryLevel,
    *,
    study: str | None = None,
    series: str | None = None,
    with_levels_above: tuple[QueryLevel, ...] = (),
) -> JSONResponse:
    _check_accept(request)
    q = _Query(request, level)
    if study is not None:
        q.set_path("StudyInstanceUID", study)
    if series is not None:
        q.set_path("SeriesInstanceUID", series)

    indexed = query.attributes(level)
    wanted = dict(q.filters)
    for above in with_levels_above:
        for key in query.DEFAULT_KEYS[above]:
            wanted.setdefault(key, "")
    if q.include_all:
        for key in indexed:
            wanted.setdefault(key, "")
    from_header = []
    for key in q.include:
        if key in indexed:
            wanted.setdefault(key, "")
        elif key not in wanted and key not in from_header:
            from_header.append(key)
    unindexed = sorted(k for k, v in wanted.items() if k not in indexed and v.strip(" "))
    if unindexed:
        raise _bad(
            f"matching on {', '.join(unindexed)} is not supported here; attributes that can be matched: "
            + ", ".join(sorted(k for k, a in indexed.items() if a.kind is not query.Kind.COUNT))
        )
    # Asked for with an empty value but not indexed: returned from a stored header.
    from_header += [k for k in wanted if k not in indexed and k not in from_header]
    wanted = {k: v for k, v in wanted.items() if k in indexed}
    wanted["InstanceAvailability"] = ""

    page = min(q.limit, MAX_RESULTS) if q.limit is not None else MAX_RESULTS
    try:
        results = query.search(session, level, wanted, limit=page + 1, offset=q.offset, order_by=q.order_by)
    except query.QueryError as exc:
        raise _bad(str(exc)) from None
    if len(results) > page:
        results = results[:page]
        q.warnings.append(
            "There are additional results that can be requested"
            + ("" if page == q.limit else f" (at most {MAX_RESULTS} results are returned per request)")
        )

    root = str(request.url_for("search_for_studies")).rsplit("/studies", 1)[0]
    body = []
    for ds in results:
        del ds.QueryRetrieveLevel
        if from_header:
            _add_from_header(archive, _header_source(session, level, ds), ds, from_header)
        ds.RetrieveURL = _retrieve_url(root, level, ds)
        body.append(ds.to_json_dict())
    headers = {"Warning": ", ".join(f'299 {root}: "{w}"' for w in q.warnings)} if q.warnings else None
    return JSONResponse(body, media_type=DICOM_JSON, headers=headers)


@router.get("/studies", name="search_for_studies")
def search_for_studies(request: Request, archive: ArchiveDep, session: SessionDep) -> JSONResponse:
    return _search(request, archive, session, QueryLevel.STUDY)


@router.get("/series", name="search_for_series")
def search_for_series(request: Request, archive: ArchiveDep, session: SessionDep) -> JSONResponse:
    return _search(request, archive, session, QueryLevel.SERIES, with_levels_above=(QueryLevel.STUDY,))


@router.get("/studies/{study}/series", name="search_for_study_series")
def search_for_study_series(study: str, request: Request, archive: ArchiveDep, session: SessionDep) -> JSONResponse:
    return _search(request, archive, session, QueryLevel.SERIES, study=study)


@router.get("/instances", name="search_for_instances")
def search_for_instances(request: Request, archive: ArchiveDep, session: SessionDep) -> JSONResponse:
    return _search(request, archive, session, QueryLevel.IMAGE, with_levels_above=(QueryLevel.STUDY, QueryLevel.SERIES))


@router.get("/studies/{study}/instances", name="search_for_study_instances")
def search_for_study_instances(study: str, request: Request, archive: ArchiveDep, session: SessionDep) -> JSONResponse:
    return _search(request, archive, session, QueryLevel.IMAGE, study=study, with_levels_above=(QueryLevel.SERIES,))


@router.get("/studies/{study}/series/{series}/instances", name="search_for_series_instances")
def search_for_series_instances(
    study: str, series: str, request: Request, archive: ArchiveDep, session: SessionDep
) -> JSONResponse:
    return _search(request, archive, session, QueryLevel.IMAGE, study=study, series=series)
