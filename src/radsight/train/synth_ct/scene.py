"""The painted scene: the fine grid of tissue ids in patient millimetres, and the shapes painted
on it (rotated ellipsoids with a wobbly surface, tubes along polylines, the body's cross-section)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from radsight.train.synth_ct.params import CaseParams

# Tissues painted on the fine grid; a tissue's id is its index here (labels: generator._LABEL_OF).
TISSUES = [
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
TISSUE_ID = {name: i for i, name in enumerate(TISSUES)}


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix (degrees) about X, Y, Z, applied in that order."""
    a, b, c = (math.radians(v) for v in (rx, ry, rz))
    mx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    my = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    mz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return mz @ my @ mx


class Scene:
    """The fine grid being painted: tissue ids (z, y, x) and coordinates in mm."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, rng: np.random.Generator) -> None:
        self.xs, self.ys, self.zs = xs, ys, zs
        self.tissue = np.full((zs.size, ys.size, xs.size), TISSUE_ID["air"], dtype=np.uint8)
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
            mask = mask & np.isin(view, [TISSUE_ID[t] for t in only])
        view[mask] = TISSUE_ID[tissue]


def tube(scene: Scene, points: np.ndarray, radius: float, tissue: str, only: set[str] | None = None) -> None:
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


def superellipse(x: np.ndarray, y: np.ndarray, a: float, b: float, n: float = 2.4) -> np.ndarray:
    """``|x/a|^n + |y/b|^n``: under 1 inside the rounded-rectangle outline of the abdomen."""
    return np.asarray((np.abs(x) / a) ** n + (np.abs(y) / b) ** n)


def spine_centre_y(p: CaseParams) -> float:
    """Centre of the vertebral bodies (mm posterior of the body centre); real CT: 0.31 x AP + 6."""
    return 0.31 * p.body_ap + 6.0


def cavity_mask(scene: Scene, box: tuple[slice, slice, slice], p: CaseParams) -> np.ndarray:
    """Inside the abdominal cavity (within the muscle wall) on a fine-grid box (constant along z)."""
    x = scene.xs[box[2]][None, None, :]
    y = scene.ys[box[1]][None, :, None]
    fat_post = 0.6 * p.fat_mm
    wall_lr = p.body_lr - p.fat_mm - p.muscle_mm
    wall_ap = p.body_ap - 0.5 * (p.fat_mm + fat_post) - p.muscle_mm
    return np.asarray(superellipse(x, y - 0.5 * (p.fat_mm - fat_post), wall_lr, wall_ap) < 1)
