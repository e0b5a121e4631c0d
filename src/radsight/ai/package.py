"""Model packages: a folder (or .zip) of data, never code.

Layout::

    my-model/
      radsight-model.json   # this schema (ModelMetadata)
      model.onnx            # weights, served by ONNX Runtime
      model-card.md         # optional, shown in the viewer and REST API

The metadata file is named after the product (like MONAI's ``metadata.json`` in a bundle,
but a bundle may carry code; ours may not). Everything the engine needs to pre-process,
run, post-process and code the results as DICOM is declared here and validated at load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from radsight.safe_zip import ZipLimitError, ZipLimits

METADATA_FILE = "radsight-model.json"
WEIGHTS_FILE = "model.onnx"
CARD_FILE = "model-card.md"


class ModelPackageError(Exception):
    """A model package that cannot be used, with the reason."""


class Task(StrEnum):
    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"
    DETECTION = "detection"


class Code(BaseModel):
    """A coded concept (SNOMED CT ``SCT``, DICOM ``DCM``...), as highdicom's ``CodedConcept`` needs."""

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(min_length=1, max_length=16, description="Coding scheme designator, e.g. SCT, DCM")
    meaning: str = Field(min_length=1, max_length=64)


class Windowing(BaseModel):
    center: float
    width: float = Field(gt=0)


class Normalisation(BaseModel):
    """Intensity normalisation after windowing: ``(x - mean) / std``, or scale to [min, max]."""

    mode: Literal["none", "zscore", "minmax", "fixed"] = "none"
    mean: float | None = None
    std: float | None = Field(default=None, gt=0)
    # for "minmax": output range; for "fixed": input range clipped then scaled to [0, 1]
    low: float | None = None
    high: float | None = None


class InputSpec(BaseModel):
    modality: list[str] = Field(min_length=1, description="Modalities accepted, e.g. ['CT'] or ['CR', 'DX']")
    body_part: list[str] = Field(default_factory=list, description="BodyPartExamined values; empty = any")
    dimensions: Literal[2, 3]
    # (z, y, x) mm for 3D, (y, x) for 2D; None = keep the source spacing
    spacing: list[float] | None = None
    # Network input size: (y, x) for 2D (resized), (z, y, x) patch for 3D (sliding window)
    size: list[int]
    channels: int = Field(default=1, ge=1, le=4)
    channel_order: Literal["grey", "RGB", "BGR"] = "grey"
    # Applied in this order: Modality LUT (HU for CT), windowing, normalisation.
    windowing: Windowing | None = None
    normalisation: Normalisation = Normalisation()
    input_name: str = "input"
    sliding_window_overlap: float = Field(default=0.25, ge=0, lt=1)

    @model_validator(mode="after")
    def _sizes(self) -> InputSpec:
        if len(self.size) != self.dimensions:
            raise ValueError(f"size must have {self.dimensions} values for {self.dimensions}D input")
        if self.spacing is not None and len(self.spacing) != self.dimensions:
            raise ValueError(f"spacing must have {self.dimensions} values for {self.dimensions}D input")
        if any(v <= 0 for v in self.size):
            raise ValueError("size values must be positive")
        return self


class Label(BaseModel):
    """One output class / segment, with the codes DICOM SEG and SR need."""

    index: int = Field(
        ge=0, description="Output channel (classification), label value (segmentation) or box label (detection)"
    )
    name: str = Field(min_length=1, max_length=64)
    category: Code  # SEG Segmented Property Category, e.g. SCT 49755003 "Morphologically abnormal structure"
    type: Code  # SEG Segmented Property Type / SR finding, e.g. SCT 233604007 "Pneumonia"
    threshold: float | None = Field(default=None, ge=0, le=1, description="Probability at or above = positive")
    # Urgency levels for the worklist (issue: AI-prioritised worklist): probability thresholds.
    urgency: dict[Literal["critical", "urgent", "routine"], float] = Field(default_factory=dict)
    color: list[int] | None = Field(default=None, description="Display colour RGB 0-255")
    # An organ is one connected structure: stray voxels elsewhere are removed before the SEG,
    # volumes and SR are made (what MONAI's KeepLargestConnectedComponent does in training code).
    largest_component_only: bool = False

    @field_validator("color")
    @classmethod
    def _rgb(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(not 0 <= c <= 255 for c in v)):
            raise ValueError("color must be three integers 0-255")
        return v


class Output(BaseModel):
    """A named ONNX output and what it means.

    Detection models (task ``detection``, see docs/ai-detection.md) declare ``boxes`` (float
    [N, 4]: x0, y0, x1, y1, or [N, 6]: x0, y0, z0, x1, y1, z1, in the model's input grid, pixel
    indices of the first and last pixel inside the box), ``scores`` ([N], 0-1 after the output's
    activation) and, when the package has more than one label, ``labels`` ([N] integers: a
    label's ``index``).
    """

    name: str
    kind: Literal["probabilities", "logits", "labelmap", "heatmap", "boxes", "scores", "labels"]
    activation: Literal["none", "sigmoid", "softmax"] = "none"


DETECTION_KINDS = ("boxes", "scores", "labels")


# A model's name and version become one folder name under the models folder
# (``<name>-<version>-<sha8>``) and a URL path segment: safe identifiers, no '/' and no '..'.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MODEL_VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,15}$"  # 16: the index's version columns


