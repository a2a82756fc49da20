#!/usr/bin/env python
"""Simulation-based calibration (SBC) of ``forecast.fitting.fit``.

Each replication draws one parameter vector θ̃ from the model's prior, simulates a panel from it with
``forecast.simulate.simulate_panel``, fits the panel with ``forecast.fitting.fit`` and records, for every key
scalar parameter, the rank of θ̃ among L thinned posterior draws. If the fit is calibrated (right model,
working sampler), every rank is uniform on 0..L (Talts et al. 2018, "Validating Bayesian inference algorithms
with simulation-based calibration"). Non-uniformity shows as a U shape (posterior too narrow), a hump (too
wide) or a slope (biased).

Run from the repository root::

    .venv/bin/python benchmarks/sbc.py --reps 30 --out sbc-results
    .venv/bin/python benchmarks/sbc.py --reps 30 --scheduler tcp://127.0.0.1:8786   # an existing Dask cluster
    .venv/bin/python benchmarks/sbc.py --reps 30 --workers 2                        # a local Dask cluster

Outputs in ``--out``: ``ranks.csv`` (one row per replication and parameter), ``uniformity.csv`` (chi-square
and Kolmogorov–Smirnov p-values per parameter), ``replications.csv`` (fit diagnostics per replication),
``rank_histograms.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

logger = logging.getLogger("sbc")

from forecast.inputs import ModelOptions  # noqa: E402
from forecast.sampler_defaults import DEFAULT_STARTS  # noqa: E402

#: Posterior variables whose elements are ranked (every element of each).
KEY_VARIABLES = ("intercept", "loading", "nb_alpha", "level_sigma", "stickiness", "driver_effect", "init_prob")


# -- ranks and uniformity ------------------------------------------------------------------------------------------


def thin_index(n_total: int, n_keep: int) -> np.ndarray:
    """Evenly spaced positions of ``n_keep`` draws among ``n_total`` (thinning reduces autocorrelation)."""
    if n_keep >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n_keep).round().astype(int))


def sbc_ranks(posterior: Any, truth: dict[str, np.ndarray], n_keep: int, rng: np.random.Generator) -> dict[str, int]:
    """Rank of each true scalar among ``n_keep`` thinned draws, ties broken at random.

    Parameters
    ----------
    posterior : xarray.Dataset
        Posterior draws, dims (chain, draw, ...); element labels come from its coordinates.
    truth : dict of str to numpy.ndarray
        Per variable, the true value with the trailing shape of the draws; NaN elements are skipped.
    n_keep : int
        Draws kept after pooling chains (L); ranks lie in 0..L.
    rng : numpy.random.Generator
        For tie-breaking (ties only occur for discrete or degenerate parameters).

    Returns
    -------
    dict of str to int
        ``"name[coord,coord]"`` to rank.
    """
    out: dict[str, int] = {}
    for name, value in truth.items():
        if name not in posterior:
            continue
        da = posterior[name]
        d = np.asarray(da.values, dtype=float)
        flat = d.reshape(-1, *d.shape[2:])  # chain-major pooling
        flat = flat[thin_index(flat.shape[0], n_keep)]
        value = np.asarray(value, dtype=float)
        dims = da.dims[2:]
        for idx in np.ndindex(value.shape):
            if not np.isfinite(value[idx]):
                continue
            sample = flat[(slice(None), *idx)]
            below = int((sample < value[idx]).sum())
            ties = int((sample == value[idx]).sum())
            rank = below + (int(rng.integers(0, ties + 1)) if ties else 0)
            parts = [str(da[dim].values[i]) if dim in da.coords else str(i) for dim, i in zip(dims, idx, strict=True)]
            out[name + (f"[{','.join(parts)}]" if parts else "")] = rank
    return out


def uniformity(ranks: pd.DataFrame, n_keep: int, n_bins: int) -> pd.DataFrame:
    """Chi-square and KS tests of uniformity of each parameter's ranks.

    Parameters
    ----------
    ranks : pandas.DataFrame
        Columns ``parameter`` and ``rank`` (0..L).
    n_keep : int
        L: ranks take L + 1 values.
    n_bins : int
        Histogram bins for the chi-square test (L + 1 should be divisible by it, so bins are equally likely).

    Returns
    -------
    pandas.DataFrame
        Per parameter: n, chi2, chi2_p, ks, ks_p, mean normalised rank.
    """
    rows = []
    for name, group in ranks.groupby("parameter", sort=False):
        r = group["rank"].to_numpy()
        counts = np.bincount(bin_of(r, n_keep, n_bins), minlength=n_bins)
        chi2, chi2_p = stats.chisquare(counts)
        # continuous version of the discrete ranks: (r + U) / (L + 1) is exactly Uniform(0, 1) under calibration
        u = (r + np.random.default_rng(len(r)).random(len(r))) / (n_keep + 1)
        ks = stats.kstest(u, "uniform")
        rows.append({"parameter": name, "n": len(r), "chi2": chi2, "chi2_p": chi2_p, "ks": ks.statistic,
                     "ks_p": ks.pvalue, "mean_u": float(((r + 0.5) / (n_keep + 1)).mean())})
    return pd.DataFrame(rows)


def bin_of(ranks: np.ndarray, n_keep: int, n_bins: int) -> np.ndarray:
    """Histogram bin of each rank when the L + 1 possible ranks are split into ``n_bins`` equal groups."""
    return (np.asarray(ranks) * n_bins) // (n_keep + 1)


def plot_rank_histograms(ranks: pd.DataFrame, n_keep: int, n_bins: int, path: Path, title: str) -> None:
    """Rank histograms with the 99% band of bin counts under uniformity (binomial quantiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = "all parameters pooled"
    names = [pooled, *dict.fromkeys(ranks["parameter"])]
    ncol = 6
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol, 1.9 * nrow), squeeze=False, sharex=True)
    for ax, name in zip(axes.ravel(), names, strict=False):
        r = ranks["rank"].to_numpy() if name == pooled else ranks.loc[ranks["parameter"] == name, "rank"].to_numpy()
        counts = np.bincount(bin_of(r, n_keep, n_bins), minlength=n_bins)
        lo, hi = stats.binom.ppf([0.005, 0.995], len(r), 1.0 / n_bins)
        ax.axhspan(lo, hi, color="0.85", lw=0)
        ax.axhline(len(r) / n_bins, color="0.5", lw=0.8)
        ax.bar(np.arange(n_bins), counts, width=0.9, color="#3a6ea5")
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    from forecast.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def ranked_truth(truth: dict[str, np.ndarray], panel: Any) -> dict[str, np.ndarray]:
    """The true values that are ranked: every key variable except the level signals' parameters."""
    kinds = np.asarray(panel["kind"].values).astype(str)
    counts = kinds == "count"
    out = {k: np.asarray(v) for k, v in truth.items() if k in KEY_VARIABLES and k != "level_sigma"}
    out["intercept"] = np.where(counts, out["intercept"], np.nan)
    out["loading"] = np.where(counts[:, None], out["loading"], np.nan)
    return out


