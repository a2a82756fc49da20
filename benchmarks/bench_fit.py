#!/usr/bin/env python
"""Benchmark ``forecast.fitting.fit`` against a hand-written NumPyro peer of the same model.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fit.py                 # bundled monthly data
    .venv/bin/python benchmarks/bench_fit.py --simulated     # a simulated panel of the same size
    .venv/bin/python benchmarks/bench_fit.py --json figures.json

Every measurement runs in a child process so that (a) "cold" really is cold: the child gets a fresh, empty
PyTensor compile directory and JAX compilation cache, and (b) peak memory is the child's own ``ru_maxrss``
(read with ``os.wait4`` on that child). Within the cold child the fit is repeated once; the second run is the
"warm" figure (its compiled XLA code comes from the child's JAX compilation cache). Measured per run: wall time
of ``fit(...)``, the sampler's own sampling time (``sampling_time``: NumPyro's ``MCMC.run`` including its JIT of
the sampler), minimum bulk and tail ESS over every scalar of every posterior variable (as the gate takes them),
minimum bulk ESS over the model parameters alone (the variables both ``forecast.fit`` and the peer report:
intercepts, loadings, dispersions, level noise, stickiness, driver effects, initial distribution) per second of
sampling, divergences and whether the convergence gate passed. The NumPyro peer (``numpyro_peer.py``) runs on
the same inputs with the same chains, draws, tuning and target acceptance, in its own cold child, also twice. A
quarterly fit (cold and warm) and, if ``forecast.probabilities`` exists, the time to compute probabilities from
the saved fit file are timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from forecast.sampler_defaults import (  # noqa: E402  (constants; imports nothing else)
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
    QUARTERLY_DRAWS,
    QUARTERLY_TARGET_ACCEPT,
    default_draws,
    default_target_accept,
)

RESULT_TAG = "BENCH_RESULT "


# -- panels ------------------------------------------------------------------------------------------------------


def load_panel(source: str, freq: str, seed: int) -> tuple[Any, str, str]:
    """Return (panel, catalog_text, data_sha256) for the bundled data or a simulated panel of the same size."""
    from forecast.dataset import load_dataset
    from forecast.panel import build_panel
    from forecast.paths import bundled_data_dir

    dataset = load_dataset(bundled_data_dir())
    bundled = build_panel(dataset, freq)
    catalog_text = _catalog_text(dataset)
    if source == "bundled":
        return bundled, catalog_text, dataset.sha256
    from forecast.simulate import simulate_panel

    panel, _, _ = simulate_panel(int(bundled.sizes["period"]), seed=seed)
    return panel, "", str(panel.attrs.get("data_sha256", ""))


def _catalog_text(dataset: Any) -> str:
    return str(getattr(dataset.catalog, "text", ""))


# -- statistics ----------------------------------------------------------------------------------------------------


def ess_summary(posterior: Any, variables: tuple[str, ...] | None = None) -> dict[str, float]:
    """Minimum bulk and tail ESS over every scalar of the posterior variables (ArviZ 1 rank-normalised).

    ``variables`` restricts them (default: every variable, as the convergence gate takes them).
    """
    import arviz as az
    import numpy as np

    if variables is not None:
        posterior = posterior[[v for v in variables if v in posterior.data_vars]]
    bulk = az.ess(posterior, method="bulk")
    tail = az.ess(posterior, method="tail")
    out = {"ess_bulk_min": float("inf"), "ess_tail_min": float("inf"), "ess_bulk_min_var": ""}
    for name in posterior.data_vars:
        b = np.asarray(bulk[name].values, dtype=float)
        t = np.asarray(tail[name].values, dtype=float)
        # a constant scalar (e.g. a fixed element) has undefined ESS; skip NaN
        if np.isfinite(b).any() and np.nanmin(b) < out["ess_bulk_min"]:
            out["ess_bulk_min"] = float(np.nanmin(b))
            out["ess_bulk_min_var"] = str(name)
        if np.isfinite(t).any():
            out["ess_tail_min"] = min(out["ess_tail_min"], float(np.nanmin(t)))
    return out


# -- child-process jobs --------------------------------------------------------------------------------------------


def job_forecast(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit with ``forecast.fitting.fit`` ``spec['repeat']`` times; optionally save and time probabilities."""
    from forecast.emissions import PARAMETER_DIMS
    from forecast.fitfile import save_fit
    from forecast.fitting import fit

    panel, catalog_text, sha = load_panel(spec["source"], spec["freq"], spec["seed"])
    runs = []
    result = None
    for i in range(spec["repeat"]):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fit(
            panel, seed=spec["seed"], draws=spec["draws"], tune=spec["tune"], chains=spec["chains"],
            target_accept=spec["target_accept"], catalog_text=catalog_text, data_sha256=sha, progress=False,
            backend=spec.get("backend", "numpyro"),
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        posterior = result.posterior
        sampling = _sampling_time(result)
        ess = ess_summary(posterior)
        key = ess_summary(posterior, tuple(PARAMETER_DIMS))
        runs.append({
            "run": "cold" if i == 0 else "warm",
            "wall_s": wall,
            "cpu_s": cpu,
            "sampling_s": sampling,
            **ess,
            "ess_bulk_min_key": key["ess_bulk_min"],
            "ess_bulk_per_s": key["ess_bulk_min"] / sampling if sampling else float("nan"),
            "divergences": int(result.sample_stats["diverging"].values.sum()),
            "gate_passed": bool(result.converged),
            "backend": spec.get("backend", "numpyro"),
            "chain_method": result.attr("sampler").get("chain_method"),
            "mean_leapfrog_steps": _mean_steps(result.sample_stats),
            "failures": list(result.diagnostics.get("failures", [])),
        })
        print(f"[forecast {spec['freq']} run {i}] wall {wall:.1f}s", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"runs": runs, "n_periods": int(panel.sizes["period"]),
                           "n_signals": int(panel.sizes["signal"]), "n_drivers": int(panel.sizes["driver"])}
    if spec.get("save") and result is not None:
        path = save_fit(result, spec["save"])
        out["fit_file_mb"] = path.stat().st_size / 1e6
        out["probabilities"] = time_probabilities(path)
    return out


def _mean_steps(sample_stats: Any) -> float | None:
    """Mean number of leapfrog steps (gradient evaluations) per draw, where the backend records it."""
    for name in ("n_steps", "tree_size"):
        if name in sample_stats:
            return float(sample_stats[name].mean())
    if "tree_depth" in sample_stats:
        return float((2.0 ** sample_stats["tree_depth"] - 1).mean())
    return None


def _sampling_time(fit_result: Any) -> float | None:
    for group in ("posterior", "sample_stats"):
        value = getattr(fit_result, group).attrs.get("sampling_time")
        if value is not None:
            return float(value)
    value = fit_result.attr("sampler").get("sampling_time") if "sampler" in fit_result.tree.attrs else None
    return float(value) if value is not None else None


def time_probabilities(path: Path) -> dict[str, float] | None:
    """Seconds to load a fit file and compute filtered, smoothed and forecast probabilities from it."""
    try:
        from forecast import probabilities as prob
    except ImportError:
        return None
    from forecast.fitfile import load_fit

    out = {}
    t0 = time.perf_counter()
    loaded = load_fit(path)
    out["load_fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    states = prob.compute_states(loaded)
    out["compute_states_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob.filtered_probabilities(states)
    prob.smoothed_probabilities(states)
    out["tables_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob.forecast_probabilities(states, horizon=12)
    out["forecast_12_s"] = time.perf_counter() - t0
    out["n_draws"] = loaded.n_draws
    out["n_periods"] = int(loaded.panel.sizes["period"])
    return out


def job_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the NumPyro peer on the same inputs ``spec['repeat']`` times."""
    sys.path.insert(0, str(HERE))
    import numpyro_peer

    panel, _, _ = load_panel(spec["source"], spec["freq"], spec["seed"])
    discrepancy = numpyro_peer.max_discrepancy(panel)
    if not discrepancy < 1e-8:
        raise RuntimeError(f"the NumPyro peer's log-likelihood differs from forecast's by {discrepancy:.3g}")
    runs = []
    for i in range(spec["repeat"]):
        t0, c0 = time.perf_counter(), time.process_time()
        res = numpyro_peer.run(
            panel, seed=spec["seed"], draws=spec["draws"] or default_draws(spec["freq"]), tune=spec["tune"],
            chains=spec["chains"], target_accept=spec["target_accept"] or default_target_accept(spec["freq"]),
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ess = ess_summary(res["posterior"])
        runs.append({
            "run": "cold" if i == 0 else "warm",
            "wall_s": wall,
            "cpu_s": cpu,
            "sampling_s": res["sampling_s"],
            **ess,
            "ess_bulk_min_key": ess["ess_bulk_min"],  # the peer's posterior holds only the model parameters
            "ess_bulk_per_s": ess["ess_bulk_min"] / res["sampling_s"],
            "divergences": int(res["divergences"]),
            "chain_method": res["chain_method"],
            "mean_leapfrog_steps": res.get("mean_leapfrog_steps"),
            "gate_passed": None,
            "failures": [],
        })
        print(f"[numpyro peer run {i}] wall {wall:.1f}s", file=sys.stderr, flush=True)
    return {"runs": runs, "n_periods": int(panel.sizes["period"]), "loglik_discrepancy": discrepancy}


JOBS = {"forecast": job_forecast, "peer": job_peer}


def run_child(spec: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    """Run one job in a child process with its compile caches in ``cache_dir``; add its peak memory."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = ",".join(
        f for f in (env.get("PYTENSOR_FLAGS", ""), f"compiledir={cache_dir / 'pytensor'}") if f
    )
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir / "jax")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    # both samplers get the host devices forecast.fitting asks for: one per chain (XLA shares the cores between
    # them; with fewer devices than chains NumPyro would run the chains vectorised on one device)
    if "xla_force_host_platform_device_count" not in env.get("XLA_FLAGS", ""):
        devices = max(1, int(spec.get("chains", 1)))
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark job {spec['job']} failed with exit code {proc.returncode}")
    payload = next(json.loads(line[len(RESULT_TAG):]) for line in lines if line.startswith(RESULT_TAG))
    payload["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    payload["process_s"] = elapsed
    payload["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    # other work on the machine slows every figure down: record the 1-minute load average around the job
    payload["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return payload


# -- report --------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    from forecast.fitfile import library_versions

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
            "platform": platform.platform(), "libraries": library_versions()}


def format_table(figures: dict[str, Any]) -> str:
    """A plain-text table of every run."""
    head = (f"{'what':<26}{'run':<6}{'wall s':>8}{'CPU s':>8}{'sample s':>10}{'ESS bulk':>10}{'ESS tail':>10}"
            f"{'key ESS':>9}{'ESS/s':>8}{'steps':>7}{'div':>6}{'gate':>6}{'peak MB':>9}")
    rows = [head, "-" * len(head)]
    for label, block in figures["results"].items():
        for run in block["runs"]:
            gate = "" if run["gate_passed"] is None else ("pass" if run["gate_passed"] else "FAIL")
            rows.append(
                f"{label:<26}{run['run']:<6}{run['wall_s']:>8.1f}{_f(run.get('cpu_s')):>8}{_f(run['sampling_s']):>10}"
                f"{run['ess_bulk_min']:>10.0f}{run['ess_tail_min']:>10.0f}{run['ess_bulk_min_key']:>9.0f}"
                f"{_f(run['ess_bulk_per_s'], 2):>8}"
                f"{_f(run.get('mean_leapfrog_steps')):>7}"
                f"{run['divergences']:>6}{gate:>6}{block['peak_rss_mb']:>9.0f}"
            )
    loads = {label: block.get("load_average") for label, block in figures["results"].items()}
    rows.append("")
    rows.append("1-min load average before/after each job (2 cores): "
                + ", ".join(f"{k} {v}" for k, v in loads.items()))
    ratio = figures.get("ess_per_s_ratio")
    if ratio:
        rows.append("")
        rows.append("min bulk ESS/s over the model parameters, forecast.fit ÷ NumPyro peer: "
                    + ", ".join(f"{k} {_f(v, 2)}" for k, v in ratio.items()))
    prob = figures["results"].get("forecast monthly", {}).get("probabilities")
    if prob:
        rows.append(
            f"probabilities from the saved fit ({prob['n_draws']} draws): load {prob['load_fit_s']:.2f}s, "
            f"states {prob['compute_states_s']:.2f}s, tables {prob['tables_s']:.2f}s, "
            f"12-period forecast {prob['forecast_12_s']:.2f}s"
        )
    for label, block in figures["results"].items():
        for run in block["runs"]:
            for failure in run.get("failures", []):
                rows.append(f"gate ({label}, {run['run']}): {failure}")
    return "\n".join(rows)


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def check_peer(source: str, seed: int) -> float:
    """Stop unless the peer is the same model: the same log joint density (priors included) as forecast.model."""
    sys.path.insert(0, str(HERE))
    import numpyro_peer

    panel, _, _ = load_panel(source, "M", seed)
    joint = numpyro_peer.joint_discrepancy(panel)
    print(f"[bench] peer vs forecast.model log joint density: max |difference| {joint:.2g}", file=sys.stderr)
    if not joint < 1e-5:
        raise SystemExit(f"the NumPyro peer is not the same model (log density differs by {joint:.3g})")
    return joint


def figures_header(argv: list[str] | None, settings: dict[str, Any]) -> dict[str, Any]:
    """What every figures file starts with: the command, when, where and with which settings.

    Draws and target acceptance left at forecast's per-frequency defaults are recorded as those defaults, per
    frequency, rather than as null.
    """
    settings = dict(settings)
    if settings.get("draws") is None:
        settings["draws"] = {freq: default_draws(freq) for freq in ("M", "Q")}
    if settings.get("target_accept") is None:
        settings["target_accept"] = {freq: default_target_accept(freq) for freq in ("M", "Q")}
    return {"command": " ".join([Path(sys.executable).name, "benchmarks/bench_fit.py", *(argv or sys.argv[1:])]),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
            "settings": settings}


def write_figures(path: Path | None, figures: dict[str, Any]) -> None:
    """Write the figures as JSON (atomically), if a path was asked for."""
    if path:
        from forecast.atomic import write_text

        write_text(path, json.dumps(figures, indent=2, default=str) + "\n")


def compare_seeds(seeds: list[int], common: dict[str, Any], peer_repeat: int, json_path: Path | None,
                  argv: list[str] | None) -> int:
    """ESS per second of ``forecast.fit`` against the peer on the monthly data, one pair of cold children per seed.

    A single run's ratio moves with the step size each warm-up happens to adapt and with the noise of a minimum
    ESS, so the comparison is summarised over seeds by the geometric mean of the ratios.
    """
    import math

    joint = check_peer(common["source"], seeds[0])
    rows: list[dict[str, Any]] = []
    figures = {**figures_header(argv, common), "seeds": rows, "peer_joint_discrepancy": joint}
    with tempfile.TemporaryDirectory(prefix="forecast-bench-") as tmp:
        for seed in seeds:
            spec = {**common, "seed": seed, "freq": "M"}
            print(f"[bench] seed {seed}: forecast.fit and the peer, fresh compile caches", file=sys.stderr, flush=True)
            ours = run_child({**spec, "job": "forecast", "repeat": 2}, Path(tmp) / f"forecast-{seed}")
            peer = run_child({**spec, "job": "peer", "repeat": peer_repeat}, Path(tmp) / f"peer-{seed}")
            row: dict[str, Any] = {"seed": seed, "load_average": [ours["load_average"], peer["load_average"]]}
            for a, b in zip(ours["runs"], peer["runs"], strict=False):
                row[a["run"]] = {"ratio": a["ess_bulk_per_s"] / b["ess_bulk_per_s"], "sampling_s": [
                    a["sampling_s"], b["sampling_s"]], "key_ess": [a["ess_bulk_min_key"], b["ess_bulk_min_key"]],
                    "steps": [a["mean_leapfrog_steps"], b["mean_leapfrog_steps"]]}
            rows.append(row)
            write_figures(json_path, figures)
    lines = [f"{'seed':>10}  {'run':<5}{'ratio':>7}{'sampling s (ours / peer)':>27}{'key ESS':>15}{'steps':>13}"]
    means = {}
    for run in ("cold", "warm"):
        ratios = [r[run]["ratio"] for r in rows if run in r]
        if ratios:
            means[run] = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        for r in rows:
            if run in r:
                v = r[run]
                lines.append(f"{r['seed']:>10}  {run:<5}{v['ratio']:>7.2f}{v['sampling_s'][0]:>13.1f} / "
                             f"{v['sampling_s'][1]:<11.1f}{v['key_ess'][0]:>7.0f} / {v['key_ess'][1]:<5.0f}"
                             f"{_f(v['steps'][0])} / {_f(v['steps'][1])}")
    figures["geometric_mean_ratio"] = means
    write_figures(json_path, figures)
    lines.append("geometric mean of the ESS/s ratio, forecast.fit ÷ NumPyro peer: "
                 + ", ".join(f"{k} {v:.2f}" for k, v in means.items()))
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulated", action="store_true", help="use a simulated panel of the bundled size")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--draws", type=int, default=None,
                        help=f"draws per chain (default: forecast's default for the panel's frequency, "
                             f"{DEFAULT_DRAWS} monthly and {QUARTERLY_DRAWS} quarterly)")
    parser.add_argument("--tune", type=int, default=DEFAULT_TUNE)
    parser.add_argument("--chains", type=int, default=DEFAULT_CHAINS)
    parser.add_argument("--target-accept", type=float, default=None,
                        help=f"NUTS target acceptance (default: forecast's default for the panel's frequency, "
                             f"{DEFAULT_TARGET_ACCEPT} monthly and {QUARTERLY_TARGET_ACCEPT} quarterly)")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-quarterly", action="store_true")
    parser.add_argument("--peer-repeat", type=int, default=2, help="peer runs in its child (1: cold only)")
    parser.add_argument("--backends", default="",
                        help="also fit the monthly data once with these other backends, comma-separated "
                             "(nutpie, pymc)")
    parser.add_argument("--seeds", default="",
                        help="compare ESS per second with the peer over these seeds, comma-separated (monthly "
                             "only: forecast.fit and the peer, cold and warm, per seed) and print the geometric "
                             "mean of the ratio")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        payload = JOBS[spec["job"]](spec)
        print(RESULT_TAG + json.dumps(payload), flush=True)
        return 0

    source = "simulated" if args.simulated else "bundled"
    if args.seeds:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        common = {"source": source, "draws": args.draws, "tune": args.tune, "chains": args.chains,
                  "target_accept": args.target_accept}
        return compare_seeds(seeds, common, args.peer_repeat, args.json, argv)
    joint = None if args.skip_peer else check_peer(source, args.seed)
    common = {"source": source, "seed": args.seed, "draws": args.draws, "tune": args.tune, "chains": args.chains,
              "target_accept": args.target_accept}
    results: dict[str, Any] = {}
    figures = {**figures_header(argv, common), "results": results, "peer_joint_discrepancy": joint}
    jobs = [("forecast monthly", {"job": "forecast", "freq": "M", "repeat": 2, "save": "fit.nc"}, "cache-forecast")]
    if not args.skip_peer:
        jobs.append(("numpyro peer monthly", {"job": "peer", "freq": "M", "repeat": args.peer_repeat}, "cache-peer"))
    for backend in filter(None, (b.strip() for b in args.backends.split(","))):
        jobs.append((f"forecast monthly ({backend})", {"job": "forecast", "freq": "M", "repeat": 1,
                                                        "backend": backend}, f"cache-{backend}"))
    if not args.skip_quarterly:
        jobs.append(("forecast quarterly", {"job": "forecast", "freq": "Q", "repeat": 2}, "cache-quarterly"))
    with tempfile.TemporaryDirectory(prefix="forecast-bench-") as tmp:
        tmp_path = Path(tmp)
        for label, job, cache in jobs:
            print(f"[bench] {label} ({source}), fresh compile caches", file=sys.stderr, flush=True)
            if "save" in job:
                job = {**job, "save": str(tmp_path / job["save"])}
            results[label] = run_child({**common, **job}, tmp_path / cache)
            if "numpyro peer monthly" in results:
                ours = {r["run"]: r["ess_bulk_per_s"] for r in results["forecast monthly"]["runs"]}
                peer = {r["run"]: r["ess_bulk_per_s"] for r in results["numpyro peer monthly"]["runs"]}
                figures["ess_per_s_ratio"] = {k: ours[k] / peer[k] for k in ours if peer.get(k)}
            write_figures(args.json, figures)  # after every job: a long run that is stopped keeps what it measured
    print(format_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
