"""Routing: which installed models run on a stored series (real series in the index)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import CTImageStorage, DigitalXRayImageStorageForPresentation, generate_uid
from sqlalchemy import select
from tests.ai_testmodels import make_classification_package, make_segmentation_package
from tests.conftest import RunningServer
from tests.dicom_factory import make_ct

from radsight.ai.package import METADATA_FILE
from radsight.ai.registry import install, remove, set_enabled
from radsight.ai.routing import (
    RoutingRule,
    SeriesFacts,
    compile_regex,
    models_for_series,
    parse_rules,
    replace_stored_rules,
    route_series,
    series_facts,
    stored_rules,
)
from radsight.api.auth import add_user
from radsight.archive import Archive
from radsight.config import Settings
from radsight.index.models import AIRoutingRule

SEG_FILE = Path("dicom/dcmqi/segmentations/liver.dcm")


def store_series(
    archive: Archive,
    tmp: Path,
    *,
    modality: str = "CT",
    n: int = 20,
    body_part: str = "",
    description: str = "",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
) -> str:
    series_uid = generate_uid()
    study_uid = generate_uid()
    folder = tmp / series_uid
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        ds = make_ct(study_uid=study_uid, series_uid=series_uid, modality=modality, instance_number=i,
                     rows=8, columns=8)
        if modality in ("DX", "CR"):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
        else:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        if body_part:
            ds.BodyPartExamined = body_part
        if description:
            ds.SeriesDescription = description
        ds.ImageType = list(image_type)
        path = folder / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        result = archive.ingest.ingest_file(path)
        assert result.ok, result
    return series_uid


def names(archive: Archive, series_uid: str) -> list[str]:
    chosen = [m.name for m in models_for_series(archive, series_facts(archive, series_uid))]
    # The stability path's shortcut (route_series) chooses exactly the same models.
    assert [m.name for m in route_series(archive, series_uid)] == chosen
    return chosen


@pytest.fixture
def models(archive: Archive, tmp_path: Path) -> Archive:
    """A 3D CT segmenter (``ct-seg``) and a 2D CR/DX classifier (``cxr``), installed."""
    install(archive, make_segmentation_package(tmp_path / "pkg-seg", name="ct-seg"))
    install(archive, make_classification_package(tmp_path / "pkg-cls", name="cxr"))
    return archive


def test_series_facts_from_index_and_header(archive: Archive, tmp_path: Path) -> None:
    uid = store_series(archive, tmp_path, n=12, body_part="CHEST", description="Thorax 1mm",
                       image_type=("ORIGINAL", "PRIMARY", "AXIAL"))
    f = series_facts(archive, uid)
    assert f == SeriesFacts(modality="CT", body_part_examined="CHEST", series_description="Thorax 1mm",
                            image_type=["ORIGINAL", "PRIMARY", "AXIAL"], number_of_instances=12, rows=8, columns=8,
                            number_of_frames=None, sop_class_uid=CTImageStorage)
    assert f.slices == 12
    with pytest.raises(LookupError, match="not in the archive"):
        series_facts(archive, "1.2.3.4.5.404")


def test_route_series_reads_a_header_only_for_image_type_rules(
    models: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import radsight.ai.routing as routing_module

    reads: list[str] = []
    real = routing_module._image_type
    monkeypatch.setattr(routing_module, "_image_type", lambda a, key: reads.append(key) or real(a, key))
    dx = store_series(models, tmp_path, modality="DX", n=1, image_type=("DERIVED", "SECONDARY"))
    assert [m.name for m in route_series(models, dx)] == ["cxr"]
    assert reads == []
    with models.db.session() as s:
        replace_stored_rules(s, [RoutingRule(model="cxr", image_type_contains=["ORIGINAL"])])
    assert route_series(models, dx) == []
    assert len(reads) == 1
    with pytest.raises(LookupError):
        route_series(models, "1.2.3.4.5.404")


def test_default_rules_from_the_package_input_spec(models: Archive, tmp_path: Path) -> None:
    a = models
    ct20 = store_series(a, tmp_path, modality="CT", n=20)
    ct3 = store_series(a, tmp_path, modality="CT", n=3)
    dx = store_series(a, tmp_path, modality="DX", n=1)
    cr = store_series(a, tmp_path, modality="CR", n=1)
    mr = store_series(a, tmp_path, modality="MR", n=20)
    assert names(a, ct20) == ["ct-seg"]
    assert names(a, ct3) == []  # too few slices for a 3D model
    assert names(a, dx) == ["cxr"]
    assert names(a, cr) == ["cxr"]
    assert names(a, mr) == []

    # Disabled models are never routed; re-enabled they are again.
    set_enabled(a, "ct-seg", False)
    assert names(a, ct20) == []
    set_enabled(a, "ct-seg", True)
    assert names(a, ct20) == ["ct-seg"]
    remove(a, "cxr")
    assert names(a, dx) == []


def test_package_body_part_is_a_default_condition(archive: Archive, tmp_path: Path) -> None:
    pkg = make_segmentation_package(tmp_path / "pkg", name="chest-seg")
    meta = json.loads((pkg / METADATA_FILE).read_text())
    meta["input"]["body_part"] = ["CHEST"]
    (pkg / METADATA_FILE).write_text(json.dumps(meta))
    install(archive, pkg)
    chest = store_series(archive, tmp_path, body_part="chest")  # BodyPartExamined compared case-insensitively
    abdomen = store_series(archive, tmp_path, body_part="ABDOMEN")
    unknown = store_series(archive, tmp_path)
    assert names(archive, chest) == ["chest-seg"]
    assert names(archive, abdomen) == []
    assert names(archive, unknown) == []


def test_explicit_rules_replace_the_default(models: Archive, tmp_path: Path) -> None:
    a = models
    chest = store_series(a, tmp_path, body_part="CHEST", description="Thorax")
    abdomen = store_series(a, tmp_path, body_part="ABDOMEN", description="Abdomen")
    pa = store_series(a, tmp_path, modality="DX", n=1, description="PA chest")
    lat = store_series(a, tmp_path, modality="DX", n=1, description="LAT chest")
    derived = store_series(a, tmp_path, modality="DX", n=1, description="PA chest",
                           image_type=("DERIVED", "SECONDARY"))
    assert names(a, abdomen) == ["ct-seg"] and names(a, lat) == ["cxr"]

    with a.db.session() as s:
        replace_stored_rules(s, parse_rules([
            {"model": "ct-seg", "body_part": ["CHEST"]},
            {"model": "cxr", "series_description_regex": r"^(PA|AP)\b", "image_type_contains": ["original"]},
        ], source="test"))
        assert [r.model for r in stored_rules(s)] == ["ct-seg", "cxr"]
    assert names(a, chest) == ["ct-seg"]
    assert names(a, abdomen) == []
    assert names(a, pa) == ["cxr"]
    assert names(a, lat) == []  # regex
    assert names(a, derived) == []  # image type

    # Instance counts; a rule may widen the modalities (CR/DX model on MG), the geometry still applies.
    mg = store_series(a, tmp_path, modality="MG", n=4, description="PA view")
    with a.db.session() as s:
        replace_stored_rules(s, [RoutingRule(model="ct-seg", min_instances=15, max_instances=25),
                                 RoutingRule(model="cxr", modality=["MG"], max_instances=4)])
    assert names(a, chest) == ["ct-seg"]
    assert names(a, mg) == ["cxr"]
    assert names(a, pa) == []  # DX is no longer in the rule's modalities
    short = store_series(a, tmp_path, n=10)
    assert names(a, short) == []

    # All rules of a model disabled: not routed.
    with a.db.session() as s:
        replace_stored_rules(s, [RoutingRule(model="ct-seg", enabled=False)])
    assert names(a, chest) == [] and names(a, lat) == ["cxr"]

    with a.db.session() as s, pytest.raises(ValueError, match="not installed: nope"):
        replace_stored_rules(s, [RoutingRule(model="nope")])


def test_rules_from_settings_toml(models: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "radsight.toml"
    toml.write_text('[[ai_rules]]\nmodel = "ct-seg"\nseries_description_regex = "(?i)lung|thorax"\n'
                    '[[ai_rules]]\nmodel = "cxr"\nenabled = false\n', encoding="utf-8")
    monkeypatch.setenv("RADSIGHT_CONFIG", str(toml))
    settings = Settings(home=models.settings.home, database_url=models.settings.database_url)
    assert [r["model"] for r in settings.ai_rules] == ["ct-seg", "cxr"]
    a = Archive(settings=settings, db=models.db, storage=models.storage, ingest=models.ingest)
    lung = store_series(a, tmp_path, description="Lung 1mm")
    head = store_series(a, tmp_path, description="Head")
    dx = store_series(a, tmp_path, modality="DX", n=1)
    assert names(a, lung) == ["ct-seg"]
    assert names(a, head) == []
    assert names(a, dx) == []


def test_invalid_rules_are_refused_with_reason() -> None:
    with pytest.raises(ValueError, match=r"test rule 2: series_description_regex: .*not a valid regular expression"):
        parse_rules([{"model": "a"}, {"model": "b", "series_description_regex": "(unclosed"}], source="test")
    with pytest.raises(ValueError, match="min_instances is greater than max_instances"):
        parse_rules([{"model": "a", "min_instances": 5, "max_instances": 2}], source="test")
    with pytest.raises(ValueError, match=r"rule 1: script: Extra inputs are not permitted"):
        parse_rules([{"model": "a", "script": "import os"}], source="test")
    parse_rules([{"model": "a", "series_description_regex": r"^(PA|AP)\b.*(chest|thorax){1,2}"}], source="test")
    # What RE2 cannot match in linear time is refused when the rule is made, saying so.
    refused = [
        (r"(PA)\1", r"invalid escape sequence: \\1"),
        (r"(?=chest)", r"invalid perl operator: \(\?="),
        (r"(?<!LAT) chest", r"invalid perl operator: \(\?<"),
        (r"a++", "bad repetition operator"),
        (r"chest\Z", r"invalid escape sequence: \\Z"),
    ]
    for pattern, detail in refused:
        with pytest.raises(ValueError, match=rf"rule 1: series_description_regex: .*RE2 does not support \({detail}"):
            parse_rules([{"model": "a", "series_description_regex": pattern}], source="test")


def test_a_stored_rule_re2_refuses_is_named(models: Archive) -> None:
    """A rule stored before rules were matched by RE2 (look-around) fails routing with its position."""
    with models.db.session() as s:
        replace_stored_rules(s, [RoutingRule(model="cxr"), RoutingRule(model="ct-seg")])
        row = s.scalars(select(AIRoutingRule).where(AIRoutingRule.model_name == "ct-seg")).one()
        row.rule_json = json.dumps({"model": "ct-seg", "series_description_regex": "(?!scout)"})
        s.commit()
        with pytest.raises(ValueError, match=r"stored ai_rules rule 2: series_description_regex: .*RE2 does not"):
            stored_rules(s)


def test_nested_repeats_match_in_linear_time() -> None:
    """RE2 has no backtracking: the pattern that took Python's re exponential time is harmless."""
    regex = compile_regex(r"^(\w+\s?)+$")
    started = time.monotonic()
    assert regex.search("an axial chest series " * 200 + "!") is None
    assert time.monotonic() - started < 1.0
    assert regex.search("Thorax 1mm") is not None
    assert compile_regex("thorax").search("CT THORAX") is not None  # case-insensitive, as before
    assert compile_regex("poumon|tête").search("TÊTE") is not None  # Unicode case folding
    with pytest.raises(ValueError, match="longer than 256"):
        parse_rules([{"model": "a", "series_description_regex": "a" * 300}], source="test")