# -- one replication -----------------------------------------------------------------------------------------------


def replicate(rep: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Draw θ̃ from the prior, simulate a panel, fit it, return the ranks and the fit's diagnostics."""
    from forecast.fitting import fit

    seed = int(settings["seed"]) * 1000 + rep
    rng = np.random.default_rng(seed)
    panel, truth = simulate_from_prior(settings["periods"], seed)
    t0 = time.perf_counter()
    result = fit(
        panel, seed=seed, draws=settings["draws"], tune=settings["tune"], chains=settings["chains"],
        options=ModelOptions(use_labels=False), progress=False, starts=settings["starts"],
    )
    elapsed = time.perf_counter() - t0
    posterior = result.posterior
    ranks = sbc_ranks(posterior, ranked_truth(truth, panel), settings["n_keep"], rng)
    diag = result.diagnostics
    _release_compiled()
    return {
        "rep": rep, "seed": seed, "seconds": elapsed, "converged": bool(result.converged),
        "max_rhat": diag.get("max_rhat"), "min_ess_bulk": diag.get("min_ess_bulk"),
        "divergences": diag.get("divergences"), "label_switching": diag.get("label_switching"),
        "multimodal": diag.get("multimodal"),
        "ranks": ranks,
    }


def _release_compiled() -> None:
    """Drop the compiled functions of the last fit: every fit compiles new XLA code, and after a few dozen fits
    in one process the accumulated code exhausts XLA's executable memory ("Unable to allocate section memory")."""
    import gc

    import jax

    gc.collect()
    jax.clear_caches()


def simulate_from_prior(n_periods: int, seed: int) -> tuple[Any, dict[str, np.ndarray]]:
    """A panel simulated from parameters drawn from the default prior, and those parameters.

    The returned truth is the simulator's: level-signal parameters are re-expressed for the panel's own
    standardisation (see :func:`forecast.simulate.simulate_panel`), so they are not prior draws on the fitted
    scale and are left out of the ranks (:data:`RANKED`).
    """
    from forecast.simulate import simulate_panel

    params = draw_prior(n_periods, seed)
    panel, _, true_params = simulate_panel(n_periods, seed=seed, params=params)
    return panel, {k: np.asarray(v) for k, v in true_params.items()}


def draw_prior(n_periods: int, seed: int) -> dict[str, np.ndarray]:
    """One draw of every model parameter from the default prior set of ``forecast.model``.

    The prior is the fitted model's own: :func:`forecast.model.build_model` on inputs of the simulator's
    default structure, sampled with ``pm.sample_prior_predictive`` (the inputs' values do not enter the prior).
    """
    import pymc as pm

    from forecast.inputs import build_inputs, estimate_standardisation
    from forecast.model import build_model
    from forecast.priors import default_prior_set
    from forecast.simulate import simulate_panel

    skeleton, _, _ = simulate_panel(n_periods, seed=seed)
    options = estimate_standardisation(skeleton, ModelOptions(use_labels=False))
    model = build_model(build_inputs(skeleton, options), default_prior_set(), options)
    with model:
        prior = pm.sample_prior_predictive(draws=1, random_seed=seed, var_names=list(KEY_VARIABLES))
    group = prior["prior"] if "prior" in prior.children else prior.prior
    return {name: np.asarray(group[name].values)[0, 0] for name in KEY_VARIABLES}


class PeerEngine:
    """Fits with the NumPyro peer (``numpyro_peer.py``: the same log density as ``forecast.model``), compiled once.

    ``forecast.fitting.fit`` builds and compiles a new model for every panel; the peer takes each replication's
    data as traced arguments of one compiled sampler, so a study of many replications costs one compilation.
    The start is the same as ``forecast.fitting.fit``'s: the best posterior mode found from the marker-labelled
    moment start and jittered copies of it (``forecast.start.find_mode``, with the replication's seed).
    """

    _STATIC = ("T", "count_index", "level_index", "partial_t", "partial_c", "partial_y", "partial_log_e",
               "n_level_obs")

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.mcmc = None

    def __call__(self, rep: int, settings: dict[str, Any]) -> dict[str, Any]:
        import arviz as az
        import jax
        from numpyro.infer import MCMC, NUTS
        from numpyro.infer.util import unconstrain_fn

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import numpyro_peer as peer

        from forecast.inputs import build_inputs, estimate_standardisation
        from forecast.priors import default_prior_set

        seed = int(settings["seed"]) * 1000 + rep
        rng = np.random.default_rng(seed)
        panel, truth = simulate_from_prior(settings["periods"], seed)
        options = estimate_standardisation(panel, ModelOptions(use_labels=False))
        inputs = build_inputs(panel, options)
        data = peer.prepare(inputs, use_labels=False)
        if data["partial_t"].size:
            raise ValueError("the peer engine assumes full exposure (the simulator's default coverage)")
        static = {k: data[k] for k in self._STATIC}
        dynamic = {k: jax.numpy.asarray(v) for k, v in data.items() if k not in self._STATIC}
        prior_set = default_prior_set().to_dict()
        priors = peer.numpyro_priors(prior_set)

        def model(dyn):
            peer.model({**static, **dyn}, inputs, priors)

        if self.mcmc is None:
            chains = settings["chains"]
            method = "parallel" if jax.local_device_count() >= min(chains, 2) and chains > 1 else "vectorized"
            self.mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=settings["tune"],
                             num_samples=settings["draws"], num_chains=chains, chain_method=method,
                             progress_bar=False, jit_model_args=True)
        # later replications reuse the compiled sampler: same structure, data passed as traced arguments
        start = {k: jax.numpy.asarray(v) for k, v in peer.initial_values(inputs, prior_set, options, seed,
                                                                            settings["starts"]).items()}
        unconstrained = unconstrain_fn(model, (dynamic,), {}, start)
        chains = settings["chains"]
        init = {k: jax.numpy.broadcast_to(v, (chains, *v.shape)) for k, v in unconstrained.items()}
        t0 = time.perf_counter()
        self.mcmc.run(jax.random.PRNGKey(seed), dynamic, init_params=init, extra_fields=("diverging",))
        samples = self.mcmc.get_samples(group_by_chain=True)
        elapsed = time.perf_counter() - t0
        posterior = peer.to_posterior(samples, inputs)
        rhat = az.rhat(posterior)
        max_rhat = float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars))
        divergences = int(np.asarray(self.mcmc.get_extra_fields(group_by_chain=True)["diverging"]).sum())
        ess = az.ess(posterior)
        min_ess = float(min(np.nanmin(ess[v].values) for v in ess.data_vars))
        ranks = sbc_ranks(posterior, ranked_truth(truth, panel), settings["n_keep"], rng)
        return {"rep": rep, "seed": seed, "seconds": elapsed, "converged": None, "max_rhat": max_rhat,
                "min_ess_bulk": min_ess, "divergences": divergences, "label_switching": None, "ranks": ranks}


