"""Routing: which installed models run on a series. Declarative rules, never code.

Every enabled model matches by default on its package's input spec: Modality in
``input.modality``, BodyPartExamined in ``input.body_part`` (when the package lists any),
and a geometry it can take (2D models: images; 3D models: at least ``MIN_3D_SLICES``
slices, as instances or frames).

Admins add explicit rules (settings ``ai_rules`` in TOML/``RADSIGHT_AI_RULES`` JSON, or
``PUT /api/ai/rules``, stored in the index). A model with explicit rules runs where at
least one of its enabled rules matches, instead of on the default; a rule's ``modality`` /
``body_part`` left out (null) are the package's, ``[]`` means any. A model whose rules are
all disabled is not routed (it still runs on demand). The geometry check always applies.

AI result series (SEG, SR, parametric maps, or "AI generated" in SeriesDescription) never
trigger models: results would otherwise feed back into the engine.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import pydicom
import re2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydicom.errors import InvalidDicomError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from radsight.ai import result_types
from radsight.ai.package import ModelMetadata
from radsight.ai.registry import package_metadata
from radsight.archive import Archive
from radsight.config import Settings
from radsight.index.models import AIModel, AIRoutingRule, Instance, Series

log = logging.getLogger(__name__)

MIN_3D_SLICES = 8
MAX_REGEX_LENGTH = 256


@dataclass
class SeriesFacts:
    """What routing looks at: the index's series row plus one stored header."""

    modality: str = ""
    body_part_examined: str = ""
    series_description: str = ""
    image_type: list[str] = field(default_factory=list)
    number_of_instances: int = 0
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    sop_class_uid: str = ""

    @property
    def slices(self) -> int:
        """Images a 3D model would stack: the frames of a multi-frame instance, else the instances."""
        if self.number_of_frames is not None and self.number_of_frames > 1:
            return self.number_of_frames
        return self.number_of_instances

    @property
    def is_image(self) -> bool:
        return bool(self.rows) and bool(self.columns)


def is_ai_result(facts: SeriesFacts) -> bool:
    """A series the engine (or another AI) produced: never routed to models (see result_types.is_ai_result)."""
    return result_types.is_ai_result(
        modality=facts.modality, sop_class_uid=facts.sop_class_uid, series_description=facts.series_description
    )


class CompiledRegex(Protocol):
    def search(self, text: str) -> object | None: ...


