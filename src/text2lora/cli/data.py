"""`text2lora data ...`: build and inspect the task library (being written; see issue 3)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build and inspect the task library.", no_args_is_help=True)
