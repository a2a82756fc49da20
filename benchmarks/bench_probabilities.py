"""Time the probability pipeline: 4,000 draws x 430 monthly periods by default.

Run::

    .venv/bin/python benchmarks/bench_probabilities.py [--draws 4000] [--periods 430] [--repeat 5]
    .venv/bin/python benchmarks/bench_probabilities.py --fit FIT.nc [--repeat 5]

Without ``--fit`` the fit is synthetic (known parameters with jitter, no MCMC), written to and loaded from a
temporary fit file, and the timing is that of ``compute_states`` + filtered, smoothed and forecast tables on the
loaded fit, in one process after a warm-up run. With ``--fit`` the whole path from a real fit file is timed the
way a user meets it: each of ``--repeat`` fresh interpreters imports ``forecast`` (timed apart), then loads the
file (``load_fit``: read, checksum, checks), filters and smooths every draw and builds the filtered, smoothed and
12-period forecast tables once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bench_probabilities(draws: int = 4000, periods: int = 430, repeat: int = 5, seed: int = 0) -> dict[str, float]:
    """Median seconds of each step over ``repeat`` runs (after one warm-up run), printed and returned."""
    from forecast import probabilities as prob
    from forecast.fitfile import load_fit, save_fit
    from forecast.simulate import known_parameter_fit, simulate_panel

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


def bench_fit_file(path: Path, repeat: int = 5) -> dict[str, float]:
    """Median seconds of each step from a fit file over ``repeat`` fresh interpreters, printed and returned."""
    runs = []
    for _ in range(repeat):
        child = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                               check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    steps = ["import_s", "load_fit_s", "compute_states_s", "tables_s", "forecast_12_s", "total_s"]
    medians = {name: statistics.median(run[name] for run in runs) for name in steps}
    print(f"probabilities from {path} ({runs[0]['n_draws']} draws x {runs[0]['n_periods']} periods), "
          f"median of {repeat} fresh interpreters")
    for name in steps:
        note = " (load_fit + compute_states + tables + forecast)" if name == "total_s" else ""
        print(f"  {name:18s} {medians[name]:7.3f} s  (max {max(run[name] for run in runs):.3f}){note}")
    return medians


def _child(path: str) -> None:
    """One fresh-interpreter run of the pipeline from the fit file (``bench_fit.time_probabilities``)."""
    started = time.perf_counter()
    from bench_fit import time_probabilities

    import forecast.fitfile
    import forecast.probabilities  # noqa: F401

    imported = time.perf_counter() - started
    out = time_probabilities(Path(path))
    out["import_s"] = imported
    out["total_s"] = out["load_fit_s"] + out["compute_states_s"] + out["tables_s"] + out["forecast_12_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--periods", type=int, default=430)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fit", type=Path, help="time the path from this fit file in fresh interpreters")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
    elif args.fit:
        bench_fit_file(args.fit, args.repeat)
    else:
        bench_probabilities(args.draws, args.periods, args.repeat)