def test_ai_result_series_never_match(models: Archive, tmp_path: Path, shared_data: Path) -> None:
    a = models
    # A rule that would take any modality and any size: only the AI-result check stops it.
    with a.db.session() as s:
        replace_stored_rules(s, [RoutingRule(model="cxr", modality=[]), RoutingRule(model="ct-seg", modality=[])])
    seg_copy = tmp_path / "seg.dcm"
    shutil.copy(shared_data / SEG_FILE, seg_copy)
    assert a.ingest.ingest_file(seg_copy).ok
    seg_uid = pydicom.dcmread(shared_data / SEG_FILE, stop_before_pixels=True).SeriesInstanceUID
    facts = series_facts(a, seg_uid)
    assert (facts.modality, facts.number_of_frames, facts.rows) == ("SEG", 3, 512)
    assert models_for_series(a, facts) == []
    # The same facts as any other modality/SOP class would be routed: the check is what stops it.
    as_ot = SeriesFacts(**{**facts.__dict__, "modality": "OT", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7"})
    assert [m.name for m in models_for_series(a, as_ot)] == ["cxr"]

    marked = store_series(a, tmp_path, description="AI generated - not for clinical use")
    plain = store_series(a, tmp_path, description="Thorax")
    assert names(a, marked) == []
    assert names(a, plain) == ["ct-seg", "cxr"]
    for sop_class, modality in [("1.2.840.10008.5.1.4.1.1.30", "OT"), ("1.2.840.10008.5.1.4.1.1.88.34", "OT"),
                                ("1.2.840.10008.5.1.4.1.1.2", "SR")]:
        f = SeriesFacts(modality=modality, sop_class_uid=sop_class, number_of_instances=20, rows=8, columns=8)
        assert models_for_series(a, f) == [], sop_class


def test_rest_rules_get_put(server: RunningServer, tmp_path: Path) -> None:
    install(server.archive, make_segmentation_package(tmp_path / "seg", name="rules-seg"))
    with server.archive.db.session() as s:
        try:
            add_user(s, "rules-reader", "reader-secret-1", "viewer")
        except ValueError:
            pass
    rules = {"rules": [{"model": "rules-seg", "body_part": ["CHEST"], "series_description_regex": "thorax"}]}
    with server.client() as c, httpx.Client(base_url=server.base_url, auth=("rules-reader", "reader-secret-1")) as v, \
            httpx.Client(base_url=server.base_url) as anon:
        assert anon.get("/api/ai/rules").status_code == 401
        assert v.put("/api/ai/rules", json=rules).status_code == 403
        r = c.put("/api/ai/rules", json=rules)
        assert r.status_code == 200, r.text
        got = v.get("/api/ai/rules").json()
        assert got["settings_rules"] == []
        assert got["rules"] == [{"model": "rules-seg", "modality": None, "body_part": ["CHEST"],
                                 "series_description_regex": "thorax", "image_type_contains": [],
                                 "min_instances": None, "max_instances": None, "enabled": True}]

        r = c.put("/api/ai/rules", json={"rules": [{"model": "rules-seg", "series_description_regex": "(a"}]})
        assert r.status_code == 422 and "not a valid regular expression" in r.text
        r = c.put("/api/ai/rules", json={"rules": [{"model": "rules-seg", "series_description_regex": "(?!lat)"}]})
        assert r.status_code == 422 and "RE2 does not support (invalid perl operator: (?!)" in r.text
        r = c.put("/api/ai/rules", json={"rules": [{"model": "not-installed"}]})
        assert r.status_code == 422 and "not installed: not-installed" in r.json()["detail"]
        assert c.get("/api/ai/rules").json()["rules"] == got["rules"]  # refused PUTs changed nothing

        assert c.put("/api/ai/rules", json={"rules": []}).json()["rules"] == []
    remove(server.archive, "rules-seg")
