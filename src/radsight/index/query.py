"""Attribute matching over the index, shared by QIDO-RS and DIMSE C-FIND.

``search(session, level, filters)`` takes DICOM keywords mapped to C-FIND matching values
(PS3.4 C.2.2.2) and returns one identifier Dataset per match:

- ``""`` or ``"*"``: universal matching (the attribute is returned, nothing is filtered);
- a single value: exact matching; ``*`` and ``?`` make it wild card matching;
- ``a\\b``: list matching (any of the values);
- DA / TM: ranges ``a-b``, ``-b``, ``a-`` (a partial date such as ``2020`` covers the year);
- PN: case-insensitive (exact and wild card), matched against the whole name and against each
  component group (alphabetic, ideographic, phonetic), so ``山田*`` finds ``Yamada^Tarou=山田^太郎``;
- other strings: case-sensitive, as PS3.4 asks;
- ModalitiesInStudy matches when any of the study's modalities matches.

Attributes that are not index columns cannot be matched here. A non-empty value for one
raises :class:`UnsupportedMatchingKey` (listing every such key) instead of being ignored or
guessed: the caller decides whether to refuse the query (QIDO-RS answers 400) or to drop
those keys and match without them (PS3.4 C.2.2.1.3 allows an SCP to ignore optional keys;
:func:`split_filters` does the split). Requested with an empty value they are not returned
either: the caller may read them from a stored header (QIDO-RS ``includefield``).

Each identifier holds SpecificCharacterSet ``ISO_IR 192`` (values are Python str),
QueryRetrieveLevel, the UIDs of the level and the levels above, every indexed key asked for,
and the level's default attributes (PS3.18 Tables 10.6.3-3 to -5). The SQL is one SELECT per
query: study level reads the study table only (patient attributes are denormalised there),
series and image levels join upwards by primary key; limit and offset are applied in SQL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pydicom
from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag, Tag
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from radsight.index.models import Instance, Patient, Series, Study

MAX_LIST_VALUES = 100
"""Most values of one list match (``a\\b``) on a pattern-matched attribute: each value is up to
four LIKE/GLOB terms OR-ed together, and SQLite refuses an expression more than 1000 deep."""
MAX_UID_LIST_VALUES = 1000
"""Most values of a list match on UIDs and integers (one ``IN`` of bound parameters)."""


class QueryLevel(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class QueryError(ValueError):
    """A query that cannot be run as asked; the message says why."""


class UnknownAttribute(QueryError):
    """A key that is not a DICOM keyword."""


class UnsupportedMatchingKey(QueryError):
    """A non-empty matching value for attributes the index has no column for."""

    def __init__(self, keywords: Iterable[str], level: QueryLevel) -> None:
        self.keywords = sorted(keywords)
        self.level = level
        super().__init__(
            f"matching on {', '.join(self.keywords)} is not supported at {level} level "
            "(not an index column, or a return-only key such as a Number Of ... Related ... counter)"
        )


class InvalidMatchValue(QueryError):
    """A matching value that is not valid for the attribute's VR (a bad date, a non-number)."""


# -- the attributes the index can match -------------------------------------------------------


class Kind(StrEnum):
    UID = "UI"
    PN = "PN"
    DATE = "DA"
    TIME = "TM"
    TEXT = "TEXT"  # SH, LO, CS: case-sensitive
    INT = "INT"
    MULTI_CS = "MULTI_CS"  # a backslash-joined list in one column (ModalitiesInStudy)
    COUNT = "COUNT"  # a computed number: returned, never matched


@dataclass(frozen=True, slots=True)
class Attr:
    keyword: str
    column: ColumnElement[Any]  # an InstrumentedAttribute or a scalar subquery
    kind: Kind


def _attrs(*items: tuple[str, Any, Kind]) -> dict[str, Attr]:
    return {k: Attr(k, c, kind) for k, c, kind in items}


_patient_studies = select(func.count(Study.id)).where(Study.patient_pk == Patient.id).scalar_subquery()
_patient_series = (
    select(func.coalesce(func.sum(Study.number_of_series), 0)).where(Study.patient_pk == Patient.id).scalar_subquery()
)
_patient_instances = (
    select(func.coalesce(func.sum(Study.number_of_instances), 0))
    .where(Study.patient_pk == Patient.id)
    .scalar_subquery()
)