# -- driver --------------------------------------------------------------------------------------------------------


def run_all(reps: Iterable[int], settings: dict[str, Any], scheduler: str | None, workers: int,
            on_result: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Run replications sequentially, on a local Dask cluster (``workers`` > 0) or on ``scheduler``.

    ``on_result`` is called with the results so far after every replication (the study's files are rewritten
    then, so a long study that is stopped keeps what it finished).
    """
    reps = list(reps)
    on_result = on_result or (lambda results: None)
    peer = settings.get("engine") == "peer"
    if peer or (scheduler is None and workers <= 0):  # in this process, one replication after another
        call = PeerEngine(settings) if peer else replicate
        out = []
        for i, rep in enumerate(reps):
            out.append(_safe(call, rep, settings))
            _progress(i + 1, len(reps), out[-1])
            on_result(out)
        return out
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [client.submit(_safe, replicate, rep, settings, pure=False) for rep in reps]
        out = []
        for i, future in enumerate(as_completed(futures)):
            out.append(future.result())
            _progress(i + 1, len(reps), out[-1])
            on_result(sorted(out, key=lambda r: r["rep"]))
        return sorted(out, key=lambda r: r["rep"])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _safe(fn: Callable[..., dict], rep: int, settings: dict[str, Any]) -> dict[str, Any]:
    try:
        return fn(rep, settings)
    except Exception as exc:  # a failed replication is reported, not hidden, and does not stop the study
        return {"rep": rep, "error": f"{type(exc).__name__}: {exc}", "ranks": {}}


def _progress(done: int, total: int, last: dict[str, Any]) -> None:
    what = last.get("error") or (f"{last['seconds']:.0f}s, converged={last['converged']}, "
                                 f"max R-hat {last['max_rhat']}, divergences {last['divergences']}")
    print(f"[sbc] {done}/{total} replication {last['rep']}: {what}", file=sys.stderr, flush=True)


def summarise(results: list[dict], settings: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write ranks, uniformity tests, diagnostics, the histogram PNG and a JSON summary to ``out``."""
    from forecast.atomic import write_text

    out.mkdir(parents=True, exist_ok=True)
    ok = [r for r in results if "error" not in r]
    ranks = pd.DataFrame([{"rep": r["rep"], "parameter": k, "rank": v} for r in ok for k, v in r["ranks"].items()])
    reps = pd.DataFrame([{k: v for k, v in r.items() if k != "ranks"} for r in results])
    write_text(out / "replications.csv", reps.to_csv(index=False))
    summary: dict[str, Any] = {"settings": settings, "replications": len(results), "failed": len(results) - len(ok)}
    if ranks.empty:
        write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        return summary
    write_text(out / "ranks.csv", ranks.to_csv(index=False))
    tests = uniformity(ranks, settings["n_keep"], settings["bins"])
    write_text(out / "uniformity.csv", tests.to_csv(index=False, float_format="%.4g"))
    n_par = len(tests)
    # Bonferroni over parameters: the family-wise 5% threshold for "this parameter is miscalibrated"
    threshold = 0.05 / n_par
    pooled_u = (ranks["rank"].to_numpy() + 0.5) / (settings["n_keep"] + 1)
    pooled_counts = np.bincount(bin_of(ranks["rank"].to_numpy(), settings["n_keep"], settings["bins"]),
                                minlength=settings["bins"])
    summary.update({
        "parameters": n_par,
        "bonferroni_threshold": threshold,
        "rejected_chi2": tests.loc[tests["chi2_p"] < threshold, "parameter"].tolist(),
        "rejected_ks": tests.loc[tests["ks_p"] < threshold, "parameter"].tolist(),
        "chi2_p_below_0.05": int((tests["chi2_p"] < 0.05).sum()),
        "ks_p_below_0.05": int((tests["ks_p"] < 0.05).sum()),
        "pooled_mean_u": float(pooled_u.mean()),
        "pooled_share_in_outer_10pct": float(((pooled_u < 0.05) | (pooled_u > 0.95)).mean()),
        "converged": (int(reps["converged"].fillna(False).astype(bool).sum())
                      if settings.get("engine", "fit") == "fit" and "converged" in reps else None),
        "max_rhat_above_1.05": int((reps["max_rhat"] > 1.05).sum()) if "max_rhat" in reps else None,
        # all ranks pooled: a coarse overall check (ranks of one replication are not independent of each other)
        "pooled_chi2_p": float(stats.chisquare(pooled_counts).pvalue),
        "median_seconds": float(reps["seconds"].median()) if "seconds" in reps else None,
        "outer_10pct_by_group": outer_share_by_group(ranks, reps, settings["n_keep"]),
    })
    plot_rank_histograms(
        ranks, settings["n_keep"], settings["bins"], out / "rank_histograms.png",
        f"SBC rank histograms: {len(ok)} replications, L = {settings['n_keep']}, "
        f"grey = 99% band under uniformity",
    )
    write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def outer_share_by_group(ranks: pd.DataFrame, reps: pd.DataFrame, n_keep: int) -> dict[str, dict[str, Any]]:
    """Share of ranks in the outer 10 % per parameter family, overall and split by the fit's convergence gate.

    A calibrated posterior puts 10 % of ranks there. The split shows whether an excess sits in fits that the gate
    rejects (which the toolkit marks as failed and never uses) or in fits it would publish. Replications without
    a gate verdict (the peer engine) count in "all" only.

    Parameters
    ----------
    ranks : pandas.DataFrame
        Columns ``rep``, ``parameter`` (``family[element]``) and ``rank`` (0..L).
    reps : pandas.DataFrame
        One row per replication with ``rep`` and, for the ``fit`` engine, ``converged``.
    n_keep : int
        L.

    Returns
    -------
    dict
        Per family (and ``"all"``): ``{"all": [share, n], "gate_passed": [share, n], "gate_failed": [share, n]}``.
    """
    u = (ranks["rank"].to_numpy() + 0.5) / (n_keep + 1)
    frame = ranks.assign(outer=(u < 0.05) | (u > 0.95), family=ranks["parameter"].str.split("[").str[0])
    gate = reps.set_index("rep")["converged"] if "converged" in reps else pd.Series(dtype=object)
    frame["gate"] = frame["rep"].map(gate)
    out: dict[str, dict[str, Any]] = {}
    for family, group in [("all", frame), *frame.groupby("family", sort=False)]:
        row: dict[str, Any] = {"all": [float(group["outer"].mean()), len(group)]}
        for label, value in (("gate_passed", True), ("gate_failed", False)):
            part = group[group["gate"].astype(object) == value]
            row[label] = [float(part["outer"].mean()) if len(part) else None, len(part)]
        out[str(family)] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--periods", type=int, default=60, help="periods per simulated panel")
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--tune", type=int, default=400)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--keep", type=int, default=99, help="L: thinned draws per rank (ranks 0..L)")
    parser.add_argument("--bins", type=int, default=5, help="rank-histogram bins (L + 1 divisible by it)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--starts", type=int, default=DEFAULT_STARTS,
                        help="posterior-mode searches before sampling (forecast.fit's starts; 0: the moment start)")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler")
    parser.add_argument("--workers", type=int, default=0, help="start a local Dask cluster with this many workers")
    parser.add_argument("--out", type=Path, default=Path("sbc-results"))
    parser.add_argument("--engine", choices=("fit", "peer"), default="fit",
                        help="fit: forecast.fitting.fit per replication; peer: the NumPyro peer, compiled once")
    parser.add_argument("--resummarise", type=Path, metavar="DIR",
                        help="rewrite the summary of an earlier study in DIR from its ranks.csv and "
                             "replications.csv (no fitting)")
    args = parser.parse_args(argv)
    if args.resummarise:
        return resummarise(args.resummarise)
    if (args.keep + 1) % args.bins:
        parser.error("--keep + 1 must be divisible by --bins so that every bin is equally likely")
    settings = {"periods": args.periods, "draws": args.draws, "tune": args.tune, "chains": args.chains,
                "n_keep": args.keep, "bins": args.bins, "seed": args.seed, "reps": args.reps, "engine": args.engine,
                "starts": args.starts}
    t0 = time.perf_counter()
    results = run_all(range(args.reps), settings, args.scheduler, args.workers,
                      on_result=lambda so_far: summarise(so_far, settings, args.out))
    summary = summarise(results, settings, args.out)
    summary["total_seconds"] = time.perf_counter() - t0
    print(json.dumps(summary, indent=2, default=str))
    return 0


def resummarise(out: Path) -> int:
    """Recompute ``summary.json``, ``uniformity.csv`` and the histograms of the study in ``out`` from its files."""
    previous = json.loads((out / "summary.json").read_text())
    ranks = pd.read_csv(out / "ranks.csv")
    reps = pd.read_csv(out / "replications.csv")
    results = []
    for row in reps.to_dict("records"):
        row = {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
        mine = ranks[ranks["rep"] == row["rep"]]
        results.append({**row, "ranks": dict(zip(mine["parameter"], mine["rank"], strict=True))})
    summary = summarise(results, previous["settings"], out)
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
