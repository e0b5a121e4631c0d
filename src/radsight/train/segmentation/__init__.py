"""3D CT organ segmentation: train a MONAI U-Net, export a RadSight model package, evaluate it.

``train`` and ``evaluate`` import torch / MONAI / matplotlib inside themselves (serving never
installs them). Evaluation runs the package exactly as the engine does (``radsight.ai.preprocess``
+ ``radsight.ai.inference.sliding_window`` on ONNX Runtime, as ``ai/pipeline.py`` ``_segment``),
so the metrics are those of the shipped weights on the serving path.

Data (``data`` argument):

- ``synthetic:N`` - N volumes from :mod:`radsight.train.synth_ct`. Training uses seeds 0..N-1;
  the last ``max(1, N // 8)`` are the validation split (early stopping). ``synthetic:N@S``
  starts at seed S; :func:`evaluate` defaults to seeds from :data:`EVAL_SEED` (never trained on).
- a folder in the nnU-Net / MSD layout: ``imagesTr/*.nii.gz`` and ``labelsTr/*.nii.gz`` (same
  file names; labels 0 background, 1 liver, 2 spleen, 3 right kidney, 4 left kidney). Volumes
  are turned to the serving layout (z inferior->superior, rows anterior->posterior, columns
  patient right->left) with the same geometry as :mod:`radsight.datasets.ct`.

Array layout everywhere: (z, y, x) as :mod:`radsight.ai.volume` loads an axial series.

Modules: :mod:`.model` (name, grid, input contract, organs, network), :mod:`.cases` (labelled
volumes and the model-grid cache), :mod:`.loop` (training), :mod:`.export` (ONNX and metadata),
:mod:`.evaluation` (Dice / HD95 through the serving path), :mod:`.card` (the model card),
:mod:`.real_ct` (the check on an unlabelled real CT).
"""

from __future__ import annotations

from radsight.train.segmentation.card import write_card
from radsight.train.segmentation.cases import (
    EVAL_SEED,
    Case,
    load_nifti_zyx,
    nifti_cases,
    parse_data,
    synthetic_case,
    to_model_grid,
    work_dirs,
)
from radsight.train.segmentation.evaluation import dice_per_label, evaluate, hd95_per_label, segment
from radsight.train.segmentation.export import export_package
from radsight.train.segmentation.loop import train
from radsight.train.segmentation.model import (
    BODY_PARTS,
    MODEL_NAME,
    MODEL_VERSION,
    N_CLASSES,
    ORGANS,
    PATCH,
    SPACING,
    model_spec,
    network,
)
from radsight.train.segmentation.real_ct import check_on_nifti

__all__ = [
    "BODY_PARTS",
    "EVAL_SEED",
    "MODEL_NAME",
    "MODEL_VERSION",
    "N_CLASSES",
    "ORGANS",
    "PATCH",
    "SPACING",
    "Case",
    "check_on_nifti",
    "dice_per_label",
    "evaluate",
    "export_package",
    "hd95_per_label",
    "load_nifti_zyx",
    "model_spec",
    "network",
    "nifti_cases",
    "parse_data",
    "segment",
    "synthetic_case",
    "to_model_grid",
    "train",
    "work_dirs",
    "write_card",
]
