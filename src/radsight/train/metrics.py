"""Metrics shared by the evaluations: the percentile bootstrap, and Dice and HD95 by MONAI.

Dice and HD95 import torch / MONAI inside themselves, as every training module does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import numpy as np


def bootstrap_ci(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    n: int,
    *,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap CI of each value of ``statistic`` over ``n`` items.

    ``statistic`` gets the item indices of one resample (``n`` drawn with replacement) and
    returns named values; a resample where a value is NaN (e.g. one class only) is skipped for
    that value, and a value NaN in every resample gets ``[nan, nan]``.
    """
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        for name, v in statistic(idx).items():
            kept = values.setdefault(name, [])
            if not math.isnan(v):
                kept.append(v)
    alpha = (1.0 - level) / 2.0
    return {
        name: [float(np.quantile(vs, alpha)), float(np.quantile(vs, 1 - alpha))] if vs else [math.nan, math.nan]
        for name, vs in values.items()
    }


def mean_ci(values: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean over cases (NaNs dropped first)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return (math.nan, math.nan)
    lo, hi = bootstrap_ci(lambda idx: {"mean": float(v[idx].mean())}, v.size, resamples=resamples, seed=seed)["mean"]
    return (lo, hi)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks by MONAI's ``compute_dice``; NaN when both are empty.

    The truth goes in as float64 one-hot, so MONAI sums and divides in double precision.
    """
    import torch
    from monai.metrics import compute_dice

    if not pred.any() and not truth.any():
        return math.nan
    y_pred = torch.from_numpy(np.stack([~pred, pred]))[None]
    y = torch.from_numpy(np.stack([~truth, truth]).astype(np.float64))[None]
    return float(compute_dice(y_pred, y, include_background=False, ignore_empty=False)[0, 0])


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Symmetric 95th percentile Hausdorff distance in mm by MONAI; NaN when either mask is empty.

    MONAI's definition: the larger of the two directed 95th percentiles of the surface
    distances (prediction to truth, truth to prediction).
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    if not pred.any() or not truth.any():
        return math.nan
    y_pred = torch.from_numpy(np.ascontiguousarray(pred))[None, None]
    y = torch.from_numpy(np.ascontiguousarray(truth))[None, None]
    with warnings.catch_warnings():
        # MONAI's own call of its deprecated get_mask_edges(always_return_as_numpy=...) warns.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        distance = compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=[float(s) for s in spacing]
        )
    return float(distance[0, 0])
