"""``forecast data``: look at, check and refresh the evidence files."""

from __future__ import annotations

import typer

from forecast.cli import app

data_app = typer.Typer(help="Validate, summarise, plot and ingest the data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
