"""``radsight model ...``: install, list and remove model packages."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage AI model packages.", no_args_is_help=True)