def _regex_options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the refusal is reported to the caller, not to stderr
    return options


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> CompiledRegex:
    """Compile a rule's regex with RE2 (case-insensitive), or ValueError naming the problem.

    RE2 matches in time linear in the text, so no pattern from an admin can hang routing. It
    refuses what needs backtracking (backreferences, look-around, possessive repeats) and
    spells end-of-text ``\\z``; those patterns are refused here, when the rule is created.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(f"series_description_regex is longer than {MAX_REGEX_LENGTH} characters")
    try:
        return cast(CompiledRegex, re2.compile(pattern, _regex_options()))
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        try:
            re.compile(pattern)
        except re.error:
            raise ValueError(
                f"series_description_regex {pattern!r} is not a valid regular expression: {detail}"
            ) from exc
        raise ValueError(
            f"series_description_regex {pattern!r} uses syntax that RE2 does not support ({detail}):"
            " rules are matched by RE2, which has no backreferences, look-around or possessive repeats"
            " and writes end of text as \\z"
        ) from exc


class RoutingRule(BaseModel):
    """One declarative rule: ``model`` runs on series matching every condition given."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64, description="Installed model name")
    modality: list[str] | None = Field(default=None, description="Modalities; null = the package's, [] = any")
    body_part: list[str] | None = Field(
        default=None, description="BodyPartExamined values; null = the package's, [] = any"
    )
    series_description_regex: str | None = Field(
        default=None, description="RE2 regex searched in SeriesDescription, case-insensitive"
    )
    image_type_contains: list[str] = Field(default_factory=list, description="Values all present in ImageType")
    min_instances: int | None = Field(default=None, ge=0)
    max_instances: int | None = Field(default=None, ge=0)
    enabled: bool = True

    @field_validator("series_description_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            compile_regex(v)
        return v

    @model_validator(mode="after")
    def _range(self) -> RoutingRule:
        lo, hi = self.min_instances, self.max_instances
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("min_instances is greater than max_instances")
        return self


def parse_rules(raw: Iterable[object], *, source: str) -> list[RoutingRule]:
    """Validate rules; ValueError naming the rule and field that are wrong."""
    rules: list[RoutingRule] = []
    for i, item in enumerate(raw):
        try:
            rules.append(RoutingRule.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(rule)'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"{source} rule {i + 1}: {problems}") from exc
    return rules


def settings_rules(settings: Settings) -> list[RoutingRule]:
    return parse_rules(settings.ai_rules, source="settings ai_rules")


def stored_rules(session: Session) -> list[RoutingRule]:
    """The rules in the index; ValueError naming the rule if one no longer validates (a pattern
    stored before rules were matched by RE2: replace the rules with ``PUT /api/ai/rules``)."""
    rows = session.scalars(select(AIRoutingRule).order_by(AIRoutingRule.position, AIRoutingRule.id))
    return parse_rules((json.loads(r.rule_json) for r in rows), source="stored ai_rules")


def replace_stored_rules(session: Session, rules: list[RoutingRule]) -> None:
    """Replace every stored rule (one transaction); models must be installed."""
    installed = set(session.scalars(select(AIModel.name)))
    unknown = sorted({r.model for r in rules} - installed)
    if unknown:
        raise ValueError(f"rules name models that are not installed: {', '.join(unknown)}")
    session.execute(delete(AIRoutingRule))
    for i, r in enumerate(rules):
        session.add(AIRoutingRule(position=i, model_name=r.model, rule_json=r.model_dump_json()))
    session.commit()


def series_facts(archive: Archive, series_instance_uid: str, *, image_type: bool = True) -> SeriesFacts:
    """Facts about a stored series; LookupError if it is not in the index.

    ``image_type=False`` leaves ``image_type`` empty: it is not in the index, so it costs a
    read of one stored header, which only rules with ``image_type_contains`` need.
    """
    se, it = Series.__table__, Instance.__table__
    with archive.db.engine.connect() as c:
        series = c.execute(
            select(se.c.id, se.c.modality, se.c.body_part_examined, se.c.series_description,
                   se.c.number_of_instances).where(se.c.series_instance_uid == series_instance_uid)
        ).first()
        if series is None:
            raise LookupError(f"series {series_instance_uid} is not in the archive")
        first = c.execute(
            select(it.c.rows, it.c.columns, it.c.number_of_frames, it.c.sop_class_uid, it.c.storage_key)
            .where(it.c.series_pk == series.id)
            .order_by(it.c.instance_number.is_(None), it.c.instance_number, it.c.id)
            .limit(1)
        ).first()
    facts = SeriesFacts(
        modality=series.modality,
        body_part_examined=series.body_part_examined,
        series_description=series.series_description,
        number_of_instances=series.number_of_instances,
    )
    if first is None:
        return facts
    facts.rows, facts.columns = first.rows, first.columns
    facts.number_of_frames = first.number_of_frames
    facts.sop_class_uid = first.sop_class_uid
    if image_type:
        facts.image_type = _image_type(archive, first.storage_key)
    return facts


def _image_type(archive: Archive, key: str) -> list[str]:
    # ImageType is not in the index: read it from one stored header (no pixel data).
    path = archive.storage.local_path(key)
    try:
        with path.open("rb") if path is not None else archive.storage.open(key) as fh:
            header = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=["ImageType"])
    except (OSError, InvalidDicomError, ValueError) as exc:
        log.warning("routing: cannot read the header of %s: %s", key, exc)
        return []
    value = header.get("ImageType")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _upper(values: Iterable[str]) -> set[str]:
    return {v.strip().upper() for v in values}


def rule_matches(rule: RoutingRule, meta: ModelMetadata, facts: SeriesFacts) -> bool:
    modality = meta.input.modality if rule.modality is None else rule.modality
    if modality and facts.modality.strip().upper() not in _upper(modality):
        return False
    body_part = meta.input.body_part if rule.body_part is None else rule.body_part
    if body_part and facts.body_part_examined.strip().upper() not in _upper(body_part):
        return False
    regex = rule.series_description_regex
    if regex is not None and not compile_regex(regex).search(facts.series_description):
        return False
    if rule.image_type_contains and not _upper(rule.image_type_contains) <= _upper(facts.image_type):
        return False
    if rule.min_instances is not None and facts.number_of_instances < rule.min_instances:
        return False
    return rule.max_instances is None or facts.number_of_instances <= rule.max_instances


def fits_geometry(meta: ModelMetadata, facts: SeriesFacts) -> bool:
    """Whether the model can take the series at all (no rule can override this)."""
    if not facts.is_image:
        return False
    if meta.input.dimensions == 3:
        return facts.slices >= MIN_3D_SLICES
    return True


def all_rules(archive: Archive, session: Session) -> list[RoutingRule]:
    return settings_rules(archive.settings) + stored_rules(session)


RoutingTable = tuple[list[AIModel], list[RoutingRule]]


def routing_table(archive: Archive) -> RoutingTable:
    """The enabled models, by name, and every routing rule (detached from their session)."""
    with archive.db.session() as s:
        models = list(s.scalars(select(AIModel).where(AIModel.enabled.is_(True)).order_by(AIModel.name)))
        rules = all_rules(archive, s)
    return models, rules


def models_for_series(archive: Archive, facts: SeriesFacts) -> list[AIModel]:
    """The enabled models to run on a series with these facts, by name."""
    if is_ai_result(facts):
        return []
    return _choose(*routing_table(archive), facts)


def route_series(archive: Archive, series_instance_uid: str, table: RoutingTable | None = None) -> list[AIModel]:
    """``models_for_series(series_facts(...))`` for a stored series, reading its stored header
    only where an enabled rule looks at ImageType (this runs for every series that turns
    stable). LookupError if the series is not in the index (looked up only when a model is
    enabled). ``table``: the routing table read once for several series (:func:`routing_table`)."""
    models, rules = table if table is not None else routing_table(archive)
    if not models:
        return []
    wanted = {m.name for m in models}
    needs_image_type = any(r.enabled and r.image_type_contains and r.model in wanted for r in rules)
    facts = series_facts(archive, series_instance_uid, image_type=needs_image_type)
    if is_ai_result(facts):
        return []
    return _choose(models, rules, facts)


def _choose(models: list[AIModel], rules: list[RoutingRule], facts: SeriesFacts) -> list[AIModel]:
    by_model: dict[str, list[RoutingRule]] = {}
    for r in rules:
        by_model.setdefault(r.model, []).append(r)
    chosen: list[AIModel] = []
    for model in models:
        meta = package_metadata(model)
        if not fits_geometry(meta, facts):
            continue
        explicit = by_model.get(model.name)
        candidates = [r for r in explicit if r.enabled] if explicit else [RoutingRule(model=model.name)]
        if any(rule_matches(r, meta, facts) for r in candidates):
            chosen.append(model)
    return chosen
