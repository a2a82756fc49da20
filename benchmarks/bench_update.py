#!/usr/bin/env python
"""Benchmark the online update: the update itself, and the whole ``forecast update`` command.

Run from the repository root::

    .venv/bin/python benchmarks/bench_update.py            # 4,000 draws, bundled monthly data
    .venv/bin/python benchmarks/bench_update.py --draws 1000 --repeat 5

Set-up (not timed): the bundled panel is built, its last month is held back, and a synthetic fit of the other
periods is written with ``--draws`` parameter draws (4 chains) scattered around a plausible parameter set (no
MCMC: the update's cost does not depend on how the draws were made), with each draw's last filtered state stored
as :func:`forecast.fitting.fit` stores it. The held-back month is then the new data.

Timed, best of ``--repeat``:

1. ``absorb``: the update itself for one new month: the forward step of every draw from its last fitted state,
   PSIS weights, k̂ and ESS, weighted filtered probabilities and 12-month forecasts (``forecast.update`` with the
   base filtered states already computed, as a report has them from ``forecast.probabilities``);
2. ``update()``: the whole :func:`forecast.update.update` call on the loaded fit (revision checks, inputs,
   the stored last filtered states, the update itself);
3. ``update() re-filtering``: the same on the fit without its ``filtered_state`` group (a fit file written before
   the states were stored): the forward filter over every fitted period recovers each draw's last filtered state
   (with analyst labels, with and without the labels' evidence in one pass);
4. ``command``: ``forecast update --fit FIT --data DIR`` in a fresh interpreter (start-up, imports, reading the
   fit file and the data directory, the update, printing), wall time of the child process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parent.parent
COMMAND = (
    "import sys; from forecast.cli import app, main; import forecast.cli.update; "
    "sys.argv[0] = 'forecast'; main(sys.argv[1:])"
)


def synthetic_fit(panel: xr.Dataset, n_draws: int, seed: int = 0):
    """A fit with ``n_draws`` draws around plausible parameters for ``panel`` (4 chains)."""
    from forecast import emissions
    from forecast.fitfile import Fit, filtered_state_group
    from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation
    from forecast.simulate import panel_params
    from forecast.update import filter_history

    rng = np.random.default_rng(seed)
    chains, draws = 4, max(n_draws // 4, 1)
    options = estimate_standardisation(panel, ModelOptions())
    signals = panel["signal"].values.tolist()
    kinds = panel["kind"].values.tolist()
    counts = [s for s, k in zip(signals, kinds, strict=True) if k == "count"]
    levels = [s for s, k in zip(signals, kinds, strict=True) if k == "level"]
    truth = panel_params(panel)
    post = {}
    for name, dims in emissions.PARAMETER_DIMS.items():
        value = truth[name]
        noise = rng.normal(scale=0.05, size=(chains, draws, *value.shape))
        if name == "init_prob":
            draw = np.broadcast_to(value, noise.shape).copy()
        elif name in ("nb_alpha", "level_sigma", "stickiness"):
            draw = value * np.exp(noise)
        else:
            draw = value + noise
        post[name] = (("chain", "draw", *dims), draw)
    posterior = xr.Dataset(post, coords={
        "chain": np.arange(chains), "draw": np.arange(draws), "signal": signals, "count_signal": counts,
        "level_signal": levels, "effect": ["us", "relations", "interaction"],
        "driver": panel["driver"].values.tolist(), "factor": ["us", "relations"],
        "scenario": panel["scenario"].values.tolist(),
    })
    inputs = build_inputs(panel, options)
    params = emissions.params_from_posterior(posterior, inputs)
    last = filter_history(params, inputs, options.use_labels)  # what forecast.fitting.fit stores
    zeros = np.zeros((chains, draws))
    return Fit.from_parts(
        posterior=posterior, sample_stats=xr.Dataset({"diverging": (("chain", "draw"), zeros.astype(bool))}),
        log_likelihood=xr.Dataset({"y": (("chain", "draw", "period"), last.report_inc.reshape(chains, draws, -1))},
                                  coords={"period": panel["period"].values}),
        log_prior=xr.Dataset({"total": (("chain", "draw"), zeros)}), panel=panel,
        data_sha256=str(panel.attrs.get("data_sha256", "")), seed=seed, sampler={"backend": "synthetic"},
        prior_set={"name": "synthetic"}, model_options=options, catalog="", diagnostics={}, converged=True,
        filtered_state=filtered_state_group(last.report_last, last.weight_last, chains=chains, draws=draws,
                                            period=panel["period"].values[-1]),
    )


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from forecast import emissions, probabilities, update
    from forecast.dataset import load_dataset
    from forecast.fitfile import Fit, load_fit, save_fit
    from forecast.inputs import build_inputs
    from forecast.panel import build_panel

    panel_new = build_panel(load_dataset(args.data), "M")
    n_old = panel_new.sizes["period"] - 1
    old = panel_new.isel(period=slice(0, n_old))
    old.attrs = dict(panel_new.attrs)
    with tempfile.TemporaryDirectory() as tmp:
        fit_path = Path(tmp) / "fit.nc"
        save_fit(synthetic_fit(old, args.draws), fit_path)
        fit = load_fit(fit_path)

        # 1. the update itself, given the base filtered states
        inputs = build_inputs(panel_new, fit.options)
        params = emissions.params_from_posterior(fit.posterior, inputs)
        base = update.filter_history(params, update.slice_inputs(inputs, 0, n_old), fit.options.use_labels)
        update.psis_weights(np.random.default_rng(0).normal(size=100))  # import arviz_stats outside the timing

        def absorb() -> None:
            step = update.absorb_periods(params, inputs, n_old, base)
            log_w, _, _ = update.psis_weights(step.log_ratio)
            probabilities.scenario_table(np.exp(step.log_filtered_report), inputs.periods[n_old:], log_w)
            probabilities.forecast_from_filtered(
                step.log_filtered_report[:, -1], params, panel_new, fit.options, 12, log_weights=log_w
            )

        t_absorb = best_of(args.repeat, absorb)
        # 2. the whole update() call on the loaded fit
        result = update.update(fit, panel_new)
        t_update = best_of(args.repeat, lambda: update.update(fit, panel_new))
        tree = fit.tree.copy()
        del tree["filtered_state"]
        old_style = Fit(tree=tree)
        t_refilter = best_of(args.repeat, lambda: update.update(old_style, panel_new))
        # 3. the whole command in a fresh interpreter
        cmd = [sys.executable, "-c", COMMAND, "update", "--fit", str(fit_path), "--data", str(args.data)]

        def command() -> None:
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
            if done.returncode != 0 or "path: update" not in done.stdout:
                raise RuntimeError(f"forecast update did not update ({done.returncode}):\n{done.stdout}{done.stderr}")

        t_command = best_of(args.repeat, command)

    figures = {
        "draws": fit.n_draws, "fitted_periods": n_old, "new_periods": 1, "path": result.path,
        "pareto_k": result.pareto_k, "ess": result.ess,
        "absorb_seconds": t_absorb, "update_call_seconds": t_update, "update_call_refilter_seconds": t_refilter,
        "command_seconds": t_command,
    }
    print(f"{fit.n_draws} draws, {n_old} fitted periods + 1 new month (bundled data); path {result.path}, "
          f"k-hat {result.pareto_k:.2f}, ESS {result.ess:.0f}")
    print(f"update itself (forward step, PSIS, tables, 12-month forecast): {t_absorb * 1000:7.1f} ms")
    print(f"update() with the stored last filtered states:                {t_update * 1000:7.1f} ms")
    print(f"update() re-filtering the fitted periods (older fit files):   {t_refilter * 1000:7.1f} ms")
    print(f"'forecast update' command incl. interpreter start-up:        {t_command:7.2f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
