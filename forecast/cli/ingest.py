"""``forecast data ingest``: refresh observation files from the CNS missile database or a generic event list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from forecast.cli.data import data_app
from forecast.cli.options import DataDir, resolve_data_dir
from forecast.errors import ConfigError

ingest_app = typer.Typer(
    help="Merge rows from a public source into the data directory (idempotent; validated before writing).",
    no_args_is_help=True,
)
data_app.add_typer(ingest_app, name="ingest")

Through = Annotated[
    str | None,
    typer.Option("--through", metavar="YYYY-MM-DD",
                 help="Ingest nothing after this day (default: the catalog's observed_through and coverage)."),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the report without writing anything.")]
MaxRows = Annotated[
    int | None,
    typer.Option("--show", min=0, help="Show at most this many new and revised rows each (default: all)."),
]


def _parse_through(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--through {text!r} is not a date. Fix: write it as YYYY-MM-DD, e.g. 2025-12-31") from None


@ingest_app.command("cns")
def ingest_cns_command(
    export: Annotated[Path, typer.Argument(help="CNS North Korea Missile Test Database export (.csv or .xlsx).")],
    data: DataDir = None,
    through: Through = None,
    dry_run: DryRun = False,
    show: MaxRows = None,
) -> None:
    """Ingest a CNS missile test export into observations/cns_missiles.csv.

    One row per UTC launch day for nk_missile_launches (missiles that day) and nk_icbm_launches (ICBMs that day).
    """
    from forecast.ingest import ingest_cns

    report = ingest_cns(export, resolve_data_dir(data), through=_parse_through(through), dry_run=dry_run)
    typer.echo(report.format(max_rows=show), nl=False)


@ingest_app.command("events")
def ingest_events_command(
    events: Annotated[Path, typer.Argument(help="Event list (.csv or .xlsx) with a date and a category column.")],
    mapping: Annotated[Path, typer.Option("--mapping", "-m", help="Mapping TOML: [mapping] category → indicator.")],
    data: DataDir = None,
    through: Through = None,
    skip_unmapped: Annotated[
        bool, typer.Option("--skip-unmapped", help="Skip and report categories absent from the mapping.")
    ] = False,
    dry_run: DryRun = False,
    show: MaxRows = None,
) -> None:
    """Ingest a generic event list into the observation file named by its mapping."""
    from forecast.ingest import ingest_events

    report = ingest_events(events, mapping, resolve_data_dir(data), through=_parse_through(through),
                           skip_unmapped=skip_unmapped, dry_run=dry_run)
    typer.echo(report.format(max_rows=show), nl=False)
