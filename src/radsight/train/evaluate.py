"""``radsight evaluate MODEL DATA``: a model package on a labelled set, through ONNX Runtime.

Classification: AUC, accuracy, sensitivity and specificity at the package's threshold, each
with a bootstrap 95% CI (percentile, fixed seed), ECE (15 equal-width bins on the positive
class probability) with a reliability diagram, and the ROC curve; ``--by`` repeats the
metrics per subgroup (a DICOM attribute, an age band from PatientAge, or a CSV column) and
flags groups more than ``--margin`` below the overall figure. Segmentation packages go to
:func:`radsight.train.segmentation.evaluate`. The bootstrap is :func:`radsight.train.metrics.bootstrap_ci`.

The images are pre-processed by :func:`radsight.train.data.network_input`, i.e. serving's own
functions, and the outputs read as :mod:`radsight.ai.pipeline` reads them.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radsight.ai.package import ModelPackage, Task, load_package
from radsight.train import data as datalib
from radsight.train.metrics import bootstrap_ci

METRICS = ("auc", "accuracy", "sensitivity", "specificity")
ECE_BINS = 15
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 2018
# PatientAge (AS: nnnD/W/M/Y) -> years -> band
AGE_BANDS = ((0, 1, "<1y"), (1, 5, "1-4y"), (5, 12, "5-11y"), (12, 18, "12-17y"), (18, 40, "18-39y"),
             (40, 65, "40-64y"), (65, 200, ">=65y"))
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64))))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN with one class only."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = np.asarray(score)[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y).astype(bool)
    pred = np.asarray(prob) >= threshold
    tp, tn = int((pred & y).sum()), int((~pred & ~y).sum())
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return {
        "auc": roc_auc(y, prob),
        "accuracy": (tp + tn) / len(y) if len(y) else float("nan"),
        "sensitivity": tp / n_pos if n_pos else float("nan"),
        "specificity": tn / n_neg if n_neg else float("nan"),
    }


def reliability(y: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per equal-width bin of the positive-class probability: count, mean probability, positive fraction."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1], right=False), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": n,
                     "mean_probability": float(prob[mask].mean()) if n else math.nan,
                     "positive_fraction": float(np.asarray(y)[mask].mean()) if n else math.nan})
    return rows


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (n_b / N) |positive fraction - mean probability| (bins [k/B, (k+1)/B))."""
    total = len(y)
    return float(sum(r["n"] / total * abs(r["positive_fraction"] - r["mean_probability"])
                     for r in reliability(y, prob, bins) if r["n"]))


def youden_threshold(y: np.ndarray, prob: np.ndarray) -> float:
    """The probability maximising sensitivity + specificity - 1 (midway to the next score, so it generalises)."""
    y = np.asarray(y).astype(bool)
    candidates = np.unique(prob)
    best, best_j = 0.5, -1.0
    for i, t in enumerate(candidates):
        m = binary_metrics(y, prob, float(t))
        j = m["sensitivity"] + m["specificity"] - 1
        if j > best_j:
            lower = candidates[i - 1] if i > 0 else 0.0
            best, best_j = float((t + lower) / 2.0), j
    return best


def age_band(age: str) -> str:
    """PatientAge (e.g. ``005Y``, ``018M``) -> an age band; '' when absent or malformed."""
    m = _AGE.match(age or "")
    if not m:
        return ""
    years = int(m.group(1)) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[m.group(2).upper()]
    return next(label for lo, hi, label in AGE_BANDS if lo <= years < hi) if years < 200 else ""


def subgroup_value(sample: datalib.Sample, attribute: str) -> str:
    if attribute.lower() in {"age", "ageband", "age_band", "patientage"}:
        raw = sample.attributes.get("PatientAge", sample.attributes.get(attribute, ""))
        return age_band(raw) or raw or "unknown"
    return sample.attributes.get(attribute, "") or "unknown"


