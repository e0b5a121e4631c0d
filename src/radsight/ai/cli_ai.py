"""``radsight ai ...``: run models on demand and look at jobs."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run AI models and inspect jobs.", no_args_is_help=True)
