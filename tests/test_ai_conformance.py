"""Every object every shipped model produces, on real images through the real pipeline, passes
dicom3tools' dciodvfy with no error (its warnings are printed; the report of issue 20 lists them).

The shipped packages (radsight.ai.registry.builtin_packages) each run on real data of their
modality: the real 112-slice abdominal CT and real paediatric chest X-rays (one of each class).
A shipped model of a modality with no real series here fails the test rather than going unchecked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from conftest import make_settings
from radsight.ai import registry
from radsight.ai.package import ModelPackage, load_package
from radsight.ai.pipeline import PipelineResult, run_model
from radsight.archive import Archive
from radsight.datasets.ct import nifti_to_ct_series
from radsight.datasets.cxr import cxr_to_dicom
from radsight.index.models import Series
from radsight.ingest.importer import import_paths
from test_ai_results import LABELMAP_SEG_VALIDATOR_GAP, LABELMAP_SR_VALIDATOR_GAP, _path_of, dciodvfy

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
LABELMAP_SEG = "1.2.840.10008.5.1.4.1.1.66.7"


def _shipped() -> list[ModelPackage]:
    packages = [load_package(p) for p in registry.builtin_packages()]
    assert packages, "no model ships in src/radsight/models"
    return packages


def _real_series(archive: Archive, shared_data: Path, folder: Path) -> dict[str, list[tuple[str, str]]]:
    """The real CT and two real chest X-rays in ``archive``: modality -> [(study, series)]."""
    ct = shared_data / "ct" / "totalsegmentator" / "example_ct.nii.gz"
    files = nifti_to_ct_series(ct, folder / "ct")
    assert len(files) == 112
    assert import_paths(archive.ingest, [folder / "ct"]).counts["stored"] == 112
    for n, label in enumerate(("NORMAL", "PNEUMONIA")):
        jpeg = sorted((shared_data / "cxr" / "kermany224" / "train" / label).glob("*.jp*g"))[0]
        cxr_to_dicom(jpeg, folder / f"{label}.dcm", label=label, patient_id=f"CONFORMANCE-{n}")
        res = archive.ingest.ingest_file(folder / f"{label}.dcm")
        assert res.ok, res.message
    out: dict[str, list[tuple[str, str]]] = {}
    with archive.db.session() as s:
        for series in s.scalars(select(Series)):
            out.setdefault(series.modality, []).append((series.study.study_instance_uid, series.series_instance_uid))
    return out


def _objects(archive: Archive, result: PipelineResult) -> list[Path]:
    uids = {result.seg_sop_instance_uid, result.sr_sop_instance_uid, result.pmap_sop_instance_uid}
    uids |= {f.pmap_sop_instance_uid for f in result.findings}
    return [_path_of(archive, u) for u in sorted(u for u in uids if u)]


def _check_map_window(path: Path) -> None:
    """A map's window shows its whole value range (what a viewer applying it draws)."""
    pmap = pydicom.dcmread(path)
    voi = pmap.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    values = np.asarray(pmap.pixel_array, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    assert voi.VOILUTFunction == "LINEAR_EXACT", path.name
    assert float(voi.WindowCenter) == pytest.approx((low + high) / 2, abs=1e-6)
    assert float(voi.WindowWidth) == pytest.approx(max(high - low, 1e-6), abs=1e-6)


def _run_every_shipped_model(archive: Archive, shared_data: Path, folder: Path) -> dict[str, list[Path]]:
    """Each shipped model on every real series of its modality: model name -> the objects stored."""
    series = _real_series(archive, shared_data, folder)
    produced: dict[str, list[Path]] = {}
    for job, package in enumerate(_shipped(), start=1):
        meta = package.metadata
        sources = [s for modality in meta.input.modality for s in series.get(modality, [])]
        assert sources, f"{meta.name} takes {meta.input.modality}: no real series of it is checked"
        for study_uid, series_uid in sources:
            result = run_model(
                archive, package, study_instance_uid=study_uid, series_instance_uid=series_uid, job_id=job
            )
            produced.setdefault(meta.name, []).extend(_objects(archive, result))
    return produced


def test_every_object_of_every_shipped_model_passes_dciodvfy(
    archive: Archive, shared_data: Path, tmp_path: Path
) -> None:
    produced = _run_every_shipped_model(archive, shared_data, tmp_path)
    classes: set[str] = set()
    maps = 0
    for name, paths in produced.items():
        assert paths, name
        for path in paths:
            sop_class = str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID)
            classes.add(sop_class)
            assert dciodvfy(path) == [], f"{name}: {path.name} ({pydicom.uid.UID(sop_class).name})"
            if sop_class == PARAMETRIC_MAP:
                _check_map_window(path)
                maps += 1
    # The organ model's four label maps and a heatmap per chest X-ray, a SEG and the SRs.
    assert maps == 4 + 2
    assert {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", PARAMETRIC_MAP} <= classes


def test_label_map_seg_setting_adds_no_error_beyond_the_validators_age(
    db_url: str, shared_data: Path, tmp_path: Path
) -> None:
    """``ai_seg_type=labelmap``: the SEG and the SR that references it carry only the lines the
    installed dciodvfy gives for the SOP class it predates (tests/test_ai_results.py)."""
    archive = Archive.open(make_settings(tmp_path / "home", db_url, ai_seg_type="labelmap"))
    try:
        produced = _run_every_shipped_model(archive, shared_data, tmp_path)
        seen_labelmap = False
        for name, paths in produced.items():
            for path in paths:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                errors = dciodvfy(path)
                if ds.SOPClassUID == LABELMAP_SEG:
                    seen_labelmap = True
                    assert errors == LABELMAP_SEG_VALIDATOR_GAP, f"{name}: {path.name}"
                else:  # one line per segment an SR references in the label map SEG, else none
                    segment_refs = sum(e.keyword == "ReferencedSegmentNumber" for e in ds.iterall())
                    assert errors == [LABELMAP_SR_VALIDATOR_GAP] * segment_refs, f"{name}: {path.name}"
        assert seen_labelmap
    finally:
        archive.close()
