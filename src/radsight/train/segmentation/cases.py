"""Labelled CT volumes: generated ones and NIfTI folders, on their source grid or the model grid.

Array layout everywhere: (z, y, x) as :mod:`radsight.ai.volume` loads an axial series.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radsight.ai import preprocess
from radsight.ai.package import InputSpec
from radsight.train import synth_ct
from radsight.train.segmentation.model import HU_HIGH, HU_LOW, MODEL_NAME, SPACING

# First seed of the held-out generated volumes :func:`radsight.train.segmentation.evaluate` uses.
EVAL_SEED = 1_000_000

# A prepared case on the model grid: name, generator parameters, input (float16) and labels (uint8).
Prepared = tuple[str, dict[str, Any], np.ndarray, np.ndarray]


@dataclass
class Case:
    """A labelled volume on its source grid."""

    name: str
    image: np.ndarray  # HU (z, y, x) float32
    labels: np.ndarray  # uint8 (z, y, x)
    spacing: tuple[float, float, float]
    params: dict[str, Any]


def parse_data(data: str) -> tuple[str, int, int] | Path:
    """``synthetic:N[@S]`` -> ("synthetic", N, S or -1); else the NIfTI folder."""
    if data.startswith("synthetic:"):
        spec = data.split(":", 1)[1]
        count, _, start = spec.partition("@")
        if not count.isdigit() or int(count) < 1 or (start and not start.isdigit()):
            raise ValueError(f"{data!r}: expected synthetic:N or synthetic:N@SEED with N >= 1")
        return "synthetic", int(count), int(start) if start else -1
    folder = Path(data)
    if not (folder / "imagesTr").is_dir() or not (folder / "labelsTr").is_dir():
        raise ValueError(f"{data!r}: not synthetic:N and not a folder with imagesTr/ and labelsTr/")
    return folder


def synthetic_case(seed: int) -> Case:
    s = synth_ct.generate(seed)
    return Case(f"synthetic-{seed}", s.image, s.labels, s.spacing, s.params.as_dict())


def load_nifti_zyx(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A NIfTI volume in the serving layout (z, rows, columns) and its (z, y, x) spacing in mm."""
    import nibabel as nib

    from radsight.datasets.ct import lps_geometry

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)  # type: ignore[attr-defined]
    lps, flipped = lps_geometry(img.affine, data.shape[:3])  # type: ignore[attr-defined]
    for axis, flip in enumerate(flipped):
        if flip:
            data = np.flip(data, axis=axis)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return np.ascontiguousarray(data.transpose(2, 1, 0)), (float(spacing[2]), float(spacing[1]), float(spacing[0]))


def nifti_cases(folder: Path) -> Iterator[Case]:
    for image_path in sorted((folder / "imagesTr").glob("*.nii.gz")):
        label_path = folder / "labelsTr" / image_path.name.replace("_0000.nii.gz", ".nii.gz")
        if not label_path.is_file():
            label_path = folder / "labelsTr" / image_path.name
        if not label_path.is_file():
            raise ValueError(f"{image_path.name}: no label map in labelsTr/")
        image, spacing = load_nifti_zyx(image_path)
        labels, _ = load_nifti_zyx(label_path)
        yield Case(image_path.name.removesuffix(".nii.gz"), image, np.rint(labels).astype(np.uint8), spacing, {})


def count_cases(source: tuple[str, int, int] | Path) -> int:
    """How many cases :func:`parse_data`'s ``source`` holds."""
    return source[1] if not isinstance(source, Path) else len(list((source / "imagesTr").glob("*.nii.gz")))


def to_model_grid(case: Case, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """The case resampled to the model grid with the serving path's own functions."""
    factors = preprocess.spacing_factors(case.spacing, spec.spacing)
    x = preprocess.intensity(preprocess.resample(case.image, factors, order=1), spec)
    y = preprocess.to_shape(case.labels, x.shape, order=0).astype(np.uint8)
    return x.astype(np.float16), y


def model_grid_cases(source: tuple[str, int, int] | Path, spec: InputSpec, cache_dir: Path) -> Iterator[Prepared]:
    """Training cases on the model grid; generated ones cached as .npz (a resumed run does not regenerate them)."""
    if isinstance(source, Path):
        for c in nifti_cases(source):
            yield (c.name, c.params, *to_model_grid(c, spec))
        return
    _, count, start = source
    first = max(start, 0)
    for s in range(first, first + count):
        cached = cache_dir / f"synthetic-{s}.npz"
        if cached.is_file():
            z = np.load(cached, allow_pickle=False)
            yield f"synthetic-{s}", json.loads(str(z["params"])), z["x"], z["y"]
            continue
        c = synthetic_case(s)
        x, y = to_model_grid(c, spec)
        partial = cached.with_suffix(".part.npz")  # renamed when complete: a killed run leaves no torn file
        np.savez(partial, x=x, y=y, params=json.dumps(c.params))
        partial.replace(cached)
        yield c.name, c.params, x, y


def work_dirs(out: Path) -> tuple[Path, Path]:
    """Checkpoints (per package folder) and the prepared-volume cache (per generator version).

    Under ``$XDG_CACHE_HOME/radsight`` (``~/.cache/radsight``), never in the package: a package
    holds no pickles. The cache key covers the generator's source and the model grid, so a
    changed generator never serves stale volumes.
    """
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radsight"
    run = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:8]
    sources = b"".join(f.read_bytes() for f in sorted(Path(synth_ct.__file__).parent.glob("*.py")))
    generator = hashlib.sha256(sources + repr((SPACING, HU_LOW, HU_HIGH)).encode())
    ckpt_dir = root / "checkpoints" / f"{MODEL_NAME}-{run}"
    cache_dir = root / "cache" / f"synth-ct-{generator.hexdigest()[:8]}"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return ckpt_dir, cache_dir
