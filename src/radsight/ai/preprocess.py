"""Pre-processing from the model's metadata: resampling, windowing, normalisation.

numpy/scipy versions of MONAI's Spacing / ScaleIntensityRange / NormalizeIntensity (MONAI
needs torch, which serving does not install). Every geometric step has its inverse here so
that predictions map back exactly onto the source grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from radsight.ai.package import InputSpec


def window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Clip to the window [center - width/2, center + width/2] (values stay in their units)."""
    return np.clip(values, center - width / 2.0, center + width / 2.0)


def normalise(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    n = spec.normalisation
    if n.mode == "none":
        return values
    if n.mode == "zscore":
        mean = float(values.mean()) if n.mean is None else n.mean
        std = float(values.std()) if n.std is None else n.std
        return (values - np.float32(mean)) / np.float32(std if std > 0 else 1.0)
    if n.mode == "minmax":
        lo, hi = float(values.min()), float(values.max())
        out_lo = 0.0 if n.low is None else n.low
        out_hi = 1.0 if n.high is None else n.high
        scale = (out_hi - out_lo) / (hi - lo) if hi > lo else 0.0
        return (values - np.float32(lo)) * np.float32(scale) + np.float32(out_lo)
    # "fixed": clip to [low, high] then scale to [0, 1]
    lo = 0.0 if n.low is None else n.low
    hi = 1.0 if n.high is None else n.high
    return (np.clip(values, lo, hi) - np.float32(lo)) / np.float32(hi - lo if hi > lo else 1.0)


def intensity(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Windowing then normalisation, as float32."""
    out = values.astype(np.float32, copy=False)
    if spec.windowing is not None:
        out = window(out, spec.windowing.center, spec.windowing.width)
    return normalise(out, spec).astype(np.float32, copy=False)


def resample(values: np.ndarray, factors: Sequence[float], *, order: int) -> np.ndarray:
    """scipy zoom by ``factors`` (order 1 for images, 0 for label maps)."""
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return values
    return np.asarray(ndimage.zoom(values, tuple(factors), order=order, mode="nearest", grid_mode=False))


def to_shape(values: np.ndarray, shape: Sequence[int], *, order: int) -> np.ndarray:
    """Resample ``values`` onto exactly ``shape`` (the inverse of a zoom, rounding-proof).

    Used to map predictions back to the source grid: the output has the source's rows,
    columns and slices whatever rounding the forward zoom did.
    """
    if tuple(values.shape) == tuple(shape):
        return values
    factors = [t / s for t, s in zip(shape, values.shape, strict=True)]
    out = np.asarray(ndimage.zoom(values, factors, order=order, mode="nearest", grid_mode=False))
    if out.shape != tuple(shape):  # zoom rounds the output size; pad or crop the last voxel
        pads = [(0, max(t - o, 0)) for t, o in zip(shape, out.shape, strict=True)]
        out = np.pad(out, pads, mode="edge")[tuple(slice(0, t) for t in shape)]
    return out


def spacing_factors(source: Sequence[float], target: Sequence[float] | None) -> list[float]:
    """Zoom factors from the source spacing to the model's spacing (1 where the target is None)."""
    if target is None:
        return [1.0] * len(source)
    return [s / t for s, t in zip(source, target, strict=True)]