def _run_onnx(package: ModelPackage, inputs: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """Positive-class probabilities (and heatmaps' shape check) as the pipeline reads the outputs."""
    import onnxruntime as ort

    meta = package.metadata
    out = next((o for o in meta.outputs if o.kind in {"probabilities", "logits"}), None)
    if out is None:
        raise ValueError(f"{meta.name}: no probabilities or logits output")
    sess = ort.InferenceSession(str(package.weights), providers=["CPUExecutionProvider"])
    batch_dim = next(i for i in sess.get_inputs() if i.name == meta.input.input_name).shape[0]
    if isinstance(batch_dim, int) and batch_dim > 0:  # a graph with a fixed batch size
        batch_size = batch_dim
    index = meta.labels[0].index
    probs = []
    for i in range(0, len(inputs), batch_size):
        batch = np.repeat(inputs[i : i + batch_size, None], meta.input.channels, axis=1).astype(np.float32)
        raw = np.asarray(sess.run([out.name], {meta.input.input_name: batch})[0], dtype=np.float64)
        raw = raw.reshape(len(batch), -1)
        if out.activation == "sigmoid":
            raw = sigmoid(raw)
        elif out.activation == "softmax":
            e = np.exp(raw - raw.max(axis=1, keepdims=True))
            raw = e / e.sum(axis=1, keepdims=True)
        probs.append(raw[:, index])
    return np.concatenate(probs), None


def _plots(y: np.ndarray, prob: np.ndarray, out_dir: Path, prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    # ROC
    order = np.argsort(-prob, kind="mergesort")
    ys = np.asarray(y)[order].astype(bool)
    tpr = np.concatenate([[0.0], np.cumsum(ys) / max(ys.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~ys) / max((~ys).sum(), 1)])
    fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=90)
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC {roc_auc(y, prob):.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}roc.png")
    plt.close(fig)
    names.append(f"{prefix}roc.png")
    # Reliability diagram
    rows = [r for r in reliability(y, prob) if r["n"]]
    fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=90)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.bar([(r["low"] + r["high"]) / 2 for r in rows], [r["positive_fraction"] for r in rows],
           width=1 / ECE_BINS, edgecolor="k", alpha=0.6)
    ax.plot([r["mean_probability"] for r in rows], [r["positive_fraction"] for r in rows], "o-", ms=3)
    ax.set(xlabel="predicted probability", ylabel="observed positive fraction",
           title=f"Reliability (ECE {expected_calibration_error(y, prob):.3f})", xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}reliability.png")
    plt.close(fig)
    names.append(f"{prefix}reliability.png")
    return names


