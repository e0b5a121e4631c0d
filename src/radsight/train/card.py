"""Model cards: what a model is for, what it was trained on and how well it does.

``model-card.json`` holds the dict as given (machines read it); ``model-card.md`` is the same
content rendered for people (the viewer and ``GET /api/models`` show it). Keys are optional:
a missing key leaves its section out. Plain data only, so segmentation and classification
trainers share one writer.

Keys: name, version, task, summary, intended_use, data, training, metrics
({name: {value, ci95: [lo, hi], split}}), calibration, subgroups, limitations (list[str]),
plots (relative PNG paths), reproduce (str).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_JSON = "model-card.json"
CARD_MD = "model-card.md"
NOT_FOR_CLINICAL_USE = (
    "**Not for clinical use.** This model is a research and demonstration artefact; it has not been "
    "cleared by any regulator and must not inform diagnosis or treatment."
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _mapping(lines: list[str], title: str, values: Any) -> None:
    """A ``## title`` section of ``- key: value`` lines (or the text, when not a mapping)."""
    if values is None:
        return
    lines += [f"## {title}", ""]
    if isinstance(values, dict):
        lines += [f"- **{k}**: {_fmt(v)}" for k, v in values.items()]
    else:
        lines.append(_fmt(values))
    lines.append("")


def _ci(ci: Any) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"{_fmt(float(ci[0]))} – {_fmt(float(ci[1]))}"
    return ""


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    rows = ["| metric | value | 95% CI | split |", "|---|---|---|---|"]
    for name, m in metrics.items():
        if isinstance(m, dict):
            value = m.get("value")
            rows.append(
                f"| {name} | {_fmt(value) if value is not None else ''} | {_ci(m.get('ci95'))} | {m.get('split', '')} |"
            )
        else:
            rows.append(f"| {name} | {_fmt(m)} | | |")
    return rows


def _subgroups(subgroups: Any) -> list[str]:
    """Subgroups as ``{attribute: {group: {metric: {value, ci95, n, flagged}}}}`` or free text."""
    if not isinstance(subgroups, dict):
        return [_fmt(subgroups)]
    lines: list[str] = []
    for attribute, groups in subgroups.items():
        if not isinstance(groups, dict):
            lines.append(f"- **{attribute}**: {_fmt(groups)}")
            continue
        lines += [f"### By {attribute}", "", "| group | n | metric | value | 95% CI | flagged |"]
        lines.append("|---|---|---|---|---|---|")
        for group, result in groups.items():
            if not isinstance(result, dict):
                lines.append(f"| {group} | | | {_fmt(result)} | | |")
                continue
            n = result.get("n", "")
            flagged = set(result.get("flagged", []) or [])
            for metric, m in result.items():
                if not isinstance(m, dict) or "value" not in m:
                    continue
                lines.append(
                    f"| {group} | {n} | {metric} | {_fmt(m['value'])} | {_ci(m.get('ci95'))} |"
                    f" {'yes' if metric in flagged else ''} |"
                )
        lines.append("")
    return lines


def render_model_card(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    title = " ".join(str(card[k]) for k in ("name", "version") if card.get(k)) or "Model"
    lines = [f"# {title}", ""]
    if card.get("task"):
        lines += [f"Task: {card['task']}", ""]
    if card.get("summary"):
        lines += [str(card["summary"]), ""]
    if card.get("intended_use"):
        lines += ["## Intended use", "", str(card["intended_use"]), ""]
    lines += [NOT_FOR_CLINICAL_USE, ""]
    _mapping(lines, "Data", card.get("data"))
    _mapping(lines, "Training", card.get("training"))
    if card.get("reproduce"):
        lines += ["## Reproduce", "", "```sh", str(card["reproduce"]).strip(), "```", ""]
    if card.get("metrics"):
        lines += ["## Metrics", "", *_metrics_table(card["metrics"]), ""]
    _mapping(lines, "Calibration", card.get("calibration"))
    if card.get("subgroups"):
        lines += ["## Subgroup results", "", *_subgroups(card["subgroups"])]
        if lines[-1]:
            lines.append("")
    if card.get("limitations"):
        lines += ["## Limitations", "", *[f"- {item}" for item in card["limitations"]], ""]
    if card.get("plots"):
        lines += ["## Plots", "", *[f"![{Path(p).stem}]({p})" for p in card["plots"]], ""]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(package_dir: Path, card: dict[str, Any]) -> None:
    """Write ``model-card.json`` (the dict as is) and ``model-card.md`` into ``package_dir``."""
    package_dir = Path(package_dir)
    package_dir.mkdir(parents=True, exist_ok=True)
    (package_dir / CARD_JSON).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    (package_dir / CARD_MD).write_text(render_model_card(card), encoding="utf-8")
