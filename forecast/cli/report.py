"""``forecast report``: the scheduled report.

Module-level imports stay light (Typer and the CLI app only); the pipeline is imported inside the command.
Exit codes: 0 published or up to date, 1 internal error, 2 bad input, 3 published with failed diagnostics,
4 lock timeout, 5 refit required with ``--refit tell`` (see ``docs/report.md``).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from forecast.cli import app
from forecast.cli.options import DataDir, resolve_data_dir
from forecast.sampler_defaults import (
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_STARTS,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
)


class RefitMode(StrEnum):
    """What to do when the latest report's fit cannot be reused."""

    auto = "auto"
    tell = "tell"


@app.command("report")
def report_command(
    data: DataDir = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output directory (default: out_dir of report.toml in the data directory, else ./reports).",
        file_okay=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of a refit.")] = 20261125,
    draws: Annotated[int, typer.Option(help="Draws per chain of a refit.", min=1)] = DEFAULT_DRAWS,
    tune: Annotated[int, typer.Option(help="Tuning steps per chain of a refit.", min=0)] = DEFAULT_TUNE,
    chains: Annotated[int, typer.Option(help="Chains of a refit.", min=1)] = DEFAULT_CHAINS,
    target_accept: Annotated[float, typer.Option(help="NUTS target acceptance rate of a refit.")]
    = DEFAULT_TARGET_ACCEPT,
    backend: Annotated[str, typer.Option(help="NUTS backend of a refit: numpyro, nutpie or pymc.")] = "numpyro",
    starts: Annotated[int, typer.Option(help="Posterior-mode searches before a refit samples.", min=0)]
    = DEFAULT_STARTS,
    priors: Annotated[str, typer.Option(help="Prior set name or TOML path.")] = "default",
    refit: Annotated[RefitMode, typer.Option(
        "--refit", help="When the previous fit cannot be reused: 'auto' refits, 'tell' publishes nothing and "
        "exits 5.")] = RefitMode.auto,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", help="Seconds to wait for another report run; then exit 4.", min=0)] = 600.0,
    force_refit: Annotated[bool, typer.Option("--force-refit", help="Refit and publish even if a fit could be "
                                              "reused or the report is up to date.")] = False,
) -> None:
    """Write the dated report (HTML, Markdown, JSON) of the current data, updating or refitting as needed."""
    from forecast.report.pipeline import EXIT_LOCK_TIMEOUT, FitSettings, run_report
    from forecast.report.publish import LockTimeout

    settings = FitSettings(seed=seed, draws=draws, tune=tune, chains=chains, target_accept=target_accept,
                           backend=backend, priors=priors, starts=starts)
    try:
        outcome = run_report(resolve_data_dir(data), out, fit_settings=settings, on_refit=refit.value,
                             force_refit=force_refit, lock_timeout=lock_timeout, progress=sys.stderr.isatty())
    except LockTimeout as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_LOCK_TIMEOUT) from None
    if outcome.report is not None:
        typer.echo(format_summary(outcome.report))
    typer.echo(outcome.message)
    if outcome.directory is not None:
        typer.echo(f"report: {outcome.directory / 'index.html'}")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def format_summary(report: dict[str, Any]) -> str:
    """Current probabilities and a 12-month forecast summary of a ``report.json`` for the terminal.

    Parameters
    ----------
    report : dict
        The report's JSON content.

    Returns
    -------
    str
        Plain text.
    """
    lines = [f"data through {report['as_of']} (posterior path: {report['provenance']['path']})"]
    if not report["diagnostics"]["passed"]:
        lines.append("DIAGNOSTICS FAILED: " + "; ".join(report["diagnostics"]["failures"]))
        lines += [f"  what to try: {a}" for a in report["diagnostics"].get("advice", [])]
    lines.append("current probabilities (mean, 90% interval):")
    for s, v in report["scenarios"].items():
        lines.append(f"  {s:<20} {100 * v['mean']:5.1f}%  [{100 * v['lower']:5.1f}, {100 * v['upper']:5.1f}]")
    shown = [f for f in report["forecast"] if f["horizon"] in (1, 3, 6, 12)]
    if shown:
        lines.append("forecast, mean %:      " + "  ".join(f"{f['period'][:7]:>7}" for f in shown))
        for s in report["scenarios"]:
            lines.append(f"  {s:<20} " + "  ".join(f"{100 * f['scenarios'][s]['mean']:7.1f}" for f in shown))
    summary = report["what_changed"].get("summary")
    if summary and report["what_changed"].get("previous_as_of"):
        lines.append(f"since {report['what_changed']['previous_as_of']}: {summary}")
    return "\n".join(lines)
