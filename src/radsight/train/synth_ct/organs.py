"""Organ painting, in order: bowel first (organs displace it), then stomach, pancreas, kidneys,
spleen, liver, gallbladder and bladder.

Every random draw comes from ``scene.rng`` in this fixed order, so a seed gives one volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radsight.train.synth_ct.params import CaseParams
from radsight.train.synth_ct.scene import Scene, cavity_mask, spine_centre_y, tube

# Tissues an organ may paint over besides those it names: the cavity's fat and the wall's muscle.
_SOFT = {"visceral_fat", "muscle"}
_BOWEL = {"bowel_wall", "fluid", "gas", "feces"}


@dataclass
class _Layout:
    """Landmarks every organ is placed from (mm; lr / ap are the cavity's semi-axes)."""

    hs: float
    spine_y: float
    dome: float
    kz_left: float
    kz_right: float
    lr: float
    ap: float


def paint_organs(scene: Scene, p: CaseParams) -> None:
    """Bowel first (organs displace it), then stomach, pancreas, kidneys, spleen, liver, gallbladder, bladder."""
    hs = p.height_scale
    kz_left = p.dome_z - 125.0 * hs + p.kidney_shift[2]
    at = _Layout(
        hs=hs,
        spine_y=spine_centre_y(p),
        dome=p.dome_z,
        kz_left=kz_left,
        kz_right=kz_left - p.right_kidney_drop,
        lr=p.body_lr - p.fat_mm - p.muscle_mm,
        ap=p.body_ap - p.fat_mm - p.muscle_mm,
    )
    _paint_bowel(scene, p, at)
    _paint_stomach(scene, p, at)
    _paint_pancreas(scene, at)
    _paint_kidneys(scene, p, at)
    _paint_spleen(scene, p, at)
    _paint_liver(scene, p, at)
    _paint_gallbladder_and_bladder(scene, p, at)


def _paint_bowel(scene: Scene, p: CaseParams, at: _Layout) -> None:
    """Colon (ascending, transverse, descending, sigmoid) and small-bowel loops down into the pelvis."""
    rng, hs, lr, ap = scene.rng, at.hs, at.lr, at.ap
    colon = np.array(
        [
            [-0.72 * lr, 0.0, 150.0 * hs],
            [-0.72 * lr, -0.05 * ap, at.kz_right - 20],
            [-0.45 * lr, -0.45 * ap, at.kz_right + 10],
            [0.0, -0.65 * ap, at.kz_right - 10 + rng.uniform(-30, 20)],
            [0.5 * lr, -0.4 * ap, at.kz_left + 40],
            [0.75 * lr, 0.05 * ap, at.kz_left + 20],
            [0.72 * lr, 0.05 * ap, 150.0 * hs],
            [0.2 * lr, -0.2 * ap, 90.0 * hs],
        ]
    )
    colon[:, :2] += rng.uniform(-10, 10, (len(colon), 2))
    tube(scene, colon, float(rng.uniform(18, 26)), "stomach_wall", _SOFT)
    tube(scene, colon, float(rng.uniform(13, 16)), "feces", {"stomach_wall"})
    for _ in range(p.n_small_bowel):
        c = (rng.uniform(-0.6, 0.6) * lr, rng.uniform(-0.75, 0.1) * ap, rng.uniform(40 * hs, at.kz_left + 10))
        r = float(rng.uniform(9, 17))
        got = scene.ellipsoid(c, (r * rng.uniform(1, 2.2), r, r), (0, 0, float(rng.uniform(0, 180))))
        if got is None:
            continue
        box, rad = got
        scene.paint(box, rad < 1, "bowel_wall", _SOFT)
        content = rng.uniform()
        if content < 0.6:  # else a collapsed loop: solid soft tissue, as dense as an organ
            scene.paint(box, rad < 0.7, "gas" if content < 0.2 else "fluid", {"bowel_wall"})


def _paint_stomach(scene: Scene, p: CaseParams, at: _Layout) -> None:
    """Left upper quadrant, anterior; gas rises anteriorly (small y) above a fluid level."""
    rng = scene.rng
    st_c = (
        0.3 * at.lr + rng.uniform(-15, 15),
        -0.35 * at.ap + rng.uniform(-10, 10),
        at.dome - 80.0 * at.hs + rng.uniform(-15, 15),
    )
    got = scene.ellipsoid(st_c, (50.0, 35.0, 55.0), (0, 0, -30.0), wobble=0.15)
    if got is not None:
        box, rad = got
        scene.paint(box, rad < 1, "stomach_wall", _SOFT | _BOWEL)
        inner = rad < 0.88
        level = st_c[1] - 35.0 + 70.0 * p.stomach_fill
        gas = inner & (scene.ys[box[1]][None, :, None] < level)
        scene.paint(box, inner & ~gas, "fluid", {"stomach_wall"})
        scene.paint(box, gas, "gas", {"stomach_wall"})


def _paint_pancreas(scene: Scene, at: _Layout) -> None:
    """From the splenic hilum (tail) across the spine to the head by the duodenum."""
    pz, lr, spine_y = at.kz_left + 25.0, at.lr, at.spine_y
    panc = np.array(
        [
            [0.55 * lr, spine_y - 5.0, pz + 15],
            [0.2 * lr, spine_y - 45.0, pz + 5],
            [-0.1 * lr, spine_y - 55.0, pz],
            [-0.3 * lr, spine_y - 45.0, pz - 20],
        ]
    )
    radius = float(scene.rng.uniform(9, 13))
    tube(scene, panc, radius, "pancreas", _SOFT | {"bowel_wall", "fluid", "gas", "stomach_wall"})


def _paint_kidneys(scene: Scene, p: CaseParams, at: _Layout) -> None:
    """Bean shapes, upper pole medial and posterior, hilum anteromedial, cortex over medulla."""
    ks = p.kidney_scale
    sx, sy, _ = p.kidney_shift
    for side, kz in ((-1, at.kz_right), (1, at.kz_left)):
        kc = (side * (66.0 + sx * 0.5), at.spine_y - 8.0 + sy * 0.5, kz)
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
        scene.paint(box, rad < 1.3, "perirenal_fat", _SOFT | _BOWEL)
        scene.paint(box, organ, "kidney_cortex")
        scene.paint(box, organ & (rad < 0.72), "kidney_medulla")
        sinus = (
            (-side * x - 6.0 * ks) ** 2 / (12.0 * ks) ** 2 + (y + 3.0) ** 2 / (10.0 * ks) ** 2 + z**2 / (24.0 * ks) ** 2
        ) < 1
        scene.paint(box, sinus & (rad < 1.05), "renal_sinus")
        scene.paint(box, sinus & (rad < 0.6) & (np.abs(z) < 10 * ks), "urine")


def _paint_spleen(scene: Scene, p: CaseParams, at: _Layout) -> None:
    """Left upper posterior, a crescent against the ribs."""
    ss = p.spleen_scale
    sx, sy, sz = p.spleen_shift
    sp_c = (0.62 * at.lr + sx * 0.5, at.spine_y + 5.0 + sy, at.dome - 75.0 * at.hs + sz)
    got = scene.ellipsoid(sp_c, (24.0 * ss**0.5, 58.0 * ss**0.7, 48.0 * ss**0.8), (0.0, -15.0, -35.0), wobble=0.08)
    if got is not None:
        box, rad = got
        x = scene.xs[box[2]][None, None, :]
        y = scene.ys[box[1]][None, :, None]
        hollow = ((x - (sp_c[0] - 52.0)) ** 2 + (y - (sp_c[1] - 22.0)) ** 2) < 34.0**2
        cav = cavity_mask(scene, box, p)
        scene.paint(box, (rad < 1) & ~hollow & cav, "spleen", None)


def _paint_liver(scene: Scene, p: CaseParams, at: _Layout) -> None:
    """Right lobe + left lobe (smooth union), under the diaphragm, against the right wall; with vessels."""
    ls = p.liver_scale
    sx, sy, sz = p.liver_shift
    lr, ap, hs = at.lr, at.ap, at.hs
    rl_c = (-0.45 * lr + sx, 0.0 * ap + sy, at.dome - 78.0 * hs + sz)
    ll_c = (0.1 * lr + sx, -0.45 * ap + sy, at.dome - 50.0 * hs + sz)
    semi_r = (0.52 * lr * ls, 0.8 * ap * ls, 82.0 * hs * ls)
    semi_l = (0.45 * lr * ls, 0.36 * ap * ls, 40.0 * hs * ls)
    g1 = scene.ellipsoid(rl_c, semi_r, (0.0, 8.0, 0.0), wobble=0.06)
    if g1 is None:
        return
    box, rad = g1
    x = scene.xs[box[2]][None, None, :] - ll_c[0]
    y = scene.ys[box[1]][None, :, None] - ll_c[1]
    z = scene.zs[box[0]][:, None, None] - ll_c[2]
    rad_l = np.sqrt((x / semi_l[0]) ** 2 + (y / semi_l[1]) ** 2 + (z / semi_l[2]) ** 2)
    # Left lobe thins towards its tip on the patient's left.
    rad_l = rad_l + 0.35 * np.clip(x / semi_l[0], 0, None)
    k = 0.15  # smooth minimum
    h = np.clip(0.5 + 0.5 * (rad_l - rad) / k, 0, 1)
    union = rad_l * (1 - h) + rad * h - k * h * (1 - h)
    xw = scene.xs[box[2]][None, None, :]
    yw = scene.ys[box[1]][None, :, None]
    zw = scene.zs[box[0]][:, None, None]
    below_dome = zw < (at.dome - 0.0025 * (np.abs(xw) - 60.0).clip(0) ** 2 - 0.5 * (yw - 20.0).clip(0) - 3.0)
    inside = (union < 1) & below_dome & cavity_mask(scene, box, p)
    scene.paint(box, inside, "liver", _SOFT | _BOWEL | {"stomach_wall", "pancreas", "blood"})
    # Intrahepatic vessels: thin tubular sheets of a band-passed random field.
    field_ = ndimage.gaussian_filter(scene.rng.standard_normal(union.shape).astype(np.float32), 3.0)
    field_ /= max(float(field_.std()), 1e-6)
    vessels = (np.abs(field_) < 0.12) & (union < 0.85)
    scene.paint(box, vessels, "liver_vessel", {"liver"})


def _paint_gallbladder_and_bladder(scene: Scene, p: CaseParams, at: _Layout) -> None:
    """Gallbladder under the liver, anterior (bile is not liver; absent in 1 case in 5); bladder low and anterior."""
    rng, hs, lr, ap = scene.rng, at.hs, at.lr, at.ap
    gb_c = (-0.2 * lr + rng.uniform(-10, 10), -0.35 * ap, at.dome - 140.0 * hs * p.liver_scale + rng.uniform(-10, 10))
    got = scene.ellipsoid(gb_c, (14.0, 14.0, 35.0), (30.0, 0.0, 0.0))
    if got is not None and rng.uniform() < 0.8:
        box, rad = got
        scene.paint(box, rad < 1, "bile", {"liver", "liver_vessel", "visceral_fat", "bowel_wall", "fluid"})
    bl = rng.uniform(0.6, 1.2)
    got = scene.ellipsoid((0.0, -0.35 * ap, 45.0 * hs), (45.0 * bl, 35.0 * bl, 35.0 * bl))
    if got is not None:
        box, rad = got
        scene.paint(box, rad < 1, "urine", _SOFT | _BOWEL | {"stomach_wall"})
