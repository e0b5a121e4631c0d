"""A check of a segmentation package on an unlabelled real CT (NIfTI): organ volumes, time, overlay."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from radsight.ai import inference
from radsight.ai.package import load_package
from radsight.train import synth_ct
from radsight.train.segmentation.cases import load_nifti_zyx
from radsight.train.segmentation.evaluation import segment
from radsight.train.segmentation.model import ORGANS


def check_on_nifti(package_dir: Path, nifti: Path, png: Path | None = None) -> dict[str, Any]:
    """Run the package on an unlabelled NIfTI CT through the serving path: organ volumes, time, overlay.

    Returns ``{"seconds", "shape", "spacing", "volumes_ml": {organ: mL}, "centroid_column_fraction":
    {organ: 0..1 (0 = image left = patient right)}}``; ``png`` gets axial and coronal slices with
    the label map drawn over them.
    """
    package = load_package(Path(package_dir))
    image, spacing = load_nifti_zyx(Path(nifti))
    inference.session_for(package)  # session creation is a one-off cost, not the per-study time
    t0 = time.perf_counter()
    pred = segment(package, image, spacing)
    seconds = time.perf_counter() - t0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    report: dict[str, Any] = {
        "seconds": seconds,
        "shape": list(image.shape),
        "spacing": list(spacing),
        "volumes_ml": {name: float((pred == i).sum()) * voxel_ml for i, name in synth_ct.LABELS.items()},
        "centroid_column_fraction": {
            name: float(np.argwhere(pred == i)[:, 2].mean() / image.shape[2]) if (pred == i).any() else None
            for i, name in synth_ct.LABELS.items()
        },
    }
    if png is not None:
        _overlay_png(image, pred, spacing, png)
    return report


def _overlay_png(image: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colours = ListedColormap([(0, 0, 0, 0)] + [(*(c / 255 for c in o[3]), 0.45) for o in ORGANS])
    organ_slices = np.flatnonzero(pred.any(axis=(1, 2)))
    zs = np.linspace(organ_slices.min(), organ_slices.max(), 5)[1:4].astype(int) if organ_slices.size else [0]
    row = int(np.argwhere(pred == 3)[:, 1].mean()) if (pred == 3).any() else image.shape[1] // 2
    fig, axes = plt.subplots(1, len(zs) + 1, figsize=(3.0 * (len(zs) + 1), 3.0), dpi=72)
    shown = np.clip((image + 160.0) / 400.0, 0, 1)
    for ax, z in zip(axes, zs, strict=False):
        ax.imshow(shown[z], cmap="gray")
        ax.imshow(pred[z], cmap=colours, vmin=0, vmax=len(ORGANS), interpolation="nearest")
        ax.set_title(f"axial {z + 1}/{image.shape[0]}", fontsize=8)
    ax = axes[-1]
    ax.imshow(shown[::-1, row, :], cmap="gray", aspect=spacing[0] / spacing[2])
    ax.imshow(
        pred[::-1, row, :],
        cmap=colours,
        vmin=0,
        vmax=len(ORGANS),
        interpolation="nearest",
        aspect=spacing[0] / spacing[2],
    )
    ax.set_title(f"coronal row {row}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.text(
        0.01, 0.01, "image left = patient right; liver orange, spleen purple, R kidney red, L kidney green", fontsize=7
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
