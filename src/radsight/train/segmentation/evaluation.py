"""Evaluation of a segmentation package through the serving path: Dice and HD95 per organ.

A package runs exactly as the engine runs it (``radsight.ai.preprocess`` +
``radsight.ai.inference.sliding_window`` on ONNX Runtime, as ``ai/pipeline.py`` does), so the
metrics are those of the shipped weights on the serving path. Dice and HD95 (mm) are MONAI's,
on the source grid; CIs are percentile bootstraps over cases.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radsight.ai.package import ModelPackage, load_package
from radsight.train import metrics, synth_ct
from radsight.train.segmentation.cases import EVAL_SEED, Case, nifti_cases, parse_data, synthetic_case

# A subgroup more than this much below the overall Dice is flagged.
FLAG_MARGIN = 0.05


def segment(package: ModelPackage, image: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Label map on the source grid, by the engine's own steps (``radsight.ai.pipeline.predict_labelmap``)."""
    from radsight.ai.pipeline import predict_labelmap

    return predict_labelmap(package, image, spacing)[1]


def dice_per_label(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per organ (NaN where the organ is absent from both)."""
    return {name: metrics.dice(pred == index, truth == index) for index, name in synth_ct.LABELS.items()}


def hd95_per_label(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """HD95 per organ in mm (NaN where the organ is absent from either)."""
    return {name: metrics.hd95(pred == index, truth == index, spacing) for index, name in synth_ct.LABELS.items()}


def evaluate(package_dir: Path, data: str, out_dir: Path, *, by: str | None = None) -> dict[str, Any]:
    """Dice and HD95 per organ (bootstrap 95% CIs over cases) through the serving path.

    Writes ``metrics.json`` and ``metrics.png`` into ``out_dir``; returns the metrics dict
    (``metrics``, ``cases``, ``subgroups`` when ``by`` is given: ``phase``, ``slice_thickness``,
    ``habitus`` or any generator parameter; a group more than 0.05 Dice below overall is flagged).
    """
    package = load_package(Path(package_dir))
    case_iter, split = _cases(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [_case_row(package, case, by) for case in case_iter]
    summary = _summary(rows, split)
    result: dict[str, Any] = {
        "n": len(rows),
        "model": f"{package.metadata.name} {package.metadata.version}",
        "data": data,
        "split": split,
        "metrics": summary,
        "cases": rows,
        "seconds_per_case": float(np.mean([r["seconds"] for r in rows])) if rows else None,
    }
    if by:
        result["subgroups"] = {by: _subgroups(rows, split, summary)}
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    _plot_metrics(rows, out_dir / "metrics.png")
    return result


def _cases(data: str) -> tuple[Iterator[Case], str]:
    """The cases ``data`` names and a description of the split; generated ones default to held-out seeds."""
    source = parse_data(data)
    if isinstance(source, Path):
        return nifti_cases(source), f"folder {source.name}"
    _, count, start = source
    first = EVAL_SEED if start < 0 else start
    return (synthetic_case(s) for s in range(first, first + count)), (
        f"synthetic seeds {first}-{first + count - 1} (held out)"
    )


def _case_row(package: ModelPackage, case: Case, by: str | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    pred = segment(package, case.image, case.spacing)
    seconds = time.perf_counter() - t0
    return {
        "case": case.name,
        "seconds": seconds,
        "dice": dice_per_label(pred, case.labels),
        "hd95_mm": hd95_per_label(pred, case.labels, case.spacing),
        "params": {k: v for k, v in case.params.items() if k in ("phase", "slice_thickness", "fat_mm", "seed")},
        "group": _group(case.params, by) if by else None,
    }


def _group(params: dict[str, Any], by: str) -> str:
    if by in ("slice_thickness", "thickness"):
        t = float(params.get("slice_thickness", 0))
        return "<2 mm" if t < 2 else ("2-3.5 mm" if t < 3.5 else ">=3.5 mm")
    if by == "habitus":
        f = float(params.get("fat_mm", 0))
        return "lean (fat <15 mm)" if f < 15 else ("average (15-30 mm)" if f < 30 else "obese (fat >=30 mm)")
    return str(params.get(by, "unknown"))


def _summary(rows: list[dict[str, Any]], split: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in synth_ct.LABELS.values():
        for metric in ("dice", "hd95_mm"):
            vals = [r[metric][name] for r in rows]
            finite = [v for v in vals if not math.isnan(v)]
            lo, hi = metrics.mean_ci(vals)
            out[f"{metric} {name}"] = {
                "value": float(np.mean(finite)) if finite else float("nan"),
                "ci95": [lo, hi],
                "split": split,
                "n": len(finite),
            }
    return out


def _subgroups(rows: list[dict[str, Any]], split: str, overall: dict[str, Any]) -> dict[str, Any]:
    """Dice per organ in each group, with the organs more than :data:`FLAG_MARGIN` below overall flagged."""
    groups: dict[str, Any] = {}
    for g in sorted({r["group"] for r in rows}):
        members = [r for r in rows if r["group"] == g]
        summary = _summary(members, split)
        entry: dict[str, Any] = {"n": len(members), "flagged": []}
        for name in synth_ct.LABELS.values():
            key = f"dice {name}"
            entry[key] = summary[key]
            if summary[key]["value"] < overall[key]["value"] - FLAG_MARGIN:
                entry["flagged"].append(key)
        groups[g] = entry
    return groups


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _plot_metrics(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(synth_ct.LABELS.values())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    for ax, metric, title in ((axes[0], "dice", "Dice"), (axes[1], "hd95_mm", "HD95 (mm)")):
        data = [[r[metric][n] for r in rows if not math.isnan(r[metric][n])] for n in names]
        ax.boxplot(data, tick_labels=names)
        ax.set_title(f"{title}, {len(rows)} cases")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
