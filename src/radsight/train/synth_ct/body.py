"""Body painting: wall, fat, muscle, spine, ribs, pelvis, lungs and table, then the great vessels.

The cross-section is the same at every level (2D templates computed once, :class:`_CrossSection`);
what changes with z (discs, ribs, psoas, pelvis, lungs) is a few masked assignments per slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.train.synth_ct.params import CaseParams
from radsight.train.synth_ct.scene import TISSUE_ID, Scene, spine_centre_y, superellipse, tube

_T = TISSUE_ID


@dataclass
class _CrossSection:
    """The 2D (y, x) templates of an axial level, shared by every slice."""

    x2: np.ndarray
    y2: np.ndarray
    spine_y: float
    outer: np.ndarray
    muscle: np.ndarray
    cavity: np.ndarray
    base: np.ndarray  # tissue ids: skin, fat, muscle wall, visceral fat, paraspinal muscles, table
    vb: np.ndarray
    vb_in: np.ndarray
    arch: np.ndarray
    canal: np.ndarray
    processes: np.ndarray
    sacrum: np.ndarray
    dome_here: np.ndarray
    heart_area: np.ndarray
    rib_ring: np.ndarray
    rib_phase: np.ndarray


def paint_body(scene: Scene, p: CaseParams) -> None:
    """Body wall, fat, muscle, spine, ribs, pelvis, lungs and table, then the great vessels."""
    hs = p.height_scale
    cs = _cross_section(scene, p)
    rib_top, rib_bottom = p.dome_z + 40.0, p.dome_z - 170.0 * hs
    for k, z in enumerate(scene.zs):
        sl = scene.tissue[k]
        sl[...] = cs.base
        _paint_psoas_and_chest(sl, cs, p, z)
        _paint_spine(sl, cs, p, z)
        if z < 190 * hs:
            _paint_pelvis(sl, cs, p, z)
        if rib_bottom < z < rib_top:
            sl[cs.rib_ring & (((z + cs.rib_phase) % (28.0 * hs)) < 6.0)] = _T["cortical_bone"]
    _paint_vessels(scene, p, cs.spine_y)


def _cross_section(scene: Scene, p: CaseParams) -> _CrossSection:
    x2, y2 = scene.xs[None, :], scene.ys[:, None]
    spine_y = spine_centre_y(p)
    lr, ap = p.body_lr, p.body_ap
    outer = superellipse(x2, y2, lr, ap) < 1
    skin = outer & ~(superellipse(x2, y2, lr - 2.0, ap - 2.0) < 1)
    fat_post = 0.6 * p.fat_mm
    wall_lr, wall_ap = lr - p.fat_mm, ap - 0.5 * (p.fat_mm + fat_post)
    wall_cy = 0.5 * (p.fat_mm - fat_post)
    muscle = superellipse(x2, y2 - wall_cy, wall_lr, wall_ap) < 1
    cavity = superellipse(x2, y2 - wall_cy, wall_lr - p.muscle_mm, wall_ap - p.muscle_mm) < 1
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
    ell = np.sqrt(superellipse(x2, y2 - wall_cy, wall_lr - 0.5 * p.muscle_mm, wall_ap - 0.5 * p.muscle_mm))
    rib_ring = (np.abs(ell - 1.0) < 3.0 / wall_ap) & (np.sin(theta) > -0.5)
    rib_phase = 60.0 * (1.0 - np.sin(theta))
    return _CrossSection(
        x2=x2, y2=y2, spine_y=spine_y, outer=outer, muscle=muscle, cavity=cavity, base=base, vb=vb, vb_in=vb_in,
        arch=arch, canal=canal, processes=processes, sacrum=sacrum, dome_here=dome_here, heart_area=heart_area,
        rib_ring=rib_ring, rib_phase=rib_phase,
    )


def _paint_psoas_and_chest(sl: np.ndarray, cs: _CrossSection, p: CaseParams, z: float) -> None:
    """The psoas muscles (growing caudally), and lungs and heart above the diaphragm."""
    x2, y2 = cs.x2, cs.y2
    psoas_r = float(np.clip(6.0 + (p.dome_z - 90 * p.height_scale - z) * 0.09, 0, 28))
    if psoas_r > 2:
        for side in (-1, 1):
            psoas = ((x2 - side * (30.0 + 0.5 * psoas_r)) ** 2 + (y2 - cs.spine_y + 2.0) ** 2) < psoas_r**2
            sl[psoas & cs.cavity] = _T["muscle"]
    if z > p.dome_z - 140.0:
        above = cs.cavity & (z > cs.dome_here)
        sl[above & ~cs.heart_area] = _T["lung"]
        if z > p.dome_z - 10.0:
            sl[above & cs.heart_area] = _T["heart"]


def _paint_spine(sl: np.ndarray, cs: _CrossSection, p: CaseParams, z: float) -> None:
    """Vertebra or disc above the sacrum (a disc every 32 mm), the sacrum below."""
    hs = p.height_scale
    if z > 70 * hs:
        disc = ((z / hs) % 32.0) < 7.0
        sl[cs.vb] = _T["disc"] if disc else _T["cortical_bone"]
        sl[cs.arch] = _T["cortical_bone"]
        sl[cs.canal] = _T["csf"]
        if not disc:
            sl[cs.vb_in] = _T["cancellous_bone"]
            sl[cs.processes] = _T["cortical_bone"]
    else:
        sl[cs.sacrum] = _T["cancellous_bone"]


def _paint_pelvis(sl: np.ndarray, cs: _CrossSection, p: CaseParams, z: float) -> None:
    """Gluteal and iliacus muscles, iliac wings, femoral heads, pubis."""
    x2, y2, spine_y, hs = cs.x2, cs.y2, cs.spine_y, p.height_scale
    lr, ap = p.body_lr, p.body_ap
    wing_x = 0.55 * lr + 0.12 * (z - 120 * hs)
    bulk = float(np.clip((190 * hs - z) / 90.0, 0, 1))
    for side in (-1, 1):
        glute = ((x2 - side * (wing_x + 12.0)) / (15.0 + 25.0 * bulk)) ** 2 + (
            (y2 - spine_y - 18.0) / (18.0 + 22.0 * bulk)
        ) ** 2 < 1
        sl[glute & cs.outer] = _T["muscle"]
        iliacus = ((x2 - side * (wing_x - 18.0)) / 14.0) ** 2 + ((y2 - spine_y + 20.0) / (20.0 * bulk + 5)) ** 2 < 1
        sl[iliacus & cs.cavity] = _T["muscle"]
    for side in (-1, 1):
        # Iliac wing: a plate flaring from beside the sacrum (posterior, medial) to the
        # anterior superior iliac spine (anterior, lateral); distance to that segment.
        p0 = np.array([side * 45.0, spine_y + 15.0])
        p1 = np.array([side * (wing_x + 10.0), spine_y - 55.0])
        d = p1 - p0
        t_seg = np.clip(((x2 - p0[0]) * d[0] + (y2 - p0[1]) * d[1]) / float(d @ d), 0, 1)
        dist = np.hypot(x2 - p0[0] - t_seg * d[0], y2 - p0[1] - t_seg * d[1])
        wing = dist < 4.0 + 3.0 * (z < 100 * hs)
        sl[wing & cs.muscle] = _T["cortical_bone"]
        sl[(dist < 1.5 + 2.0 * (z < 100 * hs)) & cs.muscle] = _T["cancellous_bone"]
        if z < 70 * hs:
            femoral_head = ((x2 - side * 0.55 * lr) ** 2 + (y2 + 0.05 * ap) ** 2) < 24.0**2
            sl[femoral_head & cs.muscle] = _T["cancellous_bone"]
    if z < 30 * hs:
        sl[(np.abs(y2 + 0.6 * ap) < 8.0) & (np.abs(x2) < 40) & cs.cavity] = _T["cortical_bone"]


def _paint_vessels(scene: Scene, p: CaseParams, spine_y: float) -> None:
    """Aorta and inferior vena cava down to their bifurcations, then the iliac arteries and veins."""
    hs = p.height_scale
    bif = 200.0 * hs
    aorta = np.array([[12.0, spine_y - 30.0, p.dome_z + 60], [10.0, spine_y - 32.0, bif]])
    tube(scene, aorta, 11.0, "arterial_blood")
    for side in (-1, 1):
        tube(
            scene,
            np.array([[10.0, spine_y - 32.0, bif], [side * 55.0, spine_y - 25.0, 90.0 * hs]]),
            7.0,
            "arterial_blood",
        )
        tube(
            scene, np.array([[-15.0, spine_y - 25.0, bif - 10], [side * 60.0, spine_y - 15.0, 90.0 * hs]]), 8.0, "blood"
        )
    ivc = np.array([[-24.0, spine_y - 26.0, p.dome_z + 60], [-15.0, spine_y - 25.0, bif - 10]])
    tube(scene, ivc, 11.0, "blood")
