"""``forecast update``: absorb new months into an existing fit by reweighting its draws, or say a refit is due.

Module-level imports stay light (Typer and the CLI app only): the numerical modules are imported inside the
command so that ``forecast --help`` and the update itself start quickly. PyMC is imported only when
``--on-refit auto`` actually refits.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from forecast.cli import app
from forecast.cli.options import DataDir, resolve_data_dir

#: Exit code when the update could not be trusted and no refit was run (``--on-refit tell``).
EXIT_REFIT_REQUIRED = 3


class OnRefit(StrEnum):
    """What to do when the reweighting cannot be trusted."""

    tell = "tell"
    auto = "auto"


@app.command("update")
def update_command(
    fit_path: Annotated[Path, typer.Option("--fit", help="Fit file written by 'forecast fit' (or a report).",
                                           dir_okay=False)],
    data: DataDir = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON to this file.",
                                                   dir_okay=False)] = None,
    on_refit: Annotated[OnRefit, typer.Option(
        "--on-refit", help="When the reweighting cannot be trusted: 'tell' (say so, exit 3) or 'auto' (refit "
        "with the fit's sampler settings and seed; writes the new fit next to FIT as FIT.refit.nc).")] = OnRefit.tell,
    save: Annotated[Path | None, typer.Option("--save", help="Write the update (weights, probabilities) to this "
                                              "netCDF file for reports.", dir_okay=False)] = None,
    k_threshold: Annotated[float, typer.Option(help="Largest acceptable Pareto k-hat.")] = 0.7,
    min_ess: Annotated[float, typer.Option(help="Smallest acceptable effective sample size of the weights.")] = 400,
    max_new_periods: Annotated[int, typer.Option(help="More new periods than this always need a refit.")] = 6,
) -> None:
    """Update the probabilities of FIT with the new periods in the data, by importance reweighting."""
    from forecast.dataset import load_dataset
    from forecast.fitfile import load_fit
    from forecast.panel import build_panel
    from forecast.update import save_update, update_or_refit

    fit = load_fit(fit_path)
    dataset = load_dataset(resolve_data_dir(data))
    panel = build_panel(dataset, str(fit.panel.attrs.get("freq", "M")))
    refit = _refitter(fit, fit_path, dataset.catalog.text) if on_refit is OnRefit.auto else None
    result = update_or_refit(fit, panel, refit=refit, k_threshold=k_threshold, min_ess=min_ess,
                             max_new_periods=max_new_periods)
    typer.echo(format_result(result))
    if save is not None and result.path == "update":
        save_update(result, save)
        typer.echo(f"update written to {save}")
    if json_out is not None:
        from forecast.atomic import write_text

        write_text(json_out, json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        typer.echo(f"JSON written to {json_out}")
    if result.path == "refit_required":
        raise typer.Exit(EXIT_REFIT_REQUIRED)


def format_result(result: object) -> str:
    """Plain-text summary of an :class:`forecast.update.UpdateResult` for the terminal.

    Parameters
    ----------
    result : forecast.update.UpdateResult
        The update outcome.

    Returns
    -------
    str
        Path, reason, diagnostics, and (on the update path) current probabilities and forecasts.
    """
    from forecast.update import UpdateResult

    assert isinstance(result, UpdateResult)
    lines = [f"path: {result.path}", f"reason: {result.reason}"]
    if result.pareto_k is not None:
        lines.append(f"Pareto k-hat: {result.pareto_k:.3f} (threshold {result.thresholds.get('k_threshold')})")
    if result.ess is not None:
        lines.append(f"effective sample size: {result.ess:.0f} of {result.n_draws} draws "
                     f"(minimum {result.thresholds.get('min_ess'):g})")
    if result.periods_absorbed:
        lines.append("new periods: " + ", ".join(result.periods_absorbed))
    current = result.current()
    if current is not None:
        lines.append(f"filtered probabilities, {str(current['period'].iloc[0])[:10]} (mean, 90% interval):")
        for row in current.itertuples():
            lines.append(f"  {row.scenario:<20} {100 * row.mean:5.1f}%  [{100 * row.lower:5.1f}, "
                         f"{100 * row.upper:5.1f}]")
    if result.forecast is not None and not result.forecast.empty:
        table = result.forecast
        shown = [h for h in (1, 3, 6, 12) if h in set(table["horizon"])]
        lines.append("forecast, mean % (horizon in periods): " + "  ".join(f"h={h:<3}" for h in shown))
        for scenario in dict.fromkeys(table["scenario"]):
            sub = table[table["scenario"] == scenario].set_index("horizon")["mean"]
            lines.append(f"  {scenario:<20} " + "  ".join(f"{100 * sub[h]:5.1f}" for h in shown))
    if result.path == "refit" and result.refit is not None:
        lines.append("refit converged: " + ("yes" if result.refit.converged else "NO (see diagnostics)"))
    return "\n".join(lines)


def _refitter(fit, fit_path: Path, catalog_text: str):
    """A refit with the base fit's sampler settings and seed, saved next to the base fit."""
    def refit(panel):
        from forecast import fitting
        from forecast.fitfile import save_fit
        from forecast.priors import PriorSet

        sampler = fit.attr("sampler")
        kwargs = {k: sampler[k] for k in ("draws", "tune", "chains", "backend", "target_accept", "starts")
                  if k in sampler}
        new_fit = fitting.fit(panel, priors=PriorSet.from_dict(fit.attr("prior_set")),
                              options=_structural_options(fit), seed=int(fit.attr("seed")),
                              catalog_text=catalog_text,
                              data_sha256=str(panel.attrs.get("data_sha256", "")), **kwargs)
        target = fit_path.with_suffix(".refit.nc")
        save_fit(new_fit, target)
        typer.echo(f"refitted; new fit written to {target}")
        return new_fit

    return refit


def _structural_options(fit):
    """The fit's structural options without its standardisation (a refit re-estimates it from the new panel)."""
    from forecast.inputs import ModelOptions

    options = fit.options
    return ModelOptions(driver_lag=options.driver_lag, use_labels=options.use_labels)
