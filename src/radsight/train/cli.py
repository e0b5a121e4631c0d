"""``radsight train ...`` and ``radsight evaluate``.

Importing this module never imports torch (``radsight --help`` and serving stay light): each
command imports what it needs, and a missing ``radsight[train]`` extra is one clear message.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from radsight.cli_common import HomeOpt, console, open_archive
from radsight.train import DEFAULT_CLASSIFIER_NAME, DEFAULT_SEGMENTER_NAME, DEFAULT_VERSION, TRAIN_EXTRA_HINT

app = typer.Typer(help="Train model packages (needs the train extra of radsight).", no_args_is_help=True)

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda")]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Most epochs (early stopping may end sooner)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the split, initialisation and augmentation")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after this many steps (tests)")]
VersionOpt = Annotated[str, typer.Option("--version", help="Package version")]
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or digit"
VERSION_RULE = "1 to 16 characters"


def require_train_extra(*modules: str) -> None:
    """Exit 1 naming ``pip install 'radsight[train]'`` when a training dependency is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        console.print(f"[red]{escape(', '.join(missing))} not installed: {escape(TRAIN_EXTRA_HINT)}[/red]",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _check_device(device: str) -> None:
    if device not in {"cpu", "cuda"}:
        raise _fail(f"--device must be cpu or cuda, not {device!r}", 2)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise _fail("--device cuda: PyTorch sees no CUDA device here; train with --device cpu", 2)


def _shipped_names() -> set[str]:
    from radsight.ai.package import ModelPackageError, load_package
    from radsight.ai.registry import builtin_packages

    names = set()
    for folder in builtin_packages():
        with contextlib.suppress(ModelPackageError):
            names.add(load_package(folder, check_onnx=False).metadata.name)
    return names


def _check_package_identity(name: str, version: str) -> None:
    """Before any training: exit 2 if the package could not carry ``name`` / ``version``.

    The rules are the package schema's own (radsight.ai.package.ModelMetadata); a shipped model's
    name is allowed (retraining it), with a note on what installing such a package does.
    """
    from pydantic import TypeAdapter, ValidationError

    from radsight.ai.package import ModelMetadata

    for option, field, value, rule in (("--name", "name", name, NAME_RULE), ("--version", "version", version,
                                                                              VERSION_RULE)):
        try:
            TypeAdapter(Annotated[str, ModelMetadata.model_fields[field]]).validate_python(value)
        except ValidationError as exc:
            raise _fail(f"{option} {value!r}: a model {field} is {rule}", 2) from exc
    if name in _shipped_names():
        console.print(f"note: {name!r} is the name of a model that ships with RadSight; installing this package "
                      "replaces it (radsight model add PACKAGE --replace)", highlight=False, soft_wrap=True)


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
    name: Annotated[str, typer.Option("--name", help="Package name (not a shipped model's unless given)")] = (
        DEFAULT_CLASSIFIER_NAME
    ),
    version: VersionOpt = DEFAULT_VERSION,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Train a 2D classifier (pneumonia vs normal by default) and write a RadSight model package."""
    require_train_extra("torch", "monai", "matplotlib")
    _check_device(device)
    _check_package_identity(name, version)
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
        raise _fail(str(exc)) from exc
    print(f"model package {name} {version} written to {path}")


@app.command("segmentation")
def segmentation(
    data: Annotated[str, typer.Argument(help="Training data (see radsight.train.segmentation)")],
    out: Annotated[Path, typer.Option("--out", help="Package folder to write")],
    epochs: EpochsOpt = 50,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    max_steps: MaxStepsOpt = None,
    name: Annotated[str, typer.Option("--name", help="Package name (not a shipped model's unless given)")] = (
        DEFAULT_SEGMENTER_NAME
    ),
    version: VersionOpt = DEFAULT_VERSION,
) -> None:
    """Train a 3D segmentation model and write a RadSight model package."""
    require_train_extra("torch", "monai")
    _check_device(device)
    _check_package_identity(name, version)
    seg = importlib.import_module("radsight.train.segmentation")
    try:
        seg.parse_data(data)
    except ValueError as exc:
        raise _fail(f"training data {exc}") from exc
    path = seg.train(data, out, epochs=epochs, device=device, seed=seed, resume=resume, max_steps=max_steps,
                     name=name, version=version)
    print(f"model package {name} {version} written to {path}")


def _package_folder(model: str, home: Path | None) -> Path:
    """``model`` as a package folder: the folder itself, or an installed model's (enabled or not) by name."""
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists():
        raise _fail(f"{model}: not a package folder (unzip a .zip package, or install it with "
                    "`radsight model add` and evaluate it by name)")
    if home is None:
        raise _fail(f"{model}: no such package folder; to evaluate an installed model by name, give the "
                    "archive with --home or RADSIGHT_HOME")
    if not home.is_dir():
        raise _fail(f"no archive at {home} (--home)")
    from radsight.ai.registry import list_models

    archive = open_archive(home)
    try:
        with archive.db.session() as s:
            installed = {m.name: Path(m.package_dir) for m in list_models(s)}
    finally:
        archive.close()
    if model not in installed:
        listed = ", ".join(sorted(installed)) or "none"
        raise _fail(f"{model}: no such package folder, and no model of that name is installed in {home} "
                    f"(installed: {listed})")
    return installed[model]


def evaluate(
    model: Annotated[
        str,
        typer.Argument(help="Model package folder, or the name of a model installed in the archive (--home)"),
    ],
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
    home: HomeOpt = None,
) -> None:
    """Evaluate a model package on a labelled set with ONNX Runtime: metrics with 95% CIs, calibration, plots."""
    require_train_extra("matplotlib")
    from radsight.ai.package import ModelPackageError
    from radsight.train.data import DataError
    from radsight.train.evaluate import evaluate as run

    folder = _package_folder(model, home)
    try:
        report = run(folder, data, out_dir=out, by=by or [], margin=margin, resamples=resamples, seed=seed)
    except ModelPackageError as exc:
        raise _fail(f"broken model package: {exc}") from exc
    except (DataError, ValueError) as exc:
        raise _fail(str(exc)) from exc
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
