"""Labelled images for training and evaluation: discovery, grey values, patient-level splits.

Three layouts, one list of :class:`Sample`:

- class folders: ``DATA/<CLASS>/*.jpeg|jpg|png|dcm`` (Kermany's layout);
- a CSV: ``path,label[,patient_id,...]`` (paths relative to the CSV; extra columns are
  attributes for ``radsight evaluate --by``);
- a DICOM folder without class folders: the label is the private element that
  :mod:`radsight.datasets.cxr` writes (never a patient-visible attribute).

Grey values come from the same code serving uses: DICOM through
:mod:`radsight.imaging.decode` and :func:`radsight.ai.volume._grey` (Modality LUT,
MONOCHROME1 inverted), JPEG/PNG as PIL's "L" conversion (what :func:`radsight.datasets.cxr.cxr_to_dicom`
stores), and the network input through :mod:`radsight.ai.preprocess` with the package's
:class:`~radsight.ai.package.InputSpec`. Training, evaluation and serving therefore see the
same tensor for the same image. No torch here: evaluation runs without it.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from radsight.ai import preprocess
from radsight.ai.package import InputSpec
from radsight.ai.volume import _grey, _header_fixups  # the serving path's grey values, on purpose
from radsight.imaging.decode import decode_frames

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm", ".dicom"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
# Attributes read from DICOM headers for subgroup analysis.
DICOM_ATTRIBUTES = ("PatientSex", "PatientAge", "Manufacturer", "Modality", "BodyPartExamined")
DEMO_PRIVATE_CREATOR = "RADSIGHT DEMO"
DEMO_PRIVATE_GROUP = 0x0011
# Kermany file names: person1_bacteria_1.jpeg (patient 1), IM-0115-0001.jpeg and
# NORMAL2-IM-0383-0001.jpeg (patient "IM-0115" / "NORMAL2-IM-0383", image 0001).
_KERMANY_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_KERMANY_IM = re.compile(r"^((?:[A-Z0-9]+-)?IM-\d+)-\d+", re.IGNORECASE)


class DataError(Exception):
    """The data set cannot be read as labelled images; the message says why."""


@dataclass
class Sample:
    path: Path
    label: str
    # Images of one patient stay on one side of every split.
    group: str
    attributes: dict[str, str] = field(default_factory=dict)


def kermany_group(path: Path) -> str:
    """The patient part of a Kermany file name, else the file stem (one image = one group)."""
    name = path.name
    for pattern in (_KERMANY_PERSON, _KERMANY_IM):
        m = pattern.match(name)
        if m:
            return m.group(1).upper() if pattern is _KERMANY_IM else m.group(1).lower()
    return path.stem


def _dicom_sample(path: Path, label: str | None) -> Sample:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if label is None:
        try:
            block = ds.private_block(DEMO_PRIVATE_GROUP, DEMO_PRIVATE_CREATOR)
            label = str(block[0x01].value)
        except KeyError as exc:
            raise DataError(f"{path.name}: no label (put DICOM files in class folders or list them in a CSV)") from exc
    attributes = {a: str(ds.get(a, "") or "") for a in DICOM_ATTRIBUTES}
    group = str(ds.get("PatientID", "") or "") or kermany_group(path)
    return Sample(path=path, label=label, group=group, attributes=attributes)


def _from_csv(csv_path: Path) -> list[Sample]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"{csv_path.name}: needs the columns path,label[,patient_id,...]")
        samples = []
        for row in reader:
            path = (csv_path.parent / row["path"]).resolve()
            attributes = {k: v for k, v in row.items() if k not in {"path", "label"} and v is not None}
            group = row.get("patient_id") or kermany_group(path)
            samples.append(Sample(path=path, label=row["label"].strip(), group=group, attributes=attributes))
    return samples


def discover(data: Path | str, *, read_dicom_attributes: bool = True) -> list[Sample]:
    """Every labelled image under ``data`` (class folders, a CSV, or a labelled DICOM folder), sorted."""
    root = Path(data)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: give a folder or a CSV file")
        samples = _from_csv(root)
    elif root.is_dir():
        classes = sorted(
            p for p in root.iterdir() if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())
        )
        samples = []
        if classes:
            for folder in classes:
                for f in sorted(folder.iterdir()):
                    suffix = f.suffix.lower()
                    if suffix not in IMAGE_SUFFIXES:
                        continue
                    if suffix in DICOM_SUFFIXES and read_dicom_attributes:
                        samples.append(_dicom_sample(f, folder.name))
                    else:
                        samples.append(Sample(path=f, label=folder.name, group=kermany_group(f)))
        else:
            files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in DICOM_SUFFIXES)
            samples = [_dicom_sample(f, None) for f in files]
    else:
        raise DataError(f"{root}: no such file or folder")
    if not samples:
        raise DataError(f"{root}: no labelled images found")
    return sorted(samples, key=lambda s: str(s.path))


def binary_targets(samples: Sequence[Sample], positive: str) -> np.ndarray:
    """1 for the positive class, 0 for every other; refuses a set without the positive class name."""
    labels = {s.label for s in samples}
    if positive not in labels:
        raise DataError(f"no image is labelled {positive!r} (labels found: {sorted(labels)})")
    return np.array([1 if s.label == positive else 0 for s in samples], dtype=np.int64)


def read_grey(path: Path) -> np.ndarray:
    """The image's grey values as float32, exactly as serving sees the same pixels stored as DICOM."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        header = _header_fixups(pydicom.dcmread(path, stop_before_pixels=True))
        return _grey(decode_frames(path, header, [0])[0], header)
    with Image.open(path) as img:
        if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
            return np.asarray(img, dtype=np.float32)
        # PIL's "L" conversion is what cxr_to_dicom stores: the DICOM copy gives the same values.
        return np.asarray(img.convert("L"), dtype=np.float32)


def network_input(grey: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(H, W) grey values -> (S, S) float32 network input, with serving's own functions."""
    return preprocess.intensity(preprocess.to_shape(grey, spec.size, order=1), spec)


def load_inputs(
    samples: Sequence[Sample],
    spec: InputSpec,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, S, S) float32 network inputs, decoded once and cached as .npy under ``cache_dir``.

    The cache key covers the files (path, size, mtime) and the input spec, so a changed image
    or spec decodes again.
    """
    key = hashlib.sha256(spec.model_dump_json().encode())
    for s in samples:
        st = s.path.stat()
        key.update(f"{s.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache = cache_dir / f"inputs-{key.hexdigest()[:20]}.npy" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        return np.load(cache)
    out = np.empty((len(samples), *spec.size), dtype=np.float32)
    for i, s in enumerate(samples):
        out[i] = network_input(read_grey(s.path), spec)
        if progress is not None:
            progress(i + 1)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache)
    return out


def split_by_group(
    samples: Sequence[Sample], targets: np.ndarray, *, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split by patient group: (train indices, validation indices).

    Each group goes wholly to one side. Groups are taken per class (a group's class is its
    most frequent label) in a seeded shuffle until the class's validation share reaches
    ``val_fraction`` of its images, so both sides keep the class balance.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        members[s.group].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for group, idx in sorted(members.items()):
        by_class[int(np.bincount(targets[idx]).argmax())].append(group)
    rng = random.Random(seed)
    val: list[int] = []
    for cls in sorted(by_class):
        groups = by_class[cls]
        rng.shuffle(groups)
        wanted = val_fraction * sum(len(members[g]) for g in groups)
        taken = 0
        for g in groups:
            if taken >= wanted:
                break
            val += members[g]
            taken += len(members[g])
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(samples)), val_idx)
    return train_idx, val_idx