PATIENT_ATTRS = _attrs(
    ("PatientName", Patient.patient_name, Kind.PN),
    ("PatientID", Patient.patient_id, Kind.TEXT),
    ("IssuerOfPatientID", Patient.issuer_of_patient_id, Kind.TEXT),
    ("PatientBirthDate", Patient.patient_birth_date, Kind.DATE),
    ("PatientSex", Patient.patient_sex, Kind.TEXT),
    ("NumberOfPatientRelatedStudies", _patient_studies, Kind.COUNT),
    ("NumberOfPatientRelatedSeries", _patient_series, Kind.COUNT),
    ("NumberOfPatientRelatedInstances", _patient_instances, Kind.COUNT),
)

STUDY_ATTRS = _attrs(
    ("StudyInstanceUID", Study.study_instance_uid, Kind.UID),
    ("StudyDate", Study.study_date, Kind.DATE),
    ("StudyTime", Study.study_time, Kind.TIME),
    ("AccessionNumber", Study.accession_number, Kind.TEXT),
    ("StudyID", Study.study_id, Kind.TEXT),
    ("StudyDescription", Study.study_description, Kind.TEXT),
    ("ReferringPhysicianName", Study.referring_physician_name, Kind.PN),
    ("PatientName", Study.patient_name, Kind.PN),
    ("PatientID", Study.patient_id, Kind.TEXT),
    ("PatientBirthDate", Study.patient_birth_date, Kind.DATE),
    ("PatientSex", Study.patient_sex, Kind.TEXT),
    ("ModalitiesInStudy", Study.modalities_in_study, Kind.MULTI_CS),
    ("NumberOfStudyRelatedSeries", Study.number_of_series, Kind.COUNT),
    ("NumberOfStudyRelatedInstances", Study.number_of_instances, Kind.COUNT),
)

SERIES_ATTRS = _attrs(
    ("SeriesInstanceUID", Series.series_instance_uid, Kind.UID),
    ("Modality", Series.modality, Kind.TEXT),
    ("SeriesNumber", Series.series_number, Kind.INT),
    ("SeriesDescription", Series.series_description, Kind.TEXT),
    ("SeriesDate", Series.series_date, Kind.DATE),
    ("SeriesTime", Series.series_time, Kind.TIME),
    ("BodyPartExamined", Series.body_part_examined, Kind.TEXT),
    ("PerformedProcedureStepStartDate", Series.performed_procedure_step_start_date, Kind.DATE),
    ("PerformedProcedureStepStartTime", Series.performed_procedure_step_start_time, Kind.TIME),
    ("NumberOfSeriesRelatedInstances", Series.number_of_instances, Kind.COUNT),
)

INSTANCE_ATTRS = _attrs(
    ("SOPInstanceUID", Instance.sop_instance_uid, Kind.UID),
    ("SOPClassUID", Instance.sop_class_uid, Kind.UID),
    ("InstanceNumber", Instance.instance_number, Kind.INT),
    ("Rows", Instance.rows, Kind.INT),
    ("Columns", Instance.columns, Kind.INT),
    ("BitsAllocated", Instance.bits_allocated, Kind.INT),
    ("NumberOfFrames", Instance.number_of_frames, Kind.INT),
)

