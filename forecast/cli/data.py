"""``forecast data``: look at, check and refresh the evidence files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from forecast.cli import app
from forecast.cli.options import DataDir, resolve_data_dir

data_app = typer.Typer(help="Validate, summarise, plot and ingest the data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


class Freq(StrEnum):
    """Panel frequency on the command line."""

    M = "M"
    Q = "Q"


FreqOption = Annotated[Freq, typer.Option("--freq", help="Panel periods: M (months) or Q (quarters).")]


@data_app.command("check")
def check_command(data: DataDir = None, freq: FreqOption = Freq.M) -> None:
    """Validate the data directory and print a summary; exit 2 listing every problem if a file is invalid."""
    from forecast.dataset import load_dataset
    from forecast.panel import build_panel

    dataset = load_dataset(resolve_data_dir(data))
    panel = build_panel(dataset, freq.value)
    typer.echo(format_check(dataset, panel))


def format_check(dataset: object, panel: object) -> str:
    """Plain-text summary of a validated dataset and its panel.

    Parameters
    ----------
    dataset : forecast.dataset.Dataset
        The validated dataset.
    panel : xarray.Dataset
        Its panel (for the number and range of periods and the observed share).

    Returns
    -------
    str
        The text printed by ``forecast data check``.
    """
    import pandas as pd

    from forecast.dataset import Dataset

    assert isinstance(dataset, Dataset)
    summary = dataset.summary()
    periods = pd.DatetimeIndex(panel["period"].values)  # type: ignore[index]
    freq = panel.attrs["freq"]  # type: ignore[attr-defined]
    label = (lambda p: p.strftime("%Y-%m")) if freq == "M" else (lambda p: f"{p.year}-Q{p.quarter}")
    lines = [
        f"data directory:   {dataset.data_dir}",
        f"sha256:           {dataset.sha256}",
        f"observed through: {dataset.catalog.observed_through.isoformat()}",
        f"periods ({freq}):      {len(periods)}, {label(periods[0])} to {label(periods[-1])}",
        f"rows:             {len(dataset.observations)} observations, {len(dataset.labels)} labels",
        "",
        "indicators:",
    ]
    table = summary["indicators"].copy()
    table["coverage"] = [f"{s:%Y-%m-%d}..{e:%Y-%m-%d}" for s, e in zip(table["coverage_start"],
                                                                      table["coverage_end"], strict=True)]
    table["total"] = [f"{t:g}" if t == t else "-" for t in table["total"]]
    shown = table[["indicator", "kind", "role", "coverage", "rows", "total"]]
    lines += ["  " + row for row in shown.to_string(index=False).splitlines()]
    lines += ["", "per year (count indicators: events; levels: measurements; '.' = outside coverage):"]
    per_year = summary["per_year"]
    short = {c: f"{i + 1}" for i, c in enumerate(per_year.columns)}
    text = per_year.rename(columns=short).to_string(
        na_rep=".", float_format=lambda v: f"{v:g}")
    lines += ["  " + row for row in text.splitlines()]
    lines += ["  columns: " + "; ".join(f"{n} = {c}" for c, n in short.items())]
    labels = summary["labels"]
    lines += ["", f"labels ({len(labels)}):"]
    for row in labels.itertuples():
        lines.append(f"  {row.start:%Y-%m-%d}..{row.end:%Y-%m-%d}  {row.scenario:<20} confidence {row.confidence:g}")
    if labels.empty:
        lines.append("  (none)")
    lines += ["", "OK: every file follows the data contract."]
    return "\n".join(lines)


@data_app.command("plot")
def plot_command(
    data: DataDir = None,
    freq: FreqOption = Freq.M,
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.", dir_okay=False)] = Path("panel.png"),
) -> None:
    """Plot every indicator of the panel, one row each, with the analyst labels shaded."""
    from forecast.dataset import load_dataset
    from forecast.panel import build_panel
    from forecast.plots.panel import save_panel_plot

    panel = build_panel(load_dataset(resolve_data_dir(data)), freq.value)
    save_panel_plot(panel, out)
    typer.echo(f"panel plot written to {out}")
