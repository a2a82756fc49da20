"""``forecast fit``: fit the scenario model and write the fit file.

Exit codes: 0 when the fit passed the convergence gate, 3 when the fit file was written but the gate failed
(the diagnostics say why; nothing downstream should use it silently), 2 for bad input.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from forecast.cli import app
from forecast.cli.options import DataDir, resolve_data_dir
from forecast.sampler_defaults import (
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_STARTS,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
    QUARTERLY_DRAWS,
    QUARTERLY_TARGET_ACCEPT,
)

#: Exit code when the fit was written but did not pass the convergence gate.
EXIT_NOT_CONVERGED = 3


class Freq(StrEnum):
    """Period frequency."""

    M = "M"
    Q = "Q"


class Backend(StrEnum):
    """NUTS implementation."""

    numpyro = "numpyro"
    nutpie = "nutpie"
    pymc = "pymc"


@app.command("fit")
def fit_command(
    data: DataDir = None,
    out: Annotated[Path, typer.Option("--out", help="Fit file to write (netCDF).", dir_okay=False)] = Path("fit.nc"),
    freq: Annotated[Freq, typer.Option("--freq", help="Monthly (M) or quarterly (Q) periods.")] = Freq.M,
    seed: Annotated[int, typer.Option("--seed", help="Sampler seed (same seed and data give the same fit).")] = 1,
    draws: Annotated[int | None, typer.Option(
        "--draws", min=1, show_default=False,
        help=f"Posterior draws per chain (default {DEFAULT_DRAWS} monthly, {QUARTERLY_DRAWS} quarterly).")] = None,
    tune: Annotated[int, typer.Option("--tune", min=0, help="Tuning steps per chain.")] = DEFAULT_TUNE,
    chains: Annotated[int, typer.Option("--chains", min=1, help="Number of chains (at least 2 for the gate).")]
    = DEFAULT_CHAINS,
    backend: Annotated[Backend, typer.Option("--backend", help="NUTS implementation.")] = Backend.numpyro,
    priors: Annotated[str, typer.Option("--priors", help="Packaged prior set name (default, flat, paper, "
                                        "sceptical, wide_loadings, tight_loadings) or a prior-set .toml file.")]
    = "default",
    no_labels: Annotated[bool, typer.Option("--no-labels", help="Do not use the analyst labels as evidence.")]
    = False,
    target_accept: Annotated[float | None, typer.Option(
        "--target-accept", show_default=False, help="NUTS target acceptance rate "
        f"(default {DEFAULT_TARGET_ACCEPT} monthly, {QUARTERLY_TARGET_ACCEPT} quarterly).")] = None,
    starts: Annotated[int, typer.Option("--starts", min=0, help="Posterior-mode searches before sampling (the "
                                        "moment start and jittered copies); 0 starts at the moment start.")]
    = DEFAULT_STARTS,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", show_default=False,
        help="Show the sampler's progress bars (default: only when standard error is a terminal, so that logs of "
             "scheduled runs stay readable).")] = None,
) -> None:
    """Fit the scenario model to the data and write FIT.nc; print the convergence diagnostics."""
    from forecast.dataset import load_dataset
    from forecast.fitfile import save_fit
    from forecast.fitting import fit
    from forecast.inputs import ModelOptions
    from forecast.panel import build_panel
    from forecast.priors import load_prior_set

    prior_set = load_prior_set(Path(priors) if priors.endswith(".toml") else priors)
    dataset = load_dataset(resolve_data_dir(data))
    panel = build_panel(dataset, freq.value)
    result = fit(
        panel, priors=prior_set, options=ModelOptions(use_labels=not no_labels), seed=seed, draws=draws,
        tune=tune, chains=chains, backend=backend.value, target_accept=target_accept, starts=starts,
        catalog_text=dataset.catalog.text, data_sha256=str(panel.attrs.get("data_sha256", "")),
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    path = save_fit(result, out)
    typer.echo(format_diagnostics(result.diagnostics, result.attr("sampler")))
    typer.echo(f"fit written to {path}")
    if not result.converged:
        typer.echo("the fit did NOT pass the convergence gate; do not use it (see docs/model.md)", err=True)
        raise typer.Exit(EXIT_NOT_CONVERGED)


def format_diagnostics(diagnostics: dict, sampler: dict) -> str:
    """Plain-text summary of the convergence gate for the terminal.

    Parameters
    ----------
    diagnostics : dict
        From :func:`forecast.fitting.check_convergence`.
    sampler : dict
        The fit's sampler settings.

    Returns
    -------
    str
        Settings, worst R-hat and ESS with where they occur, divergences, label switching and the verdict.
    """
    def num(value, fmt):
        return "n/a" if value is None else format(value, fmt)

    lines = [
        f"sampler: {sampler.get('backend')}, {sampler.get('chains')} chains × {sampler.get('draws')} draws "
        f"(+{sampler.get('tune')} tune), {num(sampler.get('wall_seconds'), '.1f')} s",
        *_mode_search_line(sampler.get("mode_search")),
        f"max R-hat: {num(diagnostics.get('max_rhat'), '.4f')} ({diagnostics.get('max_rhat_at', '')}); "
        f"threshold {diagnostics.get('rhat_threshold')}",
        f"min ESS bulk: {num(diagnostics.get('min_ess_bulk'), '.0f')} ({diagnostics.get('min_ess_bulk_at', '')}); "
        f"min ESS tail: {num(diagnostics.get('min_ess_tail'), '.0f')} ({diagnostics.get('min_ess_tail_at', '')}); "
        f"threshold {diagnostics.get('ess_threshold')}",
        f"divergences: {diagnostics.get('divergences')}",
        f"label switching: {'YES' if diagnostics.get('label_switching') else 'no'}",
        "convergence gate: " + ("passed" if diagnostics.get("passed") else "FAILED"),
    ]
    lines += [f"  - {failure}" for failure in diagnostics.get("failures", [])]
    from forecast.fitting import gate_advice

    advice = gate_advice(diagnostics, sampler)
    if advice:
        lines.append("what to try:")
        lines += [f"  - {line}" for line in advice]
    return "\n".join(lines)


def _mode_search_line(search: dict | None) -> list[str]:
    if not search or not search.get("starts"):
        return []
    competing = len(search.get("alternatives") or [])
    return [f"start: best of {search['starts']} posterior-mode searches ({search['modes']} distinct optima, "
            f"{competing} competing elsewhere), -log p {search['best_neg_logp']:.2f} against "
            f"{search['moment_neg_logp']:.2f} from the moment start"]
