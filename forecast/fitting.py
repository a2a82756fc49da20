"""Fitting: sampler choice, initial values, the per-period log-likelihood, and the convergence gate.

:func:`fit` samples the model of :mod:`forecast.model` with NUTS and returns a :class:`forecast.fitfile.Fit`
whose ``converged`` flag is the verdict of :func:`check_convergence`. It never raises for non-convergence: a
fit that fails the gate says so, with the numbers, and the CLI exits 3.

Backends (``docs/model.md`` has the measured figures):

``numpyro`` (default)
    NumPyro's NUTS in float64 (JAX's x64 mode is enabled before JAX is first used), diagonal mass matrix, run by
    :func:`forecast.nuts.sample_nuts` on the density the mode search compiled (what
    ``pm.sample(nuts_sampler="numpyro")`` runs, without converting the model twice more); compiles in seconds
    from a cold start.
``nutpie``
    nutpie with the model compiled by PyTensor's JAX backend.
``pymc``
    PyMC's own NUTS with the model compiled by PyTensor's Numba backend (slow to compile cold).

Initial values are deterministic and shared by all chains, without jitter: the best posterior mode that
:func:`forecast.start.find_mode` reaches from a moment-based start labelled by the marker rule and from jittered
copies of it, so that every chain starts in the same labelling and in the best basin found (see
``docs/model.md``, "Identification" and "Fitting").
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from itertools import combinations
from typing import Any

import numpy as np
import xarray as xr

from forecast import emissions, hmm
from forecast.density import compile_density
from forecast.fitfile import Fit
from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation
from forecast.nuts import NutsDraws, sample_nuts
from forecast.priors import PriorSet, default_prior_set
from forecast.sampler_defaults import (
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_STARTS,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
    default_draws,
    default_target_accept,
)
from forecast.start import find_mode, initial_values

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "ESS_MIN",
    "RHAT_MAX",
    "check_convergence",
    "fit",
    "gate_advice",
    "label_switching_findings",
    "unvisited_modes",
]

#: Sampler backends ``fit`` accepts.
BACKENDS = ("numpyro", "nutpie", "pymc")
#: Convergence gate: largest acceptable rank-normalised split R-hat.
RHAT_MAX = 1.01
#: Convergence gate: smallest acceptable bulk and tail effective sample size.
ESS_MIN = 400.0
#: Two chains disagree on a period when their mean smoothed scenario probabilities are further apart than this
#: (total variation distance: half the sum of absolute differences; 1 means disjoint).
PATH_DISTANCE_MAX = 0.5
#: Two chains that disagree on more than this share of the periods are in different labellings.
PATH_DISAGREEMENT_MAX = 0.1
#: Posterior draws per chain used for the mean smoothed probabilities of each chain (label-switching check).
_PATH_DRAWS = 200


def _prepare_jax(chains: int) -> None:
    """Ask for float64 and one host device per chain before JAX first computes anything.

    NumPyro runs chains in parallel only when there is a device for every chain (with fewer it silently draws
    them one after another on one core), so the virtual device count is the chain count; XLA shares the
    machine's cores between them.
    """
    # read when JAX first initialises its CPU backend (not at import); without effect afterwards
    flag = f"--xla_force_host_platform_device_count={max(1, chains)}"
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import jax

    jax.config.update("jax_enable_x64", True)


def _resolve_options(panel: xr.Dataset, options: ModelOptions | None) -> ModelOptions:
    options = options or ModelOptions()
    kinds = panel["kind"].values.tolist() if "kind" in panel.coords else []
    levels = [s for s, k in zip(panel["signal"].values.tolist(), kinds, strict=True) if k == "level"]
    drivers = panel["driver"].values.tolist()
    if any(s not in options.level_center for s in levels) or any(d not in options.driver_center for d in drivers):
        options = estimate_standardisation(panel, options)
    return options




def fit(
    panel: xr.Dataset,
    *,
    priors: PriorSet | None = None,
    options: ModelOptions | None = None,
    seed: int,
    draws: int | None = None,
    tune: int = DEFAULT_TUNE,
    chains: int = DEFAULT_CHAINS,
    backend: str = "numpyro",
    target_accept: float | None = None,
    starts: int = DEFAULT_STARTS,
    catalog_text: str = "",
    data_sha256: str = "",
    progress: bool = True,
) -> Fit:
    """Fit the scenario model to a panel and run the convergence gate.

    Parameters
    ----------
    panel : xarray.Dataset
        From :func:`forecast.panel.build_panel` or :func:`forecast.simulate.simulate_panel`.
    priors : PriorSet, optional
        Prior set; the ``default`` set if None.
    options : ModelOptions, optional
        Structural options; standardisation constants are estimated from ``panel`` when missing.
    seed : int
        Seed of the sampler (the same seed, data and settings give the same draws).
    draws : int, optional
        Posterior draws per chain; by default 1000 for a monthly panel and 1500 for a quarterly one
        (:func:`forecast.sampler_defaults.default_draws`, from the panel's ``freq`` attribute).
    tune, chains : int
        Tuning steps per chain, number of chains.
    backend : {"numpyro", "nutpie", "pymc"}
        NUTS implementation.
    target_accept : float, optional
        NUTS target acceptance rate; by default 0.95 monthly and 0.97 quarterly
        (:func:`forecast.sampler_defaults.default_target_accept`).
    starts : int
        Optimisations of the posterior density before sampling (:func:`forecast.start.find_mode`): the moment
        start and ``starts − 1`` jittered copies; every chain starts at the best optimum. ``0`` starts the
        chains at the moment start itself.
    catalog_text : str
        The catalog TOML text, stored in the fit.
    data_sha256 : str
        Hash of the input data; defaults to the panel's ``data_sha256`` attribute.
    progress : bool
        Show the sampler's progress bar.

    Returns
    -------
    forecast.fitfile.Fit
        Posterior, sample statistics, per-period log-likelihood, log prior, panel, diagnostics and the gate's
        verdict (``converged``).

    Raises
    ------
    ConfigError
        For an unknown backend or bad settings.
    """
    from forecast.errors import ConfigError

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    freq = str(panel.attrs.get("freq", "M"))
    draws = default_draws(freq) if draws is None else draws
    target_accept = default_target_accept(freq) if target_accept is None else target_accept
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1), ("starts", starts, 0)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    if not 0.5 <= target_accept < 1.0:
        raise ConfigError(f"target_accept must be in [0.5, 1), got {target_accept!r}")
    priors = priors or default_prior_set()
    options = _resolve_options(panel, options)
    if backend in ("numpyro", "nutpie") or starts:
        _prepare_jax(chains)
    import pymc as pm

    from forecast.model import build_model

    inputs = build_inputs(panel, options)
    model = build_model(inputs, priors, options)
    density = compile_density(model) if backend == "numpyro" or starts else None
    start, search = find_mode(density or model, initial_values(inputs, priors), starts=starts, seed=seed)
    logger.info("fitting %d periods, %d signals, %d drivers: %s, %d chains × %d draws (+%d tune), seed %d",
                inputs.n_periods, len(inputs.signals), len(inputs.drivers), backend, chains, draws, tune, seed)
    sampler = {"backend": backend, "chains": int(chains), "draws": int(draws), "tune": int(tune),
               "target_accept": float(target_accept), "starts": int(starts), "mode_search": dict(search),
               "initial_values": (f"best of {starts} posterior-mode searches from the marker-labelled moment start"
                                  if starts else "marker-labelled moment start") + ", shared by all chains, no jitter"}
    kwargs: dict[str, Any] = dict(draws=draws, tune=tune, chains=chains, target_accept=target_accept,
                                  random_seed=seed, progressbar=progress, compute_convergence_checks=False,
                                  model=model)
    t0 = time.perf_counter()
    unvisited: list[str] = []
    if backend == "numpyro":
        # NumPyro's NUTS on the density the mode search compiled, as pm.sample(nuts_sampler="numpyro") runs it
        # (forecast.nuts); diagonal metric (docs/model.md)
        run = sample_nuts(density, start, draws=draws, tune=tune, chains=chains, target_accept=target_accept,
                          seed=seed, progress=progress)
        sampler.update(chain_method=run.chain_method, dense_mass=False)
        posterior, sample_stats, log_prior = _numpyro_groups(run, model, tune)
        unvisited = unvisited_modes(search, run.unconstrained_mean, run.unconstrained_sd,
                                    density.labels())
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ee]xplicit.*")
            if backend == "nutpie":
                idata = pm.sample(nuts_sampler="nutpie", initvals=start, compile_kwargs={"mode": "JAX"}, **kwargs)
            else:
                idata = pm.sample(nuts_sampler="pymc", initvals=start, init="adapt_diag",
                                  cores=min(chains, os.cpu_count() or 1), compile_kwargs={"mode": "NUMBA"},
                                  **kwargs)
        posterior = _group(idata, "posterior")
        sample_stats = _group(idata, "sample_stats")
        log_prior = _log_prior(idata, model)
    sampler["wall_seconds"] = round(time.perf_counter() - t0, 2)
    sampler["sampling_time"] = float(posterior.attrs.get("sampling_time", sampler["wall_seconds"]))
    if "diverging" not in sample_stats:
        sample_stats["diverging"] = xr.zeros_like(posterior["init_prob"].isel(scenario=0), dtype=bool)
    logger.info("sampled in %.1f s; computing per-period likelihoods and the convergence gate",
                sampler["wall_seconds"])

    log_lik, extra = _states_summary(posterior, panel, options)
    diagnostics = check_convergence(posterior, sample_stats, {**extra, "unvisited_modes": unvisited})
    if diagnostics["passed"]:
        logger.info("convergence gate passed: max R-hat %.3f, min ESS bulk %.0f, tail %.0f, 0 divergences",
                    diagnostics["max_rhat"], diagnostics["min_ess_bulk"], diagnostics["min_ess_tail"])
    else:
        logger.warning("convergence gate FAILED: %s", "; ".join(diagnostics["failures"]))
    return Fit.from_parts(
        posterior=posterior,
        sample_stats=sample_stats,
        log_likelihood=log_lik,
        log_prior=log_prior,
        panel=panel,
        data_sha256=data_sha256 or str(panel.attrs.get("data_sha256", "")),
        seed=int(seed),
        sampler=sampler,
        prior_set=priors.to_dict(),
        model_options=options,
        catalog=catalog_text,
        diagnostics=diagnostics,
        converged=bool(diagnostics["passed"]),
        filtered_state=extra["filtered_state"],
    )


def _group(idata: Any, name: str) -> xr.Dataset:
    node = idata[name]
    ds = node.to_dataset() if hasattr(node, "to_dataset") else node
    return ds.load()


def _states_summary(posterior: xr.Dataset, panel: xr.Dataset, options: ModelOptions):
    """Per-period log-likelihood (labels excluded), last filtered probabilities and per-chain smoothed means.

    Also each draw's last filtered state for the fit file's ``filtered_state`` group: given the evidence alone,
    and given what the posterior conditioned on (evidence plus analyst labels when ``options.use_labels``),
    from which an online update continues the filter.
    """
    from forecast.fitfile import filtered_state_group
    from forecast.update import filter_history

    inputs = build_inputs(panel, options)  # the labels enter only the conditioned state
    params = emissions.params_from_posterior(posterior, inputs)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    last = filter_history(params, inputs, options.use_labels)
    coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    log_lik = xr.Dataset({"y": (("chain", "draw", "period"), last.report_inc.reshape(chains, draws, -1))},
                         coords={**coords, "period": panel["period"].values})
    filtered_last = xr.DataArray(np.exp(last.report_last).reshape(chains, draws, -1),
                                 dims=("chain", "draw", "scenario"),
                                 coords={**coords, "scenario": posterior["scenario"].values})
    filtered_state = filtered_state_group(last.report_last, last.weight_last, chains=chains, draws=draws,
                                          period=panel["period"].values[-1],
                                          scenarios=posterior["scenario"].values.tolist())
    # each chain's mean smoothed probabilities, from an evenly spaced subset of its draws
    step = max(1, draws // _PATH_DRAWS)
    pick = (np.arange(chains)[:, None] * draws + np.arange(0, draws, step)[None, :]).ravel()
    sub = emissions.take_draws(params, pick)
    log_sm = hmm.smooth(emissions.log_initial(sub), emissions.transition_model(sub, inputs.x_std),
                        emissions.log_emission(sub, inputs))
    mean_sm = np.exp(log_sm).reshape(chains, -1, *log_sm.shape[1:]).mean(axis=1)  # (chain, T, K)
    return log_lik, {"filtered_last": filtered_last, "chain_smoothed": mean_sm,
                     "filtered_state": filtered_state}


def _numpyro_groups(run: NutsDraws, model: Any, tune: int) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """Posterior, sample statistics and log prior of a :func:`forecast.nuts.sample_nuts` run.

    Laid out as ``pm.sample`` lays them out: the model's dims and coordinates, chain and draw numbered from 0.
    """
    import numpyro
    from pymc.backends.arviz import coords_and_dims_for_inferencedata

    coords, dims = coords_and_dims_for_inferencedata(model)
    first = next(iter(run.values.values()))
    chain_draw = {"chain": np.arange(first.shape[0]), "draw": np.arange(first.shape[1])}
    posterior, log_prior = {}, {}
    for name, values in run.values.items():
        if name.startswith("log_prior:"):
            name = name.split(":", 1)[1]
            log_prior[name] = (("chain", "draw"), values.reshape((*values.shape[:2], -1)).sum(axis=-1))
            continue
        var_dims = dims.get(name) or [f"{name}_dim_{i}" for i in range(values.ndim - 2)]
        posterior[name] = (("chain", "draw", *var_dims), values)
    used = {d for _, (var_dims, _) in posterior.items() for d in var_dims}
    post = xr.Dataset(posterior, coords={**chain_draw, **{k: v for k, v in coords.items() if k in used}})
    post.attrs.update(sampling_time=run.sampling_time, tuning_steps=int(tune), inference_library="numpyro",
                      inference_library_version=numpyro.__version__)
    stats = xr.Dataset({k: (("chain", "draw"), v) for k, v in run.stats.items()}, coords=chain_draw)
    return post, stats, _log_prior_dataset(xr.Dataset(log_prior, coords=chain_draw))


def _log_prior(idata: Any, model: Any) -> xr.Dataset:
    """Log prior density of each free variable per draw (elementwise, summed over its own dims)."""
    import pymc as pm

    tree = pm.stats.compute_log_prior(idata, model=model, extend_inferencedata=False, progressbar=False)
    group = tree if isinstance(tree, xr.Dataset) else _group(tree, "log_prior")
    out = {}
    for name, da in group.data_vars.items():
        extra_dims = [d for d in da.dims if d not in ("chain", "draw")]
        out[str(name)] = da.sum(dim=extra_dims) if extra_dims else da
    return _log_prior_dataset(xr.Dataset(out))


def _log_prior_dataset(ds: xr.Dataset) -> xr.Dataset:
    """Add the total and the note to per-variable log prior densities (chain, draw)."""
    out = list(ds.data_vars)
    ds["total"] = sum(ds[name] for name in out)
    ds.attrs["note"] = ("log prior densities of the free variables on their constrained scale, without "
                        "Jacobians; 'total' is their sum")
    return ds


# -- the convergence gate -------------------------------------------------------------------------------------


def _element_names(name: str, da: xr.DataArray) -> list[str]:
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [name]
    labels = [[str(v) for v in (da[d].values if d in da.coords else range(da.sizes[d]))] for d in dims]
    grid = np.array(np.meshgrid(*[np.arange(len(lab)) for lab in labels], indexing="ij")).reshape(len(dims), -1).T
    return [f"{name}[{','.join(labels[k][i] for k, i in enumerate(idx))}]" for idx in grid]


def _diagnose(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from arviz_stats.base import array_stats

    flat = values.reshape(values.shape[0], values.shape[1], -1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = np.asarray(array_stats.rhat(flat, chain_axis=0, draw_axis=1, method="rank"), dtype=float)
        bulk = np.asarray(array_stats.ess(flat, chain_axis=0, draw_axis=1, method="bulk"), dtype=float)
        tail = np.asarray(array_stats.ess(flat, chain_axis=0, draw_axis=1, method="tail", prob=0.05), dtype=float)
    constant = np.ptp(flat, axis=(0, 1)) < 1e-12
    for arr in (rhat, bulk, tail):
        arr[constant] = np.nan
    return rhat.ravel(), bulk.ravel(), tail.ravel()


def label_switching_findings(posterior: xr.Dataset, chain_smoothed: np.ndarray | None = None) -> list[str]:
    """Evidence that chains sit in different labellings of the scenarios.

    Two checks: (1) each chain's posterior mean of every loading; two chains whose means both lie more than two
    within-chain standard deviations from 0 with opposite signs disagree on the sign structure; (2) each
    chain's mean smoothed scenario probabilities per period; two chains whose distributions are more than
    :data:`PATH_DISTANCE_MAX` apart (total variation) in more than :data:`PATH_DISAGREEMENT_MAX` of the periods
    tell different histories, as relabelled chains do. Comparing distributions rather than modal scenarios
    keeps periods where two scenarios are near 50/50 (whose mode flips between chains by Monte Carlo error
    alone) from raising a false alarm.

    Parameters
    ----------
    posterior : xarray.Dataset
        Posterior with ``loading`` (chain, draw, signal, effect).
    chain_smoothed : numpy.ndarray, optional
        (chain, T, K) mean smoothed scenario probabilities per chain and period.

    Returns
    -------
    list of str
        Human-readable findings; empty if the chains agree.
    """
    out: list[str] = []
    if "loading" in posterior and posterior.sizes.get("chain", 1) > 1:
        da = posterior["loading"]
        values = da.values.reshape(da.shape[0], da.shape[1], -1)
        mean = values.mean(axis=1)
        sd = values.std(axis=1) + 1e-12
        clear = np.abs(mean) > 2 * sd
        names = _element_names("loading", da)
        for a, b in combinations(range(values.shape[0]), 2):
            bad = np.flatnonzero(clear[a] & clear[b] & (np.sign(mean[a]) != np.sign(mean[b])))
            for k in bad[:3]:
                out.append(f"chains {a} and {b} disagree on the sign of {names[k]} "
                           f"({mean[a, k]:+.2f} vs {mean[b, k]:+.2f})")
    if chain_smoothed is not None and np.shape(chain_smoothed)[0] > 1:
        probs = np.asarray(chain_smoothed, dtype=float)
        for a, b in combinations(range(probs.shape[0]), 2):
            distance = 0.5 * np.abs(probs[a] - probs[b]).sum(axis=-1)
            share = float(np.mean(distance > PATH_DISTANCE_MAX))
            if share > PATH_DISAGREEMENT_MAX:
                out.append(f"chains {a} and {b} give different scenario histories: their smoothed probabilities "
                           f"differ by more than {PATH_DISTANCE_MAX:g} (total variation) in {share:.0%} of "
                           "periods")
    return out


def check_convergence(
    posterior: xr.Dataset,
    sample_stats: xr.Dataset,
    extra: dict[str, Any] | None = None,
    *,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
) -> dict[str, Any]:
    """The convergence gate: R-hat, bulk and tail ESS on every quantity, divergences, label switching.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with dims (chain, draw, ...); every variable is checked element by element.
    sample_stats : xarray.Dataset
        With ``diverging`` (chain, draw).
    extra : dict, optional
        ``filtered_last``: DataArray (chain, draw, scenario) of the last period's filtered probabilities
        (checked like a parameter); ``chain_smoothed``: (chain, T, K) mean smoothed probabilities per chain (label
        switching); ``unvisited_modes``: findings of :func:`unvisited_modes` (each one fails the gate).
    rhat_max, ess_min : float
        Thresholds (defaults :data:`RHAT_MAX`, :data:`ESS_MIN`).

    Returns
    -------
    dict
        ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` (with ``*_at`` naming the worst quantity),
        ``divergences``, ``label_switching`` (bool), ``multimodal`` (bool: a competing mode was not visited),
        ``failures`` (human-readable, with the numbers) and ``passed``. JSON-serialisable.
    """
    extra = extra or {}
    quantities: list[tuple[str, xr.DataArray]] = [(str(k), v) for k, v in posterior.data_vars.items()]
    if extra.get("filtered_last") is not None:
        quantities.append(("filtered_probability_last", extra["filtered_last"]))
    names: list[str] = []
    rhats, bulks, tails = [], [], []
    for name, da in quantities:
        dims = [d for d in da.dims if d not in ("chain", "draw")]
        da = da.transpose("chain", "draw", *dims)
        r, b, t = _diagnose(np.asarray(da.values, dtype=float))
        names += _element_names(name, da)
        rhats.append(r)
        bulks.append(b)
        tails.append(t)
    rhat = np.concatenate(rhats) if rhats else np.array([])
    bulk = np.concatenate(bulks) if bulks else np.array([])
    tail = np.concatenate(tails) if tails else np.array([])
    failures: list[str] = []
    out: dict[str, Any] = {"rhat_threshold": rhat_max, "ess_threshold": ess_min}

    def worst(arr: np.ndarray, fn) -> tuple[float, str]:
        if arr.size == 0 or not np.isfinite(arr).any():
            return float("nan"), ""
        k = int(fn(np.where(np.isfinite(arr), arr, np.nan)))
        return float(arr[k]), names[k]

    out["max_rhat"], out["max_rhat_at"] = worst(rhat, np.nanargmax)
    out["min_ess_bulk"], out["min_ess_bulk_at"] = worst(bulk, np.nanargmin)
    out["min_ess_tail"], out["min_ess_tail_at"] = worst(tail, np.nanargmin)
    n_chains = int(posterior.sizes.get("chain", 1))
    if n_chains < 2:
        failures.append("R-hat needs at least 2 chains (got 1)")
    for k in np.argsort(-np.nan_to_num(rhat, nan=-np.inf))[:5]:
        if np.isfinite(rhat[k]) and rhat[k] > rhat_max:
            failures.append(f"R-hat {rhat[k]:.3f} on {names[k]}")
    for label, arr in (("bulk", bulk), ("tail", tail)):
        for k in np.argsort(np.nan_to_num(arr, nan=np.inf))[:5]:
            if np.isfinite(arr[k]) and arr[k] < ess_min:
                failures.append(f"ESS {label} {arr[k]:.0f} on {names[k]}")
    divergences = int(np.asarray(sample_stats["diverging"].values).sum()) if "diverging" in sample_stats else 0
    out["divergences"] = divergences
    if divergences:
        failures.append(f"{divergences} divergences")
    switching = label_switching_findings(posterior, extra.get("chain_smoothed"))
    out["label_switching"] = bool(switching)
    failures += [f"label switching: {s}" for s in switching]
    unvisited = list(extra.get("unvisited_modes") or [])
    out["multimodal"] = bool(unvisited)
    failures += unvisited
    out["n_quantities"] = len(names)
    out["failures"] = failures
    out["passed"] = not failures
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


#: A competing posterior mode counts as unvisited when one of its coordinates lies further than this many
#: posterior standard deviations from the posterior mean (on the unconstrained scale).
MODE_Z_MAX = 6.0


def unvisited_modes(search: dict[str, Any], mean: np.ndarray, sd: np.ndarray, labels: list[str]) -> list[str]:
    """Competing posterior modes of the mode search that the chains never reached.

    All chains start at the best optimum of :func:`forecast.start.find_mode`, so R-hat cannot see a second mode
    of comparable height elsewhere. If the search found one (``search["alternatives"]``) and some coordinate of
    it lies more than :data:`MODE_Z_MAX` posterior standard deviations from the draws' mean, the posterior has
    more than one mode and the draws describe only the one they started in.

    Parameters
    ----------
    search : dict
        The mode search's summary (``best_neg_logp``, ``alternatives``).
    mean, sd : numpy.ndarray
        Posterior mean and standard deviation of each unconstrained coordinate.
    labels : list of str
        Coordinate names (``Density.labels``).

    Returns
    -------
    list of str
        Empty, or one gate failure that counts the unvisited modes and names the coordinate furthest away.
    """
    unvisited: list[tuple[float, float, str]] = []
    scale = np.maximum(np.asarray(sd, dtype=float), 1e-9)
    for alt in search.get("alternatives") or []:
        z = np.abs(np.asarray(alt["x"], dtype=float) - mean) / scale
        k = int(np.argmax(z))
        if z[k] > MODE_Z_MAX:
            unvisited.append((float(alt["neg_logp"]), float(z[k]), labels[k]))
    if not unvisited:
        return []
    values = sorted(v for v, _, _ in unvisited)
    _, z_far, where = max(unvisited, key=lambda item: item[1])
    span = f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f} to {values[-1]:.2f}"
    what = "another mode" if len(values) == 1 else f"{len(values)} other modes"
    return [f"multimodal posterior: the mode search found {what} (-log p {span}, against "
            f"{search['best_neg_logp']:.2f} where the chains started) that no chain reached ({where} lies "
            f"{z_far:.0f} posterior sd from the draws); the draws describe one mode only"]


#: R-hat above which chains are taken to disagree about where the posterior is, not just to be too short.
RHAT_DISAGREE = 1.05


def gate_advice(diagnostics: dict[str, Any], sampler: dict[str, Any] | None = None) -> list[str]:
    """What to try after a fit failed the convergence gate, from how it failed.

    Parameters
    ----------
    diagnostics : dict
        From :func:`check_convergence`.
    sampler : dict, optional
        The fit's sampler settings (``draws``, ``target_accept``, ``starts``), for concrete numbers.

    Returns
    -------
    list of str
        One line per remedy, most important first; empty when the fit passed.

    Notes
    -----
    Chains that disagree (label switching, or R-hat above :data:`RHAT_DISAGREE`) are a different problem from
    chains that agree but are too short: more draws do not reconcile chains in different modes. ESS grows about
    in proportion to the draws, so the advice for a short fit scales the draws to reach :data:`ESS_MIN` with a
    fifth to spare, rounded up to 500.
    """
    if diagnostics.get("passed"):
        return []
    sampler = sampler or {}
    advice = []
    rhat = diagnostics.get("max_rhat") or 1.0
    if diagnostics.get("label_switching") or rhat > RHAT_DISAGREE:
        starts = int(sampler.get("starts") or 0)
        advice.append(
            f"the chains disagree (R-hat {rhat:.2f}{', label switching' if diagnostics.get('label_switching') else ''})"
            f": the posterior may have several modes. Refit with more posterior-mode searches (--starts "
            f"{max(32, 2 * starts)}) or another --seed; if that persists, check the data (forecast data check) "
            "and the priors")
    if diagnostics.get("multimodal"):
        advice.append(
            "the posterior has more than one mode and these draws describe only the one the chains started in, "
            "so the probabilities depend on the start: compare fits with other --seed values, fit the monthly "
            "panel (more periods to tell the modes apart) or revise the priors (docs/model.md)")
    divergences = int(diagnostics.get("divergences") or 0)
    if divergences:
        target = float(sampler.get("target_accept") or DEFAULT_TARGET_ACCEPT)
        higher = min(0.99, round(target + (1 - target) / 2, 3))
        advice.append(f"{divergences} divergent transitions: the sampler's steps were too long somewhere; refit "
                      f"with a higher target acceptance (--target-accept {higher})")
    ess = [v for v in (diagnostics.get("min_ess_bulk"), diagnostics.get("min_ess_tail")) if v is not None]
    threshold = float(diagnostics.get("ess_threshold") or ESS_MIN)
    short = bool(ess) and min(ess) < threshold
    if short or RHAT_MAX < rhat <= RHAT_DISAGREE:
        draws = int(sampler.get("draws") or DEFAULT_DRAWS)
        factor = max(threshold / max(min(ess), 1.0), 1.0) if short else 1.5
        needed = int(np.ceil(draws * factor * 1.2 / 500.0) * 500)
        advice.append(f"the chains are too short for the gate (ESS {min(ess):.0f} against {threshold:.0f})"
                      if short else f"R-hat {rhat:.3f} is above {RHAT_MAX} with otherwise healthy chains")
        advice[-1] += f"; refit with more draws (--draws {max(needed, draws + 500)})"
    return advice

