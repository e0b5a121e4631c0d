"""``radsight model ...``: install, list and remove model packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from radsight.cli_common import HomeOpt, console, open_archive

app = typer.Typer(help="Manage AI model packages.", no_args_is_help=True)


@app.command("add")
def model_add(
    path: Annotated[
        Path, typer.Argument(help="Model package: a folder or a .zip; builtin:NAME for one shipped with RadSight")
    ],
    replace: Annotated[bool, typer.Option("--replace", help="Replace another installed version")] = False,
    home: HomeOpt = None,
) -> None:
    """Validate and install a model package (one active version per model name)."""
    from radsight.ai.package import ModelPackageError
    from radsight.ai.registry import builtin_dir, install

    if str(path).startswith("builtin:"):
        name = str(path).removeprefix("builtin:")
        path = builtin_dir() / name
        if not path.is_dir() or "/" in name:
            console.print(f"[red]no model {name!r} ships with RadSight (see `radsight model shipped`)[/red]",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(1)
    archive = open_archive(home)
    try:
        model = install(archive, path, replace=replace)
    except ModelPackageError as exc:
        console.print(f"[red]broken model package: {exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    print(f"model {model.name} {model.version} ({model.task}, sha256 {model.sha256[:8]}) installed")


@app.command("list")
def model_list(home: HomeOpt = None) -> None:
    """List installed models: name, version, task, SHA-256 (8 digits), enabled."""
    from radsight.ai.registry import list_models

    archive = open_archive(home)
    try:
        with archive.db.session() as s:
            for m in list_models(s):
                print(f"{m.name}\t{m.version}\t{m.task}\t{m.sha256[:8]}\t{'enabled' if m.enabled else 'disabled'}")
    finally:
        archive.close()


@app.command("remove")
def model_remove(name: str, home: HomeOpt = None) -> None:
    """Uninstall a model (results it produced keep their provenance)."""
    from radsight.ai.registry import remove

    archive = open_archive(home)
    try:
        removed = remove(archive, name)
    finally:
        archive.close()
    if not removed:
        console.print(f"[red]no model {name!r} is installed[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    print(f"model {name} removed")


def _set_enabled(name: str, enabled: bool, home: Path | None) -> None:
    from radsight.ai.registry import set_enabled

    archive = open_archive(home)
    try:
        found = set_enabled(archive, name, enabled)
    finally:
        archive.close()
    if not found:
        console.print(f"[red]no model {name!r} is installed[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    print(f"model {name} {'enabled' if enabled else 'disabled'}")


@app.command("enable")
def model_enable(name: str, home: HomeOpt = None) -> None:
    """Enable a model: it is routed and run again."""
    _set_enabled(name, True, home)


@app.command("disable")
def model_disable(name: str, home: HomeOpt = None) -> None:
    """Disable a model: never routed nor run, but kept installed."""
    _set_enabled(name, False, home)


@app.command("shipped")
def model_shipped() -> None:
    """List the models that ship with RadSight (installed by `serve` unless an admin removed them)."""
    from radsight.ai.package import ModelPackageError, load_package
    from radsight.ai.registry import builtin_packages

    for folder in builtin_packages():
        try:
            meta = load_package(folder, check_onnx=False).metadata
        except ModelPackageError as exc:
            print(f"{folder.name}\tbroken: {exc}")
            continue
        print(f"{meta.name}\t{meta.version}\t{meta.task}\tbuiltin:{folder.name}")
