"""Procedural CT-like abdominal volumes with known organ label maps (training data for CT models).

Every volume is drawn from a :class:`CaseParams` that :func:`sample_params` draws from a seed,
so ``generate(seed)`` is deterministic. The scene is built in patient millimetres and painted
on a fine grid (2x finer in-plane, ``oversample_z`` sub-slices per slice), then averaged down:
partial volume at organ borders and the slice-thickness profile (a box of ``slice_thickness``)
come from that averaging, not from a blur.

Array layout, as :mod:`radsight.ai.volume` loads an axial DICOM series: ``(z, y, x)`` with z from
inferior to superior, y (rows) from anterior to posterior and x (columns) from the patient's
right to left, i.e. radiological display: the liver is on the image's left (small x).

Anatomical frame (mm): X = 0 and Y = 0 at the body's centre in-plane, Z = 0 at the pubic
symphysis; the right hemidiaphragm dome is at ``dome_z``. Calibrated against the real
``example_ct.nii.gz`` (TotalSegmentator, non-contrast, 3 mm): see docs/models/ct-abdomen-organs.md.

Labels (:data:`LABELS`): 0 background (everything else), 1 liver, 2 spleen, 3 right kidney,
4 left kidney. Intrahepatic vessels are part of the liver label, the renal sinus (fat, pelvis)
is not part of the kidney label, the gallbladder is not liver.

Parameters (all in :class:`CaseParams`; ranges are those :func:`sample_params` draws from):

- ``phase``: ``non_contrast`` / ``arterial`` / ``portal_venous`` (probabilities 0.4 / 0.25 / 0.35);
  selects :data:`TISSUE_HU` ranges.
- ``slice_thickness`` (mm, 1.0-5.0): slice thickness = slice increment (contiguous slices).
- ``pixel_spacing`` (mm, 0.7-1.0 clinical; :func:`sample_params` draws ``pixel_spacing_range``,
  default 2.2-3.4 to keep training data small).
- ``body_lr`` / ``body_ap`` (mm, 150-200 / 105-145): outer semi-axes of the abdomen (habitus).
- ``fat_mm`` (mm, 6-45): subcutaneous fat thickness (anterior and lateral; 0.6x posterior).
- ``muscle_mm`` (mm, 7-20): abdominal wall muscle thickness.
- ``height_scale`` (0.88-1.12): craniocaudal scale of the whole anatomy.
- ``dome_z`` (mm, 360-420 x height_scale): right hemidiaphragm dome above the symphysis.
- ``liver_scale`` (0.85-1.15), ``spleen_scale`` (0.75-1.3), ``kidney_scale`` (0.85-1.12): organ
  size factors; ``*_shift`` (mm, +-12 in each axis): organ position jitter.
- ``right_kidney_drop`` (mm, 5-25): the right kidney sits lower than the left.
- ``fov_lr_factor`` (0.9-1.25) and ``fov_ap_factor`` (1.05-1.3): field of view / body size (under 1
  crops the flanks, as in the real example).
- ``z_top`` / ``z_length`` (mm): the scanned range, ``z_top`` in ``dome_z`` + [-90, +60],
  ``z_length`` 120-420 (the real example runs from the pelvis to just below the dome).
- ``noise_hu`` (HU, 6-22 at 3 mm; scaled by sqrt(3 / slice_thickness)): scanner noise,
  slightly correlated (Gaussian kernel, sigma 0.6 voxel).
- ``texture_hu`` (HU, 3-10): smooth correlated parenchymal texture (sigma 2 voxels).
- ``hu``: the tissue intensities drawn for this case (one value per tissue from
  :data:`TISSUE_HU`).
- ``n_small_bowel`` (20-50): small-bowel loops down into the pelvis, 20 % gas-filled, 40 % fluid,
  40 % collapsed (solid soft tissue as dense as an organ: teaches that density alone is not
  an organ); ``stomach_fill`` (gas fraction 0-1).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

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

# Tissue ids painted on the fine grid; label of each (0 = background).
_TISSUES = [
    "air",
    "fat",
    "skin",
    "muscle",
    "visceral_fat",
    "cortical_bone",
    "cancellous_bone",
    "disc",
    "csf",
    "blood",
    "lung",
    "heart",
    "liver",
    "liver_vessel",
    "spleen",
    "kidney_cortex",
    "kidney_medulla",
    "renal_sinus",
    "urine",
    "pancreas",
    "bowel_wall",
    "fluid",
    "gas",
    "feces",
    "stomach_wall",
    "bile",
    "table",
    "arterial_blood",
    "perirenal_fat",
]
_T = {name: i for i, name in enumerate(_TISSUES)}
_LABEL_OF = {"liver": 1, "liver_vessel": 1, "spleen": 2}
# Tissues with visible parenchymal texture (amplitude factor of texture_hu).
_TEXTURE = {
    "liver": 1.0,
    "spleen": 1.0,
    "kidney_cortex": 0.8,
    "kidney_medulla": 0.8,
    "muscle": 0.8,
    "pancreas": 1.5,
    "feces": 6.0,
    "visceral_fat": 1.0,
    "fat": 0.6,
    "lung": 3.0,
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


@dataclass
class SyntheticCT:
    """A generated volume: HU (z, y, x) float32, labels uint8, spacing (z, y, x) mm, its parameters."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    params: CaseParams

    def label_volume_ml(self, index: int) -> float:
        return float((self.labels == index).sum()) * float(np.prod(self.spacing)) / 1000.0


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


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix (degrees) about X, Y, Z, applied in that order."""
    a, b, c = (math.radians(v) for v in (rx, ry, rz))
    mx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    my = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    mz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return mz @ my @ mx


class _Scene:
    """The fine grid being painted: tissue ids (z, y, x) and coordinates in mm."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, rng: np.random.Generator) -> None:
        self.xs, self.ys, self.zs = xs, ys, zs
        self.tissue = np.full((zs.size, ys.size, xs.size), _T["air"], dtype=np.uint8)
        self.rng = rng

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box of the fine grid covering [lo, hi] (X, Y, Z mm), or None when outside."""
        out = []
        for coords, a, b in ((self.zs, lo[2], hi[2]), (self.ys, lo[1], hi[1]), (self.xs, lo[0], hi[0])):
            i0, i1 = int(np.searchsorted(coords, a)), int(np.searchsorted(coords, b, side="right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]

    def ellipsoid(
        self,
        centre: tuple[float, float, float],
        semi: tuple[float, float, float],
        rot: tuple[float, float, float] = (0.0, 0.0, 0.0),
        wobble: float = 0.0,
    ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """Normalised radius (< 1 inside) of a rotated ellipsoid, with a smooth random surface wobble.

        Returns the fine-grid box and the radius field on it.
        """
        c = np.asarray(centre, dtype=float)
        r = max(semi) * (1.0 + wobble) + 2.0
        box = self.box(c - r, c + r)
        if box is None:
            return None
        z = self.zs[box[0]][:, None, None] - c[2]
        y = self.ys[box[1]][None, :, None] - c[1]
        x = self.xs[box[2]][None, None, :] - c[0]
        m = _rotation(*rot).T  # world -> body frame
        u = (m[0, 0] * x + m[0, 1] * y + m[0, 2] * z) / semi[0]
        v = (m[1, 0] * x + m[1, 1] * y + m[1, 2] * z) / semi[1]
        w = (m[2, 0] * x + m[2, 1] * y + m[2, 2] * z) / semi[2]
        rad = np.sqrt(u * u + v * v + w * w)
        if wobble > 0:
            rad = rad + wobble * self.smooth_field(rad.shape, 4)
        return box, rad

    def smooth_field(self, shape: tuple[int, ...], knots: int) -> np.ndarray:
        """A smooth random field in about [-1, 1] with ``knots`` control points per axis.

        A sum of three separable products of 1D cubic-free (linear) interpolated curves: cheap
        on large boxes, unlike a 3D spline zoom.
        """
        out = np.zeros(shape, dtype=np.float32)
        for _ in range(3):
            term = np.ones((1,) * len(shape), dtype=np.float32)
            for axis, n in enumerate(shape):
                knots_v = self.rng.uniform(-1, 1, knots + 1)
                curve = np.interp(np.linspace(0, knots, n), np.arange(knots + 1), knots_v).astype(np.float32)
                term = term * curve.reshape([n if i == axis else 1 for i in range(len(shape))])
            out += term
        return out * np.float32(1.0 / 1.5)

    def paint(
        self, box: tuple[slice, slice, slice], mask: np.ndarray, tissue: str, only: set[str] | None = None
    ) -> None:
        view = self.tissue[box]
        if view.shape != mask.shape:
            mask = np.broadcast_to(mask, view.shape)
        if only is not None:
            mask = mask & np.isin(view, [_T[t] for t in only])
        view[mask] = _T[tissue]


def _tube(scene: _Scene, points: np.ndarray, radius: float, tissue: str, only: set[str] | None = None) -> None:
    """A tube along a polyline (N x 3 mm points), painted as overlapping spheres."""
    dense: list[np.ndarray] = []
    for a, b in itertools.pairwise(points):
        n = max(2, int(np.linalg.norm(b - a) / max(radius * 0.5, 1.0)))
        dense.extend(a + (b - a) * t for t in np.linspace(0, 1, n, endpoint=False))
    dense.append(points[-1])
    for p in dense:
        got = scene.ellipsoid(tuple(p), (radius, radius, radius))
        if got is not None:
            box, rad = got
            scene.paint(box, rad < 1, tissue, only)


def generate(seed: int, **overrides: Any) -> SyntheticCT:
    """One volume from ``seed`` (deterministic); ``overrides`` fix parameters (see :func:`sample_params`)."""
    return render(sample_params(seed, **overrides))


def render(p: CaseParams) -> SyntheticCT:
    """Paint the case on the fine grid, average down, add texture and noise."""
    rng = np.random.default_rng([p.seed, 7])
    px, t = p.pixel_spacing, p.slice_thickness
    os_xy, os_z = 2, max(1, math.ceil(t / 1.5))
    fov_x, fov_y = 2 * p.body_lr * p.fov_lr_factor, 2 * p.body_ap * p.fov_ap_factor + 30.0
    nx, ny = max(8, round(fov_x / px)), max(8, round(fov_y / px))
    nz = max(2, round(p.z_length / t))
    xs = (np.arange(nx * os_xy) + 0.5) * (px / os_xy) - nx * px / 2
    # Rows from anterior to posterior; the body sits a little anterior of the FOV centre (table below).
    ys = (np.arange(ny * os_xy) + 0.5) * (px / os_xy) - ny * px / 2 + 12.0
    z0 = p.z_top - nz * t
    zs = z0 + (np.arange(nz * os_z) + 0.5) * (t / os_z)
    scene = _Scene(xs, ys, zs, rng)
    _paint_body(scene, p)
    _paint_organs(scene, p)
    tissue = scene.tissue
    # Fine tissue ids -> HU, then average blocks: partial volume + slice profile.
    lut = np.array([p.hu.get(name, 0.0) for name in _TISSUES], dtype=np.float32)
    fine_hu = lut[tissue]
    shape = (nz, os_z, ny, os_xy, nx, os_xy)
    hu = fine_hu.reshape(shape).mean(axis=(1, 3, 5))
    label_lut = np.zeros(len(_TISSUES), dtype=np.uint8)
    for name, lab in _LABEL_OF.items():
        label_lut[_T[name]] = lab
    fine_lab = label_lut[tissue]
    fine_lab[np.isin(tissue, [_T["kidney_cortex"], _T["kidney_medulla"]]) & (scene.xs[None, None, :] < 0)] = 3
    fine_lab[np.isin(tissue, [_T["kidney_cortex"], _T["kidney_medulla"]]) & (scene.xs[None, None, :] >= 0)] = 4
    counts = np.stack([(fine_lab == k).reshape(shape).sum(axis=(1, 3, 5)) for k in range(5)])
    labels = np.argmax(counts, axis=0).astype(np.uint8)
    # Texture: smooth correlated noise, amplitude by tissue (majority tissue of each voxel).
    amp_lut = np.array([_TEXTURE.get(name, 0.3) for name in _TISSUES], dtype=np.float32)
    amp = amp_lut[tissue].reshape(shape).mean(axis=(1, 3, 5))
    noise_rng = np.random.default_rng([p.seed, 11])
    sigma_z = max(0.5, 2.0 * 3.0 / t)
    tex = ndimage.gaussian_filter(noise_rng.standard_normal(hu.shape).astype(np.float32), (sigma_z, 2.0, 2.0))
    tex *= 1.0 / max(float(tex.std()), 1e-6)
    if p.phase == "arterial":  # heterogeneous ("zebra") spleen in the arterial phase
        spleen_amp = (labels == 2).astype(np.float32) * 3.0
        amp = amp + spleen_amp
    hu += p.texture_hu * amp * tex
    white = ndimage.gaussian_filter(noise_rng.standard_normal(hu.shape).astype(np.float32), 0.6)
    white *= 1.0 / max(float(white.std()), 1e-6)
    hu += p.noise_hu * math.sqrt(3.0 / t) * white
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.float32)
    return SyntheticCT(image=hu, labels=labels, spacing=(t, px, px), params=p)


def _superellipse(x: np.ndarray, y: np.ndarray, a: float, b: float, n: float = 2.4) -> np.ndarray:
    return np.asarray((np.abs(x) / a) ** n + (np.abs(y) / b) ** n)


def _paint_body(scene: _Scene, p: CaseParams) -> None:
    """Body wall, fat, muscle, spine, ribs, pelvis, lungs and table, then the great vessels.

    The cross-section is the same at every level (2D templates computed once); what changes
    with z (discs, ribs, psoas, pelvis, lungs) is a few masked assignments per slice.
    """
    hs = p.height_scale
    x2, y2 = scene.xs[None, :], scene.ys[:, None]
    spine_y = _spine_y(p)
    lr, ap = p.body_lr, p.body_ap
    outer = _superellipse(x2, y2, lr, ap) < 1
    skin = outer & ~(_superellipse(x2, y2, lr - 2.0, ap - 2.0) < 1)
    fat_post = 0.6 * p.fat_mm
    wall_lr, wall_ap = lr - p.fat_mm, ap - 0.5 * (p.fat_mm + fat_post)
    wall_cy = 0.5 * (p.fat_mm - fat_post)
    muscle = _superellipse(x2, y2 - wall_cy, wall_lr, wall_ap) < 1
    cavity = _superellipse(x2, y2 - wall_cy, wall_lr - p.muscle_mm, wall_ap - p.muscle_mm) < 1
    base = np.full(outer.shape, _T["air"], dtype=np.uint8)
    base[outer] = _T["fat"]
    base[muscle] = _T["muscle"]
    base[cavity] = _T["visceral_fat"]
    base[skin] = _T["skin"]
    # Paraspinal muscles behind the spine.
    base[(((x2 / 55.0) ** 2 + ((y2 - spine_y - 48.0) / 30.0) ** 2) < 1) & muscle] = _T["muscle"]
    table = (np.abs(y2 - (ap + 12.0 + 0.0025 * x2**2)) < 1.5) & ~outer
    base[table] = _T["table"]
    # Spine (lumbar/thoracic): vertebral body with cortex, canal, posterior arch, processes.
    vb = ((x2 / 23.0) ** 2 + ((y2 - spine_y) / 19.0) ** 2) < 1
    vb_in = ((x2 / 20.0) ** 2 + ((y2 - spine_y) / 16.0) ** 2) < 1
    arch = ((x2**2 + (y2 - spine_y - 30.0) ** 2) < 15.0**2) & ~vb
    canal = (x2**2 + (y2 - spine_y - 28.0) ** 2) < 8.5**2
    processes = ((np.abs(x2) < 4.0) & (y2 > spine_y + 40.0) & (y2 < spine_y + 62.0)) | (
        (np.abs(x2) < 42.0) & (np.abs(y2 - spine_y - 25.0) < 4.0) & ~vb
    )
    sacrum = (((x2 / 45.0) ** 2 + ((y2 - spine_y - 10.0) / 16.0) ** 2) < 1) & cavity
    # Lungs above the diaphragm (domes lower laterally, deeper posteriorly); heart in front.
    dome_here = p.dome_z - np.where(x2 > 0, 15.0, 0.0) - 0.0025 * (np.abs(x2) - 60.0).clip(0) ** 2
    dome_here = dome_here - 0.5 * (y2 - 20.0).clip(0)
    heart_area = (((x2 - 25) / 80.0) ** 2 + ((y2 + 30) / 60.0) ** 2 < 1) & cavity
    # Ribs: bands in the wall, anterior ends lower; every 24 mm over the upper abdomen.
    theta = np.arctan2(y2 - wall_cy, x2)
    ell = np.sqrt(_superellipse(x2, y2 - wall_cy, wall_lr - 0.5 * p.muscle_mm, wall_ap - 0.5 * p.muscle_mm))
    rib_ring = (np.abs(ell - 1.0) < 3.0 / wall_ap) & (np.sin(theta) > -0.5)
    rib_phase = 60.0 * (1.0 - np.sin(theta))
    rib_top, rib_bottom = p.dome_z + 40.0, p.dome_z - 170.0 * hs
    for k, z in enumerate(scene.zs):
        sl = scene.tissue[k]
        sl[...] = base
        psoas_r = float(np.clip(6.0 + (p.dome_z - 90 * hs - z) * 0.09, 0, 28))
        if psoas_r > 2:
            for side in (-1, 1):
                sl[(((x2 - side * (30.0 + 0.5 * psoas_r)) ** 2 + (y2 - spine_y + 2.0) ** 2) < psoas_r**2) & cavity] = (
                    _T["muscle"]
                )
        if z > p.dome_z - 140.0:
            above = cavity & (z > dome_here)
            sl[above & ~heart_area] = _T["lung"]
            if z > p.dome_z - 10.0:
                sl[above & heart_area] = _T["heart"]
        if z > 70 * hs:
            disc = ((z / hs) % 32.0) < 7.0
            sl[vb] = _T["disc"] if disc else _T["cortical_bone"]
            sl[arch] = _T["cortical_bone"]
            sl[canal] = _T["csf"]
            if not disc:
                sl[vb_in] = _T["cancellous_bone"]
                sl[processes] = _T["cortical_bone"]
        else:
            sl[sacrum] = _T["cancellous_bone"]
        if z < 190 * hs:  # pelvis: gluteal and iliacus muscles, iliac wings, femoral heads, pubis
            wing_x = 0.55 * lr + 0.12 * (z - 120 * hs)
            bulk = float(np.clip((190 * hs - z) / 90.0, 0, 1))
            for side in (-1, 1):
                glute = ((x2 - side * (wing_x + 12.0)) / (15.0 + 25.0 * bulk)) ** 2 + (
                    (y2 - spine_y - 18.0) / (18.0 + 22.0 * bulk)
                ) ** 2 < 1
                sl[glute & outer] = _T["muscle"]
                iliacus = ((x2 - side * (wing_x - 18.0)) / 14.0) ** 2 + (
                    (y2 - spine_y + 20.0) / (20.0 * bulk + 5)
                ) ** 2 < 1
                sl[iliacus & cavity] = _T["muscle"]
            for side in (-1, 1):
                # Iliac wing: a plate flaring from beside the sacrum (posterior, medial) to the
                # anterior superior iliac spine (anterior, lateral); distance to that segment.
                p0 = np.array([side * 45.0, spine_y + 15.0])
                p1 = np.array([side * (wing_x + 10.0), spine_y - 55.0])
                d = p1 - p0
                t_seg = np.clip(((x2 - p0[0]) * d[0] + (y2 - p0[1]) * d[1]) / float(d @ d), 0, 1)
                dist = np.hypot(x2 - p0[0] - t_seg * d[0], y2 - p0[1] - t_seg * d[1])
                wing = dist < 4.0 + 3.0 * (z < 100 * hs)
                sl[wing & muscle] = _T["cortical_bone"]
                sl[(dist < 1.5 + 2.0 * (z < 100 * hs)) & muscle] = _T["cancellous_bone"]
                if z < 70 * hs:
                    sl[(((x2 - side * 0.55 * lr) ** 2 + (y2 + 0.05 * ap) ** 2) < 24.0**2) & muscle] = _T[
                        "cancellous_bone"
                    ]
            if z < 30 * hs:
                sl[(np.abs(y2 + 0.6 * ap) < 8.0) & (np.abs(x2) < 40) & cavity] = _T["cortical_bone"]
        if rib_bottom < z < rib_top:
            sl[rib_ring & (((z + rib_phase) % (28.0 * hs)) < 6.0)] = _T["cortical_bone"]
    _paint_vessels(scene, p, spine_y)


def _spine_y(p: CaseParams) -> float:
    """Centre of the vertebral bodies (mm posterior of the body centre); real CT: 0.31 x AP + 6."""
    return 0.31 * p.body_ap + 6.0


def _paint_vessels(scene: _Scene, p: CaseParams, spine_y: float) -> None:
    hs = p.height_scale
    bif = 200.0 * hs
    aorta = np.array([[12.0, spine_y - 30.0, p.dome_z + 60], [10.0, spine_y - 32.0, bif]])
    _tube(scene, aorta, 11.0, "arterial_blood")
    for side in (-1, 1):
        _tube(
            scene,
            np.array([[10.0, spine_y - 32.0, bif], [side * 55.0, spine_y - 25.0, 90.0 * hs]]),
            7.0,
            "arterial_blood",
        )
        _tube(
            scene, np.array([[-15.0, spine_y - 25.0, bif - 10], [side * 60.0, spine_y - 15.0, 90.0 * hs]]), 8.0, "blood"
        )
    ivc = np.array([[-24.0, spine_y - 26.0, p.dome_z + 60], [-15.0, spine_y - 25.0, bif - 10]])
    _tube(scene, ivc, 11.0, "blood")


def _paint_organs(scene: _Scene, p: CaseParams) -> None:
    """Bowel first (organs displace it), then stomach, pancreas, kidneys, spleen, liver, gallbladder, bladder."""
    rng = scene.rng
    hs = p.height_scale
    spine_y = _spine_y(p)
    soft = {"visceral_fat", "muscle"}
    dome = p.dome_z
    kz_left = dome - 125.0 * hs + p.kidney_shift[2]
    kz_right = kz_left - p.right_kidney_drop
    lr, ap = p.body_lr - p.fat_mm - p.muscle_mm, p.body_ap - p.fat_mm - p.muscle_mm
    # Colon: ascending (right), transverse (anterior), descending (left), sigmoid.
    colon = np.array(
        [
            [-0.72 * lr, 0.0, 150.0 * hs],
            [-0.72 * lr, -0.05 * ap, kz_right - 20],
            [-0.45 * lr, -0.45 * ap, kz_right + 10],
            [0.0, -0.65 * ap, kz_right - 10 + rng.uniform(-30, 20)],
            [0.5 * lr, -0.4 * ap, kz_left + 40],
            [0.75 * lr, 0.05 * ap, kz_left + 20],
            [0.72 * lr, 0.05 * ap, 150.0 * hs],
            [0.2 * lr, -0.2 * ap, 90.0 * hs],
        ]
    )
    colon[:, :2] += rng.uniform(-10, 10, (len(colon), 2))
    _tube(scene, colon, float(rng.uniform(18, 26)), "stomach_wall", soft)
    _tube(scene, colon, float(rng.uniform(13, 16)), "feces", {"stomach_wall"})
    for _ in range(p.n_small_bowel):
        c = (rng.uniform(-0.6, 0.6) * lr, rng.uniform(-0.75, 0.1) * ap, rng.uniform(40 * hs, kz_left + 10))
        r = float(rng.uniform(9, 17))
        got = scene.ellipsoid(c, (r * rng.uniform(1, 2.2), r, r), (0, 0, float(rng.uniform(0, 180))))
        if got is None:
            continue
        box, rad = got
        scene.paint(box, rad < 1, "bowel_wall", soft)
        content = rng.uniform()
        if content < 0.6:  # else a collapsed loop: solid soft tissue, as dense as an organ
            scene.paint(box, rad < 0.7, "gas" if content < 0.2 else "fluid", {"bowel_wall"})
    # Stomach: left upper quadrant, anterior; gas rises anteriorly (small y) above a fluid level.
    st_c = (0.3 * lr + rng.uniform(-15, 15), -0.35 * ap + rng.uniform(-10, 10), dome - 80.0 * hs + rng.uniform(-15, 15))
    got = scene.ellipsoid(st_c, (50.0, 35.0, 55.0), (0, 0, -30.0), wobble=0.15)
    if got is not None:
        box, rad = got
        scene.paint(box, rad < 1, "stomach_wall", soft | {"bowel_wall", "fluid", "gas", "feces"})
        inner = rad < 0.88
        level = st_c[1] - 35.0 + 70.0 * p.stomach_fill
        gas = inner & (scene.ys[box[1]][None, :, None] < level)
        scene.paint(box, inner & ~gas, "fluid", {"stomach_wall"})
        scene.paint(box, gas, "gas", {"stomach_wall"})
    # Pancreas: from the splenic hilum (tail) across the spine to the head by the duodenum.
    pz = kz_left + 25.0
    panc = np.array(
        [
            [0.55 * lr, spine_y - 5.0, pz + 15],
            [0.2 * lr, spine_y - 45.0, pz + 5],
            [-0.1 * lr, spine_y - 55.0, pz],
            [-0.3 * lr, spine_y - 45.0, pz - 20],
        ]
    )
    _tube(scene, panc, float(rng.uniform(9, 13)), "pancreas", soft | {"bowel_wall", "fluid", "gas", "stomach_wall"})
    # Kidneys: bean shapes, upper pole medial and posterior, hilum anteromedial, cortex over medulla.
    ks = p.kidney_scale
    sx, sy, sz = p.kidney_shift
    for side, kz in ((-1, kz_right), (1, kz_left)):
        kc = (side * (66.0 + sx * 0.5), spine_y - 8.0 + sy * 0.5, kz)
        semi = (30.0 * ks, 27.0 * ks, 56.0 * ks)
        rot = (-12.0, side * -15.0, side * 30.0)
        got = scene.ellipsoid(kc, semi, rot, wobble=0.05)
        if got is None:
            continue
        box, rad = got
        x = scene.xs[box[2]][None, None, :] - kc[0]
        y = scene.ys[box[1]][None, :, None] - kc[1]
        z = scene.zs[box[0]][:, None, None] - kc[2]
        # Hilum: a notch on the anteromedial side at mid height.
        hilum = (
            (-side * x - 14.0 * ks) ** 2 / (16.0 * ks) ** 2
            + (y + 6.0) ** 2 / (14.0 * ks) ** 2
            + z**2 / (20.0 * ks) ** 2
        ) < 1
        organ = (rad < 1) & ~hilum
        scene.paint(box, rad < 1.3, "perirenal_fat", soft | {"bowel_wall", "fluid", "gas", "feces"})
        scene.paint(box, organ, "kidney_cortex")
        scene.paint(box, organ & (rad < 0.72), "kidney_medulla")
        sinus = (
            (-side * x - 6.0 * ks) ** 2 / (12.0 * ks) ** 2 + (y + 3.0) ** 2 / (10.0 * ks) ** 2 + z**2 / (24.0 * ks) ** 2
        ) < 1
        scene.paint(box, sinus & (rad < 1.05), "renal_sinus")
        scene.paint(box, sinus & (rad < 0.6) & (np.abs(z) < 10 * ks), "urine")
    # Spleen: left upper posterior, crescent against the ribs.
    ss = p.spleen_scale
    sx, sy, sz = p.spleen_shift
    sp_c = (0.62 * lr + sx * 0.5, spine_y + 5.0 + sy, dome - 75.0 * hs + sz)
    got = scene.ellipsoid(sp_c, (24.0 * ss**0.5, 58.0 * ss**0.7, 48.0 * ss**0.8), (0.0, -15.0, -35.0), wobble=0.08)
    if got is not None:
        box, rad = got
        x = scene.xs[box[2]][None, None, :]
        y = scene.ys[box[1]][None, :, None]
        hollow = ((x - (sp_c[0] - 52.0)) ** 2 + (y - (sp_c[1] - 22.0)) ** 2) < 34.0**2
        cav = _cavity(scene, box, p)
        scene.paint(box, (rad < 1) & ~hollow & cav, "spleen", None)
    # Liver: right lobe + left lobe (smooth union), under the diaphragm, against the right wall.
    ls = p.liver_scale
    sx, sy, sz = p.liver_shift
    rl_c = (-0.45 * lr + sx, 0.0 * ap + sy, dome - 78.0 * hs + sz)
    ll_c = (0.1 * lr + sx, -0.45 * ap + sy, dome - 50.0 * hs + sz)
    semi_r = (0.52 * lr * ls, 0.8 * ap * ls, 82.0 * hs * ls)
    semi_l = (0.45 * lr * ls, 0.36 * ap * ls, 40.0 * hs * ls)
    g1 = scene.ellipsoid(rl_c, semi_r, (0.0, 8.0, 0.0), wobble=0.06)
    if g1 is not None:
        box, rad = g1
        lo = np.array([scene.xs[box[2]][0], scene.ys[box[1]][0], scene.zs[box[0]][0]])
        hi = np.array([scene.xs[box[2]][-1], scene.ys[box[1]][-1], scene.zs[box[0]][-1]])
        x = scene.xs[box[2]][None, None, :] - ll_c[0]
        y = scene.ys[box[1]][None, :, None] - ll_c[1]
        z = scene.zs[box[0]][:, None, None] - ll_c[2]
        rad_l = np.sqrt((x / semi_l[0]) ** 2 + (y / semi_l[1]) ** 2 + (z / semi_l[2]) ** 2)
        # Left lobe thins towards its tip on the patient's left.
        rad_l = rad_l + 0.35 * np.clip(x / semi_l[0], 0, None)
        k = 0.15  # smooth minimum
        h = np.clip(0.5 + 0.5 * (rad_l - rad) / k, 0, 1)
        union = rad_l * (1 - h) + rad * h - k * h * (1 - h)
        del lo, hi
        xw = scene.xs[box[2]][None, None, :]
        yw = scene.ys[box[1]][None, :, None]
        zw = scene.zs[box[0]][:, None, None]
        below_dome = zw < (dome - 0.0025 * (np.abs(xw) - 60.0).clip(0) ** 2 - 0.5 * (yw - 20.0).clip(0) - 3.0)
        inside = (union < 1) & below_dome & _cavity(scene, box, p)
        allowed = {"visceral_fat", "bowel_wall", "fluid", "gas", "feces", "stomach_wall", "pancreas", "muscle", "blood"}
        scene.paint(box, inside, "liver", allowed)
        # Intrahepatic vessels: thin tubular sheets of a band-passed random field.
        field_ = ndimage.gaussian_filter(rng.standard_normal(union.shape).astype(np.float32), 3.0)
        field_ /= max(float(field_.std()), 1e-6)
        vessels = (np.abs(field_) < 0.12) & (union < 0.85)
        scene.paint(box, vessels, "liver_vessel", {"liver"})
    # Gallbladder: under the liver, anterior; bile is not liver.
    gb_c = (-0.2 * lr + rng.uniform(-10, 10), -0.35 * ap, dome - 140.0 * hs * ls + rng.uniform(-10, 10))
    got = scene.ellipsoid(gb_c, (14.0, 14.0, 35.0), (30.0, 0.0, 0.0))
    if got is not None and rng.uniform() < 0.8:
        box, rad = got
        scene.paint(box, rad < 1, "bile", {"liver", "liver_vessel", "visceral_fat", "bowel_wall", "fluid"})
    # Bladder: low in the pelvis, anterior.
    bl = rng.uniform(0.6, 1.2)
    got = scene.ellipsoid((0.0, -0.35 * ap, 45.0 * hs), (45.0 * bl, 35.0 * bl, 35.0 * bl))
    if got is not None:
        box, rad = got
        scene.paint(box, rad < 1, "urine", soft | {"bowel_wall", "fluid", "gas", "feces", "stomach_wall"})


def _cavity(scene: _Scene, box: tuple[slice, slice, slice], p: CaseParams) -> np.ndarray:
    """Inside the abdominal cavity (within the muscle wall) on a fine-grid box (constant along z)."""
    x = scene.xs[box[2]][None, None, :]
    y = scene.ys[box[1]][None, :, None]
    fat_post = 0.6 * p.fat_mm
    wall_lr = p.body_lr - p.fat_mm - p.muscle_mm
    wall_ap = p.body_ap - 0.5 * (p.fat_mm + fat_post) - p.muscle_mm
    return np.asarray(_superellipse(x, y - 0.5 * (p.fat_mm - fat_post), wall_lr, wall_ap) < 1)
