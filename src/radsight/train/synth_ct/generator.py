"""The public generator: :func:`generate` draws a case from a seed, :func:`render` paints it on the
fine grid, averages it down to the scanner grid (partial volume and slice profile) and adds
texture and noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from radsight.train.synth_ct.body import paint_body
from radsight.train.synth_ct.organs import paint_organs
from radsight.train.synth_ct.params import CaseParams, sample_params
from radsight.train.synth_ct.scene import TISSUE_ID, TISSUES, Scene

# Label of each labelled tissue (kidney tissue is labelled by side in :func:`_labels`).
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
class SyntheticCT:
    """A generated volume: HU (z, y, x) float32, labels uint8, spacing (z, y, x) mm, its parameters."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    params: CaseParams

    def label_volume_ml(self, index: int) -> float:
        return float((self.labels == index).sum()) * float(np.prod(self.spacing)) / 1000.0


def generate(seed: int, **overrides: Any) -> SyntheticCT:
    """One volume from ``seed`` (deterministic); ``overrides`` fix parameters (see :func:`sample_params`)."""
    return render(sample_params(seed, **overrides))


def render(p: CaseParams) -> SyntheticCT:
    """Paint the case on the fine grid, average down, add texture and noise."""
    t, px = p.slice_thickness, p.pixel_spacing
    scene, blocks = _fine_grid(p)
    paint_body(scene, p)
    paint_organs(scene, p)
    tissue = scene.tissue
    # Fine tissue ids -> HU, then average blocks: partial volume + slice profile.
    lut = np.array([p.hu.get(name, 0.0) for name in TISSUES], dtype=np.float32)
    hu = lut[tissue].reshape(blocks).mean(axis=(1, 3, 5))
    labels = _labels(scene, blocks)
    hu = _add_texture_and_noise(hu, labels, tissue, blocks, p)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.float32)
    return SyntheticCT(image=hu, labels=labels, spacing=(t, px, px), params=p)


def _fine_grid(p: CaseParams) -> tuple[Scene, tuple[int, int, int, int, int, int]]:
    """The empty scene (2x finer in-plane, ``os_z`` sub-slices per slice) and its block shape
    ``(nz, os_z, ny, os_xy, nx, os_xy)`` for averaging down."""
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
    return Scene(xs, ys, zs, rng), (nz, os_z, ny, os_xy, nx, os_xy)


def _labels(scene: Scene, blocks: tuple[int, ...]) -> np.ndarray:
    """The majority label of each voxel's fine block; kidney tissue right (x < 0) is 3, left is 4."""
    tissue = scene.tissue
    label_lut = np.zeros(len(TISSUES), dtype=np.uint8)
    for name, lab in _LABEL_OF.items():
        label_lut[TISSUE_ID[name]] = lab
    fine_lab = label_lut[tissue]
    kidney = np.isin(tissue, [TISSUE_ID["kidney_cortex"], TISSUE_ID["kidney_medulla"]])
    fine_lab[kidney & (scene.xs[None, None, :] < 0)] = 3
    fine_lab[kidney & (scene.xs[None, None, :] >= 0)] = 4
    counts = np.stack([(fine_lab == k).reshape(blocks).sum(axis=(1, 3, 5)) for k in range(5)])
    return np.argmax(counts, axis=0).astype(np.uint8)


def _add_texture_and_noise(
    hu: np.ndarray, labels: np.ndarray, tissue: np.ndarray, blocks: tuple[int, ...], p: CaseParams
) -> np.ndarray:
    """Smooth correlated texture (amplitude by tissue), then slightly correlated scanner noise."""
    t = p.slice_thickness
    amp_lut = np.array([_TEXTURE.get(name, 0.3) for name in TISSUES], dtype=np.float32)
    amp = amp_lut[tissue].reshape(blocks).mean(axis=(1, 3, 5))
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
    return hu
