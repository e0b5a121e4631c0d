"""The procedural CT generator: deterministic, anatomically placed, HU and sizes as documented."""

from __future__ import annotations

import numpy as np
import pytest

from radsight.train.synth_ct import LABELS, ORGAN_VOLUME_ML, TISSUE_HU, generate, sample_params

# Small, fast cases: coarse pixels, thick slices.
FAST = {"pixel_spacing": 3.4, "slice_thickness": 5.0}


def _whole_abdomen(seed: int, **extra: object) -> dict[str, object]:
    """Overrides that put every organ inside the scanned range."""
    p = sample_params(seed)
    return {**FAST, "z_top": p.dome_z + 40.0, "z_length": 330.0, **extra}


def test_same_seed_same_volume_other_seed_other_volume() -> None:
    a, b = generate(3, **FAST), generate(3, **FAST)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)
    assert a.params == b.params
    c = generate(4, **FAST)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


def test_spacing_and_thickness_are_honoured() -> None:
    case = generate(5, slice_thickness=1.5, pixel_spacing=2.5, z_length=60.0)
    assert case.spacing == (1.5, 2.5, 2.5)
    assert case.image.shape[0] == 40  # 60 mm / 1.5 mm
    p = case.params
    assert case.image.shape[2] == round(2 * p.body_lr * p.fov_lr_factor / 2.5)
    assert case.image.dtype == np.float32 and case.labels.dtype == np.uint8
    assert set(np.unique(case.labels)) <= {0, *LABELS}


@pytest.mark.parametrize("seed", [11, 12])
def test_organs_sizes_sides_and_hu_as_documented(seed: int) -> None:
    case = generate(seed, **_whole_abdomen(seed))
    phase = case.params.phase
    centroids = {}
    for index, name in LABELS.items():
        volume = case.label_volume_ml(index)
        lo, hi = ORGAN_VOLUME_ML[name]
        assert lo <= volume <= hi, f"{name}: {volume:.0f} mL outside {lo}-{hi}"
        centroids[name] = np.argwhere(case.labels == index).mean(axis=0)  # (z, y, x)
    width = case.labels.shape[2]
    # Radiological display: the patient's right is the image's left (small column index).
    assert centroids["liver"][2] < width / 2 < centroids["spleen"][2]
    assert centroids["right kidney"][2] < width / 2 < centroids["left kidney"][2]
    # Kidneys lie posterior to the liver's centroid; the right kidney is lower than the left.
    assert centroids["right kidney"][1] > centroids["liver"][1]
    assert centroids["right kidney"][0] < centroids["left kidney"][0]
    # HU: the drawn tissue values lie in the documented ranges, and organ interiors show them.
    for tissue in ("liver", "spleen", "kidney_cortex", "kidney_medulla"):
        lo, hi = TISSUE_HU[phase][tissue]
        assert lo <= case.params.hu[tissue] <= hi
    from scipy import ndimage

    for index, tissues in {1: ["liver"], 2: ["spleen"], 3: ["kidney_cortex", "kidney_medulla"]}.items():
        interior = ndimage.binary_erosion(case.labels == index, iterations=1)
        median = float(np.median(case.image[interior]))
        lo = min(TISSUE_HU[phase][t][0] for t in tissues) - 12
        hi = max(TISSUE_HU[phase][t][1] for t in tissues) + 12
        assert lo <= median <= hi, f"{LABELS[index]} median {median:.0f} HU outside {lo}-{hi} ({phase})"
    # Fat and air where they belong.
    assert case.image[0, 0, 0] < -900
    assert np.percentile(case.image[case.labels == 0], 50) < 0


def test_phase_changes_enhancement() -> None:
    nc = generate(21, **_whole_abdomen(21, phase="non_contrast"))
    pv = generate(21, **_whole_abdomen(21, phase="portal_venous"))
    assert nc.params.phase == "non_contrast" and pv.params.phase == "portal_venous"
    assert np.median(pv.image[pv.labels == 1]) > np.median(nc.image[nc.labels == 1]) + 20
    assert np.median(pv.image[pv.labels == 3]) > np.median(nc.image[nc.labels == 3]) + 60
