"""The segmentation model's card: held-out metrics, subgroups, plots and how to reproduce it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from radsight.ai.package import CARD_FILE
from radsight.train.card import write_model_card
from radsight.train.segmentation.model import (
    CHANNELS,
    HU_HIGH,
    HU_LOW,
    PATCH,
    SPACING,
    STRIDES,
)


def write_card(
    package_dir: Path,
    work_dir: Path,
    *,
    name: str,
    version: str,
    data: str,
    epochs: int,
    seed: int,
    state: dict[str, Any],
    metrics: dict[str, Any],
    train_cases: int,
    val_cases: int,
    wall_s: float,
) -> None:
    """The model card (radsight.train.card) with held-out metrics, subgroups and plots (from ``work_dir/eval``)."""
    plots = []
    if (work_dir / "eval" / "metrics.png").is_file():
        shutil.copy(work_dir / "eval" / "metrics.png", package_dir / "metrics.png")
        plots.append("metrics.png")
    card = {
        "name": name,
        "version": version,
        "task": "segmentation (3D CT: liver, spleen, right kidney, left kidney)",
        "summary": (
            "A 3D MONAI U-Net trained only on procedurally generated abdominal CT "
            "(radsight.train.synth_ct). Metrics below are on held-out generated volumes; on real CT it "
            "has been checked on one example only (docs/models/ct-abdomen-organs.md)."
        ),
        "intended_use": "Demonstration of organ outlines and volumes on adult abdominal CT. Not for clinical use.",
        "data": {
            "training": data,
            "train volumes": train_cases,
            "validation volumes (early stopping)": val_cases,
            "generator": "radsight.train.synth_ct (phases non-contrast / arterial / portal venous, 1-5 mm slices)",
            "test": metrics.get("split", ""),
        },
        "training": _training(state, seed=seed, wall_s=wall_s),
        "metrics": {
            k: {"value": v["value"], "ci95": v["ci95"], "split": v["split"]} for k, v in metrics["metrics"].items()
        },
        "calibration": "Not assessed (softmax outputs; only the argmax label map is used).",
        "subgroups": metrics.get("subgroups"),
        "limitations": [
            "Trained on generated volumes only: real anatomy, pathology (tumours, cysts, cirrhosis), "
            "post-operative changes and artefacts are not represented.",
            "Checked on a single real CT (non-contrast, TotalSegmentator example); transfer to real CT "
            "is not validated.",
            "Organs cut by the scan range are segmented only where imaged; volumes are then partial.",
            "Model grid 3 mm: thin structures and small organs lose detail.",
        ],
        "plots": plots,
        "reproduce": (
            f"RADSIGHT_TRAIN_THREADS=1 radsight train segmentation {data} --out {package_dir.name} --name {name} "
            f"--version {version} --epochs {epochs} --seed {seed}\n"
            f"radsight evaluate {package_dir.name} synthetic:20 --by phase --out evaluation"
        ),
    }
    write_model_card(package_dir, card)
    assert (package_dir / CARD_FILE).is_file()


def _training(state: dict[str, Any], *, seed: int, wall_s: float) -> dict[str, Any]:
    """The card's training section: network, loss, grid and how the run went."""
    return {
        "network": f"monai UNet channels {list(CHANNELS)} strides {list(STRIDES)} 1 residual unit",
        "loss": "DiceCE (softmax, one-hot)",
        "optimiser": "AdamW lr 2e-3, poly decay",
        "spacing mm (z, y, x)": list(SPACING),
        "patch (z, y, x)": list(PATCH),
        "intensity": f"HU clipped to [{HU_LOW:g}, {HU_HIGH:g}], scaled to [0, 1]",
        "epochs run": state.get("epoch"),
        "steps": state.get("step"),
        "best epoch": state.get("best_epoch"),
        "best validation mean Dice": state.get("best_dice"),
        "seed": seed,
        "wall clock s": round(wall_s),
    }
