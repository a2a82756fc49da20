"""Time the probability pipeline on a loaded fit: 4,000 draws x 430 monthly periods by default.

Run: ``.venv/bin/python benchmarks/bench_probabilities.py [--draws 4000] [--periods 430] [--repeat 5]``.
The fit is synthetic (known parameters with jitter, no MCMC), written to and loaded from a temporary fit file,
so the timing is that of ``compute_states`` + filtered, smoothed and forecast tables from a loaded fit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from forecast import probabilities as prob
from forecast.fitfile import load_fit, save_fit
from forecast.simulate import known_parameter_fit, simulate_panel


def bench_probabilities(draws: int = 4000, periods: int = 430, repeat: int = 5, seed: int = 0) -> dict[str, float]:
    """Median seconds of each step over ``repeat`` runs (after one warm-up run), printed and returned."""
    panel, _, params = simulate_panel(periods, seed=seed)
    chains = 4 if draws % 4 == 0 else 1
    fit = known_parameter_fit(panel, params, chains=chains, draws=draws // chains, jitter=0.05, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        fit = load_fit(save_fit(fit, Path(tmp) / "fit.nc"))
    steps = {
        "compute_states": lambda s: prob.compute_states(fit),
        "filtered_table": lambda s: prob.filtered_probabilities(s),
        "smoothed_table": lambda s: prob.smoothed_probabilities(s),
        "forecast_table_12": lambda s: prob.forecast_probabilities(s, 12),
    }
    extra = {
        "factor_table_filtered": lambda s: prob.factor_probabilities_table(s, "filtered"),
        "what_if_12": lambda s: prob.what_if(s, {"nk_nuclear_tests": {2: 1}}, 12),
        "filtered_table_weighted": lambda s: prob.filtered_probabilities(
            s, log_weights=-0.5 * (s.loglik_inc.sum(axis=1) - s.loglik_inc.sum(axis=1).mean()) / periods),
    }
    times: dict[str, list[float]] = {name: [] for name in [*steps, *extra, "total"]}
    for run in range(repeat + 1):
        states = None
        total = 0.0
        for name, step in {**steps, **extra}.items():
            started = time.perf_counter()
            result = step(states)
            elapsed = time.perf_counter() - started
            if name == "compute_states":
                states = result
            if run:
                times[name].append(elapsed)
            if name in steps:
                total += elapsed
        if run:
            times["total"].append(total)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"probabilities: {draws} draws x {periods} periods, median of {repeat} runs after a warm-up")
    for name, value in medians.items():
        note = " (compute_states + filtered + smoothed + forecast)" if name == "total" else ""
        print(f"  {name:26s} {value:7.3f} s  (min {min(times[name]):.3f}){note}")
    return medians


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--periods", type=int, default=430)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bench_probabilities(args.draws, args.periods, args.repeat)
