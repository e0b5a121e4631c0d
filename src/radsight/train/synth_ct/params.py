"""What defines one generated volume: labels, tissue intensities per phase, :class:`CaseParams`
and :func:`sample_params`, which draws them from a seed (units and ranges: the package docstring)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Phase = Literal["non_contrast", "arterial", "portal_venous"]
PHASES: tuple[Phase, ...] = ("non_contrast", "arterial", "portal_venous")

LABELS: dict[int, str] = {1: "liver", 2: "spleen", 3: "right kidney", 4: "left kidney"}

# Documented plausible label volumes (mL) for a complete organ in a generated case (tests check these).
ORGAN_VOLUME_ML: dict[str, tuple[float, float]] = {
    "liver": (900.0, 2600.0),
    "spleen": (80.0, 450.0),
    "right kidney": (80.0, 260.0),
    "left kidney": (80.0, 260.0),
}

# Mean HU per tissue per phase: (low, high); one value per case is drawn uniformly.
# Sources: typical published enhancement values (non-contrast liver 50-65 HU, lower with steatosis;
# arterial renal cortex 150-200 HU with medulla 60-90 HU, nephrographic 140-180 HU; portal venous
# liver 100-130 HU, spleen 110-130 HU) and the real example CT (non-contrast: liver 46-51 HU,
# aorta 45 HU, subcutaneous fat -100 HU, muscle 25-60 HU, noise 10-13 HU).
TISSUE_HU: dict[Phase, dict[str, tuple[float, float]]] = {
    "non_contrast": {
        "liver": (35, 68),
        "spleen": (36, 52),
        "kidney_cortex": (26, 40),
        "kidney_medulla": (22, 36),
        "blood": (32, 50),
        "liver_vessel": (30, 45),
        "pancreas": (30, 48),
        "bowel_wall": (30, 45),
        "muscle": (30, 58),
        "stomach_wall": (30, 45),
    },
    "arterial": {
        "liver": (60, 90),
        "spleen": (80, 140),
        "kidney_cortex": (140, 210),
        "kidney_medulla": (55, 95),
        "blood": (220, 400),
        "liver_vessel": (60, 120),
        "pancreas": (90, 130),
        "bowel_wall": (60, 100),
        "muscle": (40, 62),
        "stomach_wall": (60, 100),
    },
    "portal_venous": {
        "liver": (95, 135),
        "spleen": (105, 135),
        "kidney_cortex": (140, 190),
        "kidney_medulla": (120, 175),
        "blood": (140, 200),
        "liver_vessel": (140, 200),
        "pancreas": (80, 115),
        "bowel_wall": (70, 110),
        "muscle": (50, 70),
        "stomach_wall": (70, 110),
    },
}
# Tissues whose HU does not depend on the phase.
COMMON_HU: dict[str, tuple[float, float]] = {
    "air": (-1005, -995),
    "lung": (-880, -820),
    "fat": (-115, -90),
    "visceral_fat": (-110, -80),
    "cortical_bone": (700, 1100),
    "cancellous_bone": (140, 280),
    "disc": (70, 100),
    "csf": (5, 15),
    "fluid": (0, 20),
    "bile": (0, 20),
    "urine": (0, 15),
    "gas": (-1000, -950),
    "feces": (-150, 20),
    "skin": (20, 60),
    "table": (100, 400),
    "heart": (35, 50),
}



@dataclass
class CaseParams:
    """Everything that defines one generated volume (see the module docstring for units and ranges)."""

    seed: int
    phase: Phase = "portal_venous"
    slice_thickness: float = 3.0
    pixel_spacing: float = 3.0
    body_lr: float = 175.0
    body_ap: float = 125.0
    fat_mm: float = 20.0
    muscle_mm: float = 10.0
    height_scale: float = 1.0
    dome_z: float = 390.0
    liver_scale: float = 1.0
    spleen_scale: float = 1.0
    kidney_scale: float = 1.0
    liver_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spleen_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    kidney_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    right_kidney_drop: float = 15.0
    fov_lr_factor: float = 1.1
    fov_ap_factor: float = 1.15
    z_top: float = 400.0
    z_length: float = 300.0
    noise_hu: float = 12.0
    texture_hu: float = 6.0
    n_small_bowel: int = 25
    stomach_fill: float = 0.5
    hu: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)



def sample_params(
    seed: int,
    *,
    pixel_spacing_range: tuple[float, float] = (2.2, 3.4),
    thickness_range: tuple[float, float] = (1.0, 5.0),
    max_slices: int | None = 140,
    **overrides: Any,
) -> CaseParams:
    """Draw a case from ``seed``; ``overrides`` fix any :class:`CaseParams` field (e.g. ``phase``).

    ``max_slices`` shortens ``z_length`` so thin-slice cases stay small (None: no limit).
    """
    rng = np.random.default_rng([seed, 20261128])
    phase: Phase = overrides.get("phase") or PHASES[int(rng.choice(3, p=[0.4, 0.25, 0.35]))]
    hs = float(rng.uniform(0.88, 1.12))
    dome = float(rng.uniform(360, 420)) * hs
    thickness = float(rng.uniform(*thickness_range))
    thickness = float(overrides.get("slice_thickness", thickness))
    z_length = float(rng.uniform(120, 420))
    if max_slices is not None:
        z_length = min(z_length, max_slices * thickness)
    hu_ranges = {**COMMON_HU, **TISSUE_HU[phase]}
    hu = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in sorted(hu_ranges.items())}
    hu["arterial_blood"] = hu["blood"]
    hu["renal_sinus"] = hu["visceral_fat"] + 30.0
    hu["perirenal_fat"] = hu["visceral_fat"]
    # Portal veins in the liver are darker than the liver before contrast, brighter after.
    p = CaseParams(
        seed=seed,
        phase=phase,
        slice_thickness=thickness,
        pixel_spacing=float(rng.uniform(*pixel_spacing_range)),
        body_lr=float(rng.uniform(150, 200)),
        body_ap=float(rng.uniform(105, 145)),
        fat_mm=float(rng.uniform(6, 45)),
        muscle_mm=float(rng.uniform(7, 20)),
        height_scale=hs,
        dome_z=dome,
        liver_scale=float(rng.uniform(0.85, 1.15)),
        spleen_scale=float(rng.uniform(0.75, 1.3)),
        kidney_scale=float(rng.uniform(0.85, 1.12)),
        liver_shift=tuple(float(v) for v in rng.uniform(-12, 12, 3)),  # type: ignore[arg-type]
        spleen_shift=tuple(float(v) for v in rng.uniform(-12, 12, 3)),  # type: ignore[arg-type]
        kidney_shift=tuple(float(v) for v in rng.uniform(-12, 12, 3)),  # type: ignore[arg-type]
        right_kidney_drop=float(rng.uniform(5, 25)),
        fov_lr_factor=float(rng.uniform(0.9, 1.25)),
        fov_ap_factor=float(rng.uniform(1.05, 1.3)),
        z_top=dome + float(rng.uniform(-90, 60)),
        z_length=z_length,
        noise_hu=float(rng.uniform(6, 22)),
        texture_hu=float(rng.uniform(3, 10)),
        n_small_bowel=int(rng.integers(20, 51)),
        stomach_fill=float(rng.uniform(0, 1)),
        hu=hu,
    )
    for key, value in overrides.items():
        if key == "hu":
            p.hu.update(value)
        elif key != "phase":
            setattr(p, key, value)
    if "phase" in overrides and "hu" not in overrides:
        p.hu.update({k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(TISSUE_HU[p.phase].items())})
        p.hu["arterial_blood"] = p.hu["blood"]
    return p
