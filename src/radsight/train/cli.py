"""``radsight train ...`` and ``radsight evaluate``.

Importing this module never imports torch (``radsight --help`` and serving stay light): each
command imports what it needs, and a missing ``radsight[train]`` extra is one clear message.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from radsight.cli_common import console
from radsight.train import TRAIN_EXTRA_HINT

app = typer.Typer(help="Train model packages (needs the train extra of radsight).", no_args_is_help=True)

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda")]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Most epochs (early stopping may end sooner)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the split, initialisation and augmentation")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after this many steps (tests)")]


def require_train_extra(*modules: str) -> None:
    """Exit 1 naming ``pip install 'radsight[train]'`` when a training dependency is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        console.print(f"[red]{escape(', '.join(missing))} not installed: {escape(TRAIN_EXTRA_HINT)}[/red]",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _check_device(device: str) -> None:
    if device not in {"cpu", "cuda"}:
        console.print(f"[red]--device must be cpu or cuda, not {device!r}[/red]", highlight=False)
        raise typer.Exit(2)


@app.command("classification")
def classification(
    data: Annotated[str, typer.Argument(help="Class folders DATA/<CLASS>/*.jpeg|png|dcm, or a CSV path,label[,...]")],
    out: Annotated[Path, typer.Option("--out", help="Package folder to write")],
    epochs: EpochsOpt = 25,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
    size: Annotated[int, typer.Option("--size", min=32, help="Network input size S (S x S)")] = 160,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (one-cycle)")] = 2e-3,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.05, max=0.5)] = 0.15,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Epochs without a better validation AUC")] = 6,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for PyTorch")] = None,
    positive: Annotated[str, typer.Option("--positive", help="Class name of the finding")] = "PNEUMONIA",
    limit: Annotated[int | None, typer.Option("--limit", min=4, help="Use a balanced subset of this size")] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option("--checkpoints", help="Checkpoint folder (default ~/.cache/radsight/checkpoints/NAME)"),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache decoded images")] = False,
    name: Annotated[str, typer.Option("--name", help="Package name")] = "cxr-pneumonia",
    version: Annotated[str, typer.Option("--version", help="Package version")] = "1.0.0",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Train a 2D classifier (pneumonia vs normal by default) and write a RadSight model package."""
    require_train_extra("torch", "monai", "matplotlib")
    _check_device(device)
    from radsight.train.classification import TrainConfig, train
    from radsight.train.data import DataError

    cfg = TrainConfig(
        data=data, out=out, size=size, epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction,
        patience=patience, seed=seed, device=device, threads=threads, resume=resume, max_steps=max_steps,
        limit=limit, positive=positive, name=name, version=version, checkpoints=checkpoints, quiet=quiet,
    )
    if no_cache:
        cfg.cache_dir = None
    try:
        path = train(cfg)
    except DataError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    print(f"model package written to {path}")


@app.command("segmentation")
def segmentation(
    data: Annotated[str, typer.Argument(help="Training data (see radsight.train.segmentation)")],
    out: Annotated[Path, typer.Option("--out", help="Package folder to write")],
    epochs: EpochsOpt = 50,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
) -> None:
    """Train a 3D segmentation model and write a RadSight model package."""
    require_train_extra("torch", "monai")
    _check_device(device)
    seg = importlib.import_module("radsight.train.segmentation")
    path = seg.train(data, out, epochs=epochs, device=device, seed=seed, resume=resume, max_steps=max_steps)
    print(f"model package written to {path}")


def evaluate(
    model: Annotated[Path, typer.Argument(help="Model package folder")],
    data: Annotated[str, typer.Argument(help="Labelled images: class folders, a CSV, or a DICOM folder")],
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Subgroups: PatientSex, age (bands from PatientAge), Manufacturer or a CSV column"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json and the plots")] = Path("evaluation"),
    margin: Annotated[
        float, typer.Option("--margin", min=0, max=1, help="Flag subgroups this far below overall")
    ] = 0.05,
    resamples: Annotated[int, typer.Option("--resamples", min=10, help="Bootstrap resamples")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed")] = 2018,
) -> None:
    """Evaluate a model package on a labelled set with ONNX Runtime: metrics with 95% CIs, calibration, plots."""
    require_train_extra("matplotlib")
    from radsight.ai.package import ModelPackageError
    from radsight.train.data import DataError
    from radsight.train.evaluate import evaluate as run

    try:
        report = run(model, data, out_dir=out, by=by or [], margin=margin, resamples=resamples, seed=seed)
    except (DataError, ModelPackageError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    _print_report(report, out)


def _print_report(report: dict[str, object], out: Path) -> None:
    from rich.table import Table

    metrics = report.get("metrics")
    if isinstance(metrics, dict):
        title = f"n = {report.get('n', '?')}, threshold {report.get('threshold')}"
        table = Table("metric", "value", "95% CI", title=title)
        for name, m in metrics.items():
            if isinstance(m, dict) and isinstance(m.get("value"), float):
                ci = m.get("ci95")
                ci_text = f"{ci[0]:.4f} - {ci[1]:.4f}" if isinstance(ci, list) else ""
                table.add_row(name, f"{m['value']:.4f}", ci_text)
        console.print(table)
    subgroups = report.get("subgroups")
    if isinstance(subgroups, dict):
        for attribute, groups in subgroups.items():
            for group, result in groups.items():
                if result.get("flagged"):
                    console.print(f"[yellow]{attribute}={group} (n={result['n']}): below overall on "
                                  f"{', '.join(result['flagged'])}[/yellow]", highlight=False)
    print(f"metrics written to {out / 'metrics.json'}")
