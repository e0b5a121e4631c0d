"""``radsight demo-data``: the demo's own DICOM, written from the real shared images."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from radsight.datasets.ct import nifti_to_ct_series
from radsight.datasets.cxr import cxr_to_dicom, pick_chest_xrays, synthetic_patient


@dataclass
class DemoData:
    chest_xrays: list[Path] = field(default_factory=list)
    ct_series: list[Path] = field(default_factory=list)


def write_demo_data(out_dir: Path, shared_data: Path, *, cxr_count: int = 40) -> DemoData:
    """``cxr_count`` chest X-rays (one study each) under ``out_dir/cxr`` and the 112-slice CT under ``out_dir/ct``."""
    out = DemoData()
    cxr_dir = out_dir / "cxr"
    cxr_dir.mkdir(parents=True, exist_ok=True)
    for i, (jpeg, label) in enumerate(pick_chest_xrays(shared_data / "cxr" / "kermany224" / "train", cxr_count)):
        name, pid, birth, sex = synthetic_patient(i)
        path = cxr_dir / f"cxr-{i + 1:04d}.dcm"
        cxr_to_dicom(jpeg, path, label=label, patient_id=pid, patient_name=name, birth_date=birth, sex=sex,
                     study_date=date(2024, 3, 1) + timedelta(days=i), accession_number=f"DEMOCXR{i + 1:05d}")
        out.chest_xrays.append(path)
    out.ct_series = nifti_to_ct_series(shared_data / "ct" / "totalsegmentator" / "example_ct.nii.gz", out_dir / "ct")
    return out