class ModelMetadata(BaseModel):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str = Field(pattern=MODEL_VERSION_PATTERN)
    task: Task
    description: str = ""
    intended_use: str = Field(min_length=1)
    input: InputSpec
    outputs: list[Output] = Field(min_length=1)
    labels: list[Label] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of model.onnx")
    manufacturer: str = "RadSight"
    not_for_clinical_use: bool = True

    @field_validator("name", "version")
    @classmethod
    def _no_parent_reference(cls, v: str) -> str:
        if ".." in v:
            raise ValueError(f"{v!r} contains '..': names and versions become folder names")
        return v

    @model_validator(mode="after")
    def _labels_unique(self) -> ModelMetadata:
        idx = [lab.index for lab in self.labels]
        if len(set(idx)) != len(idx):
            raise ValueError("label indices must be unique")
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        return self

    @model_validator(mode="after")
    def _detection_outputs(self) -> ModelMetadata:
        """The outputs a detection package must declare (and that only detection packages may)."""
        kinds = [o.kind for o in self.outputs]
        if self.task is not Task.DETECTION:
            misplaced = sorted({k for k in kinds if k in DETECTION_KINDS})
            if misplaced:
                raise ValueError(f"outputs of kind {misplaced} are only for task 'detection', not {self.task.value!r}")
            return self
        for kind in ("boxes", "scores"):
            if kinds.count(kind) != 1:
                raise ValueError(f"a detection package declares exactly one output of kind {kind!r}")
        if kinds.count("labels") > 1:
            raise ValueError("a detection package declares at most one output of kind 'labels'")
        if "labels" not in kinds and len(self.labels) > 1:
            raise ValueError(
                f"a detection package with {len(self.labels)} labels needs an output of kind 'labels'"
                " (which label each box is)"
            )
        others = sorted({k for k in kinds if k not in DETECTION_KINDS})
        if others:
            raise ValueError(f"a detection package's outputs are boxes, scores and labels; not {others}")
        if any(o.activation == "softmax" for o in self.outputs if o.kind == "scores"):
            raise ValueError("scores take activation 'none' or 'sigmoid' (one score per box, not a softmax)")
        if self.input.spacing is not None:
            # The image is resized to input.size as a whole (one run, boxes in that grid): a
            # spacing would be a second, contradictory geometry.
            raise ValueError("a detection package resizes the image to input.size; input.spacing must be null")
        return self


class ModelPackage(BaseModel):
    """A validated package on disk."""

    path: Path
    metadata: ModelMetadata

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def card(self) -> str | None:
        p = self.path / CARD_FILE
        return p.read_text(encoding="utf-8") if p.is_file() else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def load_package(path: Path, *, check_onnx: bool = True) -> ModelPackage:
    """Validate the package folder at ``path``; raise ModelPackageError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise ModelPackageError(f"{path}: not a folder (unpack a .zip with unpack_package first)")
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        raise ModelPackageError(f"{path}: {METADATA_FILE} is missing")
    if not (path / WEIGHTS_FILE).is_file():
        raise ModelPackageError(f"{path}: {WEIGHTS_FILE} is missing")
    code = [p.name for p in path.rglob("*") if p.suffix in {".py", ".pyc", ".so", ".sh", ".pkl", ".pt", ".pth"}]
    if code:
        raise ModelPackageError(f"{path}: a model package holds data, never code; found {', '.join(sorted(code))}")
    try:
        raw = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{meta_file.name}: not valid JSON: {exc}") from exc
    try:
        meta = ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ModelPackageError(f"{meta_file.name}: {problems}") from exc
    actual = sha256_file(path / WEIGHTS_FILE)
    if actual != meta.sha256:
        raise ModelPackageError(
            f"{WEIGHTS_FILE}: SHA-256 {actual} does not match the metadata's {meta.sha256}"
            " (corrupt or replaced weights)"
        )
    pkg = ModelPackage(path=path, metadata=meta)
    if check_onnx:
        _check_onnx_io(pkg)
    return pkg


def _check_onnx_io(pkg: ModelPackage) -> None:
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(pkg.weights), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for bad graphs
        raise ModelPackageError(f"{WEIGHTS_FILE}: ONNX Runtime cannot load it: {exc}") from exc
    inputs = {i.name for i in sess.get_inputs()}
    shapes = {o.name: o.shape for o in sess.get_outputs()}
    meta = pkg.metadata
    if meta.input.input_name not in inputs:
        raise ModelPackageError(f"input {meta.input.input_name!r} is not an input of the graph ({sorted(inputs)})")
    missing = [o.name for o in meta.outputs if o.name not in shapes]
    if missing:
        raise ModelPackageError(f"outputs {missing} are not outputs of the graph ({sorted(shapes)})")
    for out in meta.outputs:
        # A box has 2 corners x dimensions values; checked here when the graph states it (else at run time).
        last = shapes[out.name][-1] if shapes[out.name] else None
        if out.kind == "boxes" and isinstance(last, int) and last != 2 * meta.input.dimensions:
            raise ModelPackageError(
                f"output {out.name!r} has {last} values per box; a {meta.input.dimensions}D detection model"
                f" gives {2 * meta.input.dimensions}"
            )


def unpack_package(archive: Path, limits: ZipLimits) -> Path:
    """Unpack a .zip package to a temporary folder (caller moves or removes it); sizes and
    compression ratios are checked against ``limits`` before anything is extracted."""
    dest = Path(tempfile.mkdtemp(prefix="radsight-model-"))
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            limits.check_archive(zf)
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(root):
                    raise ModelPackageError(f"{archive.name}: entry {info.filename!r} escapes the package folder")
                limits.check_member(info)
            for info in zf.infolist():
                target = dest / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    limits.copy_member(src, info, target)
    except (zipfile.BadZipFile, ZipLimitError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        what = "not a valid ZIP file" if isinstance(exc, zipfile.BadZipFile) else "refused"
        raise ModelPackageError(f"{archive.name}: {what}: {exc}") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    entries = [p for p in dest.iterdir()]
    # A zip of the folder itself (one top-level directory) or of its contents.
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest
