"""What every ``radsight`` sub-command shares: the --home option and opening the archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from radsight.archive import Archive
from radsight.config import load_settings

console = Console(stderr=True)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="RADSIGHT_HOME", help="Archive home (default: $RADSIGHT_HOME)"),
]


def open_archive(home: Path | None, **overrides: object) -> Archive:
    if home is None:
        console.print("[red]No archive home: pass --home DIR or set RADSIGHT_HOME.[/red]")
        raise typer.Exit(2)
    return Archive.open(load_settings(home=home, **overrides))
