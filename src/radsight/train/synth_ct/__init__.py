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

Modules: :mod:`.params` (the parameters and their sampling), :mod:`.scene` (the fine grid and
the shapes painted on it), :mod:`.body` and :mod:`.organs` (what is painted), :mod:`.generator`
(:func:`generate` / :func:`render`: painting, averaging down, texture and noise).
"""

from __future__ import annotations

from radsight.train.synth_ct.generator import SyntheticCT, generate, render
from radsight.train.synth_ct.params import (
    COMMON_HU,
    LABELS,
    ORGAN_VOLUME_ML,
    PHASES,
    TISSUE_HU,
    CaseParams,
    Phase,
    sample_params,
)

__all__ = [
    "COMMON_HU",
    "LABELS",
    "ORGAN_VOLUME_ML",
    "PHASES",
    "TISSUE_HU",
    "CaseParams",
    "Phase",
    "SyntheticCT",
    "generate",
    "render",
    "sample_params",
]