DEFAULT_KEYS: dict[QueryLevel, tuple[str, ...]] = {
    QueryLevel.PATIENT: (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    QueryLevel.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "StudyDescription",
    ),
    QueryLevel.SERIES: (
        "Modality",
        "SeriesDescription",
        "SeriesNumber",
        "SeriesInstanceUID",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "BodyPartExamined",
    ),
    QueryLevel.IMAGE: (
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}
"""The attributes returned at each level whether asked for or not (PS3.18 Tables 10.6.3-3 to -5)."""

# Keys a C-FIND identifier carries that are not matching keys.
_CONTROL_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"})


def attributes(level: QueryLevel) -> dict[str, Attr]:
    """Every indexed attribute that can be matched or returned at ``level``.

    Series and image levels include the attributes of the levels above (QIDO-RS ``/series``
    and ``/instances`` may match on study attributes).
    """
    if level is QueryLevel.PATIENT:
        return PATIENT_ATTRS
    if level is QueryLevel.STUDY:
        return STUDY_ATTRS
    if level is QueryLevel.SERIES:
        return {**STUDY_ATTRS, **SERIES_ATTRS}
    return {**STUDY_ATTRS, **SERIES_ATTRS, **INSTANCE_ATTRS}


def is_indexed(level: QueryLevel, keyword: str) -> bool:
    return keyword in attributes(QueryLevel(level))


def split_filters(level: QueryLevel, filters: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(keys ``search`` can match or return, the keys it cannot match) for callers that ignore the latter.

    Return-only keys (the Number Of ... Related ... counters) given a value are in both: in
    the first with an empty value (they are returned), in the second with the value given.
    """
    known = attributes(QueryLevel(level))
    inside: dict[str, str] = {}
    outside: dict[str, str] = {}
    for key, value in filters.items():
        attr = known.get(key)
        if attr is None and key not in _CONTROL_KEYS:
            outside[key] = value
        elif attr is not None and attr.kind is Kind.COUNT and value.strip(" \x00*"):
            inside[key], outside[key] = "", value
        else:
            inside[key] = value
    return inside, outside


# -- matching -------------------------------------------------------------------------------------

_LIKE_ESCAPE = "!"
_DATE = re.compile(r"^\d{4}(\d{2}(\d{2})?)?$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _is_wild(value: str) -> bool:
    return "*" in value or "?" in value


def _like_pattern(value: str) -> str:
    out = []
    for ch in value:
        if ch in "%_" + _LIKE_ESCAPE:
            out.append(_LIKE_ESCAPE + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _glob_pattern(value: str) -> str:
    # SQLite's GLOB is case-sensitive (its LIKE is not); only '[' needs escaping, '*' and
    # '?' are the same wild cards as DICOM's.
    return value.replace("[", "[[]")


class _Matcher:
    """Builds SQL conditions for one database dialect."""

    def __init__(self, session: Session) -> None:
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        if self.sqlite:
            _register_sqlite_lower(session)

    def lower(self, col: Any) -> ColumnElement[Any]:
        # SQLite's lower() folds ASCII only; ours (registered per connection) folds Unicode.
        return func.radsight_lower(col) if self.sqlite else func.lower(col)

    def ascii_ci(self, value: str, ci: bool) -> bool:
        """SQLite's LIKE and NOCASE ignore the case of ASCII letters, in C. For an ASCII value they
        match what folding the column with ``radsight_lower`` does, without a Python call per row
        (a PatientName wildcard search scanned 10,000 studies calling it up to four times each).
        The one difference: a non-ASCII character whose lower case is ASCII (KELVIN SIGN) no
        longer matches that ASCII letter."""
        return ci and self.sqlite and value.isascii()

    def like(self, col: ColumnElement[Any], value: str, *, ci: bool) -> ColumnElement[bool]:
        if self.ascii_ci(value, ci):
            return col.like(_like_pattern(value), escape=_LIKE_ESCAPE)
        if ci:
            return self.lower(col).like(_like_pattern(value.lower()), escape=_LIKE_ESCAPE)
        if self.sqlite:
            return col.op("GLOB")(_glob_pattern(value))
        return col.like(_like_pattern(value), escape=_LIKE_ESCAPE)

    def equal(self, col: ColumnElement[Any], value: str, *, ci: bool) -> ColumnElement[bool]:
        if self.ascii_ci(value, ci):
            return col.collate("NOCASE") == value
        if ci:
            return self.lower(col) == value.lower()
        return col == value

    def one(self, col: ColumnElement[Any], value: str, *, ci: bool) -> ColumnElement[bool]:
        return self.like(col, value, ci=ci) if _is_wild(value) else self.equal(col, value, ci=ci)

    def element(self, col: ColumnElement[Any], value: str, sep: str, *, ci: bool) -> ColumnElement[bool]:
        """``value`` matches the whole column or one ``sep``-separated element of it."""
        fold_in_sql = ci and not self.ascii_ci(value, ci)  # else SQLite's LIKE ignores ASCII case
        if ci:
            value = value.lower()
        pattern = _like_pattern(value) if not self.sqlite or ci else _glob_pattern(value)
        target = self.lower(col) if fold_in_sql else col
        escape = _LIKE_ESCAPE if (ci or not self.sqlite) else None
        # ``sep`` (backslash, '=') is neither a LIKE nor a GLOB special character.
        wildcard = "%" if escape else "*"
        head, tail = pattern + sep + wildcard, wildcard + sep + pattern
        patterns = [pattern, head, tail, wildcard + sep + pattern + sep + wildcard]
        if escape:
            return or_(*(target.like(p, escape=escape) for p in patterns))
        return or_(*(target.op("GLOB")(p) for p in patterns))

    def condition(self, attr: Attr, raw: str) -> ColumnElement[bool] | None:
        value = raw.strip(" \x00")
        if value in ("", "*"):
            return None
        values = [v.strip(" \x00") for v in value.split("\\")]
        cap = MAX_UID_LIST_VALUES if attr.kind in (Kind.UID, Kind.INT) else MAX_LIST_VALUES
        if len(values) > cap:
            raise InvalidMatchValue(f"{attr.keyword}: {len(values)} values; a list match holds at most {cap}")
        if attr.kind is Kind.DATE or attr.kind is Kind.TIME:
            return or_(*(self.range(attr, v) for v in values))
        if attr.kind is Kind.UID:
            if any(_is_wild(v) for v in values):
                raise InvalidMatchValue(f"{attr.keyword}: wild cards are not allowed in UIDs")
            return attr.column.in_(values)
        if attr.kind is Kind.INT:
            try:
                numbers = [int(v) for v in values]
            except ValueError as exc:
                raise InvalidMatchValue(f"{attr.keyword}: {value!r} is not an integer") from exc
            return attr.column.in_(numbers)
        if attr.kind is Kind.MULTI_CS:
            return or_(*(self.element(attr.column, v, "\\", ci=False) for v in values))
        if attr.kind is Kind.PN:
            conds = []
            for v in values:
                if "=" in v:  # a query naming component groups matches the whole value
                    conds.append(self.one(attr.column, v, ci=True))
                else:
                    conds.append(self.element(attr.column, v, "=", ci=True))
            return or_(*conds)
        return or_(*(self.one(attr.column, v, ci=False) for v in values))

    def range(self, attr: Attr, value: str) -> ColumnElement[bool]:
        is_date = attr.kind is Kind.DATE
        check = _DATE if is_date else _TIME
        col = attr.column
        if _is_wild(value):
            raise InvalidMatchValue(f"{attr.keyword}: wild cards are not allowed in dates and times")
        what = "date (YYYYMMDD)" if is_date else "time (HHMMSS.FFFFFF)"
        low, sep, high = value.partition("-")
        if not sep:
            high = low
        for part in (low, high):
            if part and not check.match(part):
                raise InvalidMatchValue(
                    f"{attr.keyword}: {value!r} is not a valid {what} or range of them (a-b, -b, a-)"
                )
        # Stored values are DICOM strings, so string order is time order; a partial upper
        # bound covers its whole period ("2020" up to "20209999", "12" up to "129999.999999").
        if not is_date and "." in low:
            low = low.rstrip("0").rstrip(".")  # 101010.000 is 101010, which sorts before it
        conds: list[ColumnElement[bool]] = [col != ""]
        if low:
            conds.append(col >= low)
        if high:
            template = "99999999" if is_date else "999999.999999"
            conds.append(col <= high + template[len(high) :])
        return and_(*conds)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _register_sqlite_lower(session: Session) -> None:
    fairy = session.connection().connection
    if not fairy.info.get("radsight_lower"):
        fairy.driver_connection.create_function(  # type: ignore[union-attr]
            "radsight_lower", 1, _lower, deterministic=True
        )
        fairy.info["radsight_lower"] = True


# -- the query ------------------------------------------------------------------------------------


def _base(level: QueryLevel) -> tuple[Select[Any], list[Any]]:
    if level is QueryLevel.PATIENT:
        return select(Patient.id), [Patient.patient_name, Patient.id]
    if level is QueryLevel.STUDY:
        return select(Study.id), [Study.study_date.desc(), Study.id.desc()]
    if level is QueryLevel.SERIES:
        stmt = select(Series.id).join(Study, Series.study_pk == Study.id)
        return stmt, [Study.id, Series.series_number.is_(None), Series.series_number, Series.id]
    stmt = select(Instance.id).join(Series, Instance.series_pk == Series.id).join(Study, Series.study_pk == Study.id)
    return stmt, [Series.id, Instance.instance_number.is_(None), Instance.instance_number, Instance.id]


def _hierarchy_keys(level: QueryLevel, patient_root: bool) -> tuple[str, ...]:
    if level is QueryLevel.PATIENT:
        return ("PatientID",)
    keys: tuple[str, ...] = ("PatientID",) if patient_root else ()
    keys += ("StudyInstanceUID",)
    if level in (QueryLevel.SERIES, QueryLevel.IMAGE):
        keys += ("SeriesInstanceUID",)
    if level is QueryLevel.IMAGE:
        keys += ("SOPInstanceUID", "SOPClassUID")
    return keys


def _keyword(key: str) -> str:
    if tag_for_keyword(key) is None:
        raise UnknownAttribute(f"{key!r} is not a DICOM attribute keyword")
    return key


def search(
    session: Session,
    level: QueryLevel,
    filters: dict[str, str],
    *,
    limit: int | None = None,
    offset: int = 0,
    patient_root: bool = False,
    order_by: list[tuple[str, bool]] | None = None,
) -> list[pydicom.Dataset]:
    """Identifiers of the entities at ``level`` that match ``filters`` (see the module docstring).

    ``order_by`` lists (keyword, descending) pairs of indexed attributes of the level; the
    level's default order breaks ties, so paging stays stable.
    """
    level = QueryLevel(level)
    known = attributes(level)
    for key in filters:
        _keyword(key)
    unsupported = [k for k, v in filters.items() if k not in known and k not in _CONTROL_KEYS and v.strip(" \x00")]
    if unsupported:
        raise UnsupportedMatchingKey(unsupported, level)
    if (limit is not None and limit < 0) or offset < 0:
        raise QueryError("limit and offset must not be negative")

    matcher = _Matcher(session)
    stmt, order = _base(level)
    if order_by:
        explicit = []
        for key, descending in order_by:
            attr = known.get(key)
            if attr is None:
                raise UnsupportedMatchingKey([key], level)
            explicit.append(attr.column.desc() if descending else attr.column.asc())
        order = [*explicit, *order]
    for key, value in filters.items():
        attr = known.get(key)
        if attr is None:
            continue
        if attr.kind is Kind.COUNT and value.strip(" \x00") not in ("", "*"):
            raise UnsupportedMatchingKey([key], level)
        cond = matcher.condition(attr, value)
        if cond is not None:
            stmt = stmt.where(cond)

    wanted: list[str] = []
    for key in (*_hierarchy_keys(level, patient_root), *DEFAULT_KEYS[level], *filters):
        if key in known and key not in wanted:
            wanted.append(key)
    stmt = stmt.with_only_columns(*(known[k].column.label(k) for k in wanted)).order_by(*order)
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)

    results = []
    for row in session.execute(stmt).mappings():
        ds = pydicom.Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = str(level)
        for key in wanted:
            _set(ds, key, known[key].kind, row[key])
        if "InstanceAvailability" in filters:
            ds.InstanceAvailability = "ONLINE"
        results.append(ds)
    return results


@functools.cache
def _tag_vr(keyword: str) -> tuple[BaseTag, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return Tag(tag), dictionary_VR(tag)


def _set(ds: pydicom.Dataset, keyword: str, kind: Kind, value: Any) -> None:
    # Values come from our own index (already checked at ingest): skipping pydicom's value
    # validation makes building identifiers about twice as fast.
    tag, vr = _tag_vr(keyword)
    if value is None or value == "":
        value = None
    elif kind is Kind.MULTI_CS:
        value = [v for v in str(value).split("\\") if v]
    elif vr in ("IS", "US", "UL", "SS", "SL"):
        value = int(value)
    else:
        value = str(value)
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)


def keyword_for(key: str) -> str:
    """A keyword from a keyword or an 8-digit hexadecimal tag ("00100010"); raises UnknownAttribute."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        keyword = keyword_for_tag(int(key, 16))
        if not keyword:
            raise UnknownAttribute(f"{key} is not a tag of the DICOM dictionary (private tags cannot be queried)")
        return keyword
    return _keyword(key)


__all__ = [
    "DEFAULT_KEYS",
    "MAX_LIST_VALUES",
    "MAX_UID_LIST_VALUES",
    "InvalidMatchValue",
    "QueryError",
    "QueryLevel",
    "UnknownAttribute",
    "UnsupportedMatchingKey",
    "attributes",
    "is_indexed",
    "keyword_for",
    "search",
    "split_filters",
]