def _subgroup_plot(attribute: str, groups: dict[str, Any], overall: dict[str, Any], out_dir: Path,
                   prefix: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(2.4 * len(METRICS), 2.8), dpi=90, sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        vals = [groups[g][metric]["value"] for g in names]
        lo = [v - groups[g][metric]["ci95"][0] for g, v in zip(names, vals, strict=True)]
        hi = [groups[g][metric]["ci95"][1] - v for g, v in zip(names, vals, strict=True)]
        colours = ["tab:red" if metric in groups[g]["flagged"] else "tab:blue" for g in names]
        ax.bar(range(len(names)), vals, yerr=[lo, hi], color=colours, capsize=3)
        ax.axhline(overall[metric]["value"], ls="--", c="k", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.set_ylim(0, 1.05)
    fig.suptitle(f"by {attribute} (red: below overall by more than the margin)", fontsize=9)
    fig.tight_layout()
    name = f"{prefix}subgroups-{re.sub(r'[^A-Za-z0-9_-]', '_', attribute)}.png"
    fig.savefig(out_dir / name)
    plt.close(fig)
    return name


def metrics_ci(
    y: np.ndarray, prob: np.ndarray, threshold: float, *, resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED, level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap CI of each metric, resampling images (NaN resamples, e.g. one class, skipped)."""
    return bootstrap_ci(lambda idx: binary_metrics(y[idx], prob[idx], threshold), len(y), resamples=resamples,
                        seed=seed, level=level)


def _with_ci(y: np.ndarray, prob: np.ndarray, threshold: float, *, resamples: int, seed: int) -> dict[str, Any]:
    point = binary_metrics(y, prob, threshold)
    ci = metrics_ci(y, prob, threshold, resamples=resamples, seed=seed)
    return {m: {"value": point[m], "ci95": ci[m]} for m in METRICS}


def subgroup_metrics(
    samples: Sequence[datalib.Sample], y: np.ndarray, prob: np.ndarray, threshold: float, attribute: str, *,
    overall: dict[str, Any], margin: float, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Per group of ``attribute``: n, each metric with its CI, and ``flagged`` (metrics below overall - margin)."""
    values = np.array([subgroup_value(s, attribute) for s in samples])
    groups: dict[str, Any] = {}
    for g in sorted(set(values.tolist())):
        mask = values == g
        result: dict[str, Any] = {"n": int(mask.sum()),
                                  **_with_ci(y[mask], prob[mask], threshold, resamples=resamples, seed=seed)}
        result["flagged"] = [m for m in METRICS if not math.isnan(result[m]["value"])
                             and result[m]["value"] < overall[m]["value"] - margin]
        groups[g] = result
    return groups


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def evaluate_package(
    package_dir: Path,
    samples: Sequence[datalib.Sample],
    *,
    out_dir: Path,
    inputs: np.ndarray | None = None,
    by: Sequence[str] = (),
    margin: float = 0.05,
    split: str = "evaluation",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    positive: str | None = None,
    plot_prefix: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Metrics, plots and metrics.json for a classification package on ``samples``."""
    package = load_package(Path(package_dir))
    meta = package.metadata
    label = meta.labels[0]
    positive = positive or _positive_label(samples, label.name)
    y = datalib.binary_targets(samples, positive)
    if inputs is None:
        inputs = datalib.load_inputs(samples, meta.input, progress=progress)
    prob, _ = _run_onnx(package, inputs)
    threshold = label.threshold if label.threshold is not None else 0.5
    overall = _with_ci(y, prob, threshold, resamples=resamples, seed=seed)
    ece = expected_calibration_error(y, prob)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(y, prob, out_dir, plot_prefix)
    subgroups: dict[str, Any] = {}
    for attribute in by:
        subgroups[attribute] = subgroup_metrics(samples, y, prob, threshold, attribute, overall=overall,
                                                margin=margin, resamples=resamples, seed=seed)
        plots.append(_subgroup_plot(attribute, subgroups[attribute], overall, out_dir, plot_prefix))
    metrics: dict[str, Any] = {**overall, "ece": {"value": ece, "bins": ECE_BINS}}
    report = {
        "model": {"name": meta.name, "version": meta.version, "sha256": meta.sha256},
        "split": split,
        "n": len(y),
        "positive_label": positive,
        "n_positive": int(y.sum()),
        "threshold": threshold,
        "bootstrap": {"resamples": resamples, "seed": seed, "method": "percentile, resampling images"},
        "metrics": metrics,
        "reliability": reliability(y, prob),
        "subgroups": subgroups,
        "margin": margin,
        "plots": plots,
        "metrics_card": {m: {"value": round(overall[m]["value"], 4),
                             "ci95": [round(v, 4) for v in overall[m]["ci95"]], "split": split}
                         for m in METRICS} | {"ece": {"value": round(ece, 4), "split": split}},
    }
    (out_dir / f"{plot_prefix}metrics.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n",
                                                        encoding="utf-8")
    return report


def _positive_label(samples: Sequence[datalib.Sample], label_name: str) -> str:
    """The data set's class name for the package's label: same name ignoring case (Pneumonia ~ PNEUMONIA)."""
    names = {s.label for s in samples}
    for n in names:
        if n.lower() == label_name.lower():
            return n
    raise datalib.DataError(f"no class named like the model's label {label_name!r} (classes: {sorted(names)})")


def evaluate(
    model: Path, data: str, *, out_dir: Path, by: Sequence[str] = (), margin: float = 0.05,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """``radsight evaluate``: classification here, segmentation in radsight.train.segmentation."""
    package = load_package(Path(model))
    if package.metadata.task == Task.SEGMENTATION:
        # Imported only for segmentation packages (its own dependencies stay out of classification runs).
        segmentation = importlib.import_module("radsight.train.segmentation")
        attr = by[0] if by else None
        result: dict[str, Any] = segmentation.evaluate(package.path, data, out_dir, by=attr)
        return result
    if package.metadata.task != Task.CLASSIFICATION:
        raise ValueError(f"{package.metadata.name}: evaluating {package.metadata.task} models is not supported")
    samples = datalib.discover(data)
    return evaluate_package(package.path, samples, out_dir=out_dir, by=by, margin=margin, resamples=resamples,
                            seed=seed)
