"""The forecast model written directly in NumPyro: a peer to measure ``forecast.fitting.fit`` against.

Same data (``forecast.inputs.build_inputs`` on the same panel, standardisation estimated from it), same
likelihood (negative-binomial counts with exposure, Normal levels, 2×2 factor effects, driver-shifted sticky
transitions, analyst labels as soft evidence, states summed out by the forward algorithm) and the same priors as
``forecast.model`` with the default prior set (see :func:`model`). It is written the way one would write it by
hand for speed:

- float64 throughout (``jax_enable_x64``);
- the emission of every period under every scenario is one matrix product per term: state-independent
  constants are computed once outside the sampler, the state-dependent part is ``y @ eta`` (T, C)·(C, K) plus
  a time-free ``log(μ + φ)`` term for full-exposure cells and an explicit correction for the few partial-exposure
  cells;
- the forward filter is a ``jax.lax.scan`` whose step is one vector–matrix product in linear space with
  per-period normalisation (the scaled forward algorithm), so the log-likelihood is the sum of the log scale
  factors.

:func:`loglik_increments` returns log p(y_t | y_<t, θ) for given parameters, so the peer can be checked
against ``forecast.emissions`` + ``forecast.hmm`` before it is timed (``bench_fit.py`` does).
"""

from __future__ import annotations

import time
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import xarray as xr  # noqa: E402
from jax.scipy import special as jspecial  # noqa: E402
from jax.scipy.special import gammaln as jgammaln  # noqa: E402
from numpyro.infer import MCMC, NUTS, init_to_value  # noqa: E402
from scipy.special import gammaln  # noqa: E402

from forecast.inputs import ModelInputs, ModelOptions, build_inputs, estimate_standardisation  # noqa: E402
from forecast.sampler_defaults import DEFAULT_STARTS  # noqa: E402
from forecast.scenarios import EFFECT_MATRIX, EFFECTS, FACTOR_MATRIX, FACTORS, N_SCENARIOS, SCENARIOS  # noqa: E402

_LOG_2PI = float(np.log(2.0 * np.pi))


# -- data ----------------------------------------------------------------------------------------------------------


class _HalfNormalProbitTransform(dist.transforms.Transform):
    """``x = Q(Φ(y))``, Q the HalfNormal(1) quantile: ``forecast.model.HalfNormalProbit`` in JAX."""

    domain = dist.constraints.real
    codomain = dist.constraints.positive

    def __call__(self, y):
        neg, pos = jnp.minimum(y, 0.0), jnp.maximum(y, 0.0)
        low = jnp.sqrt(2.0) * jspecial.erfinv(jspecial.ndtr(neg))
        high = -jspecial.ndtri(0.5 * jspecial.ndtr(-pos))  # √2·erfcinv(Φ(−y))
        return jnp.where(y > 0.0, high, low)

    def _inverse(self, x):
        small, large = jnp.minimum(x, 1.0), jnp.maximum(x, 1.0)
        return jnp.where(x > 1.0, -jspecial.ndtri(jspecial.erfc(large / jnp.sqrt(2.0))),
                         jspecial.ndtri(jspecial.erf(small / jnp.sqrt(2.0))))

    def log_abs_det_jacobian(self, y, x, intermediates=None):
        return 0.5 * (x * x - y * y) - jnp.log(2.0)


class _ProbitPositive(dist.constraints._GreaterThan):
    def __init__(self) -> None:
        super().__init__(0.0)


_probit_positive = _ProbitPositive()


@dist.transforms.biject_to.register(_ProbitPositive)
def _probit_bijection(constraint: Any) -> _HalfNormalProbitTransform:
    return _HalfNormalProbitTransform()


class _ProbitHalfNormal(dist.HalfNormal):
    """HalfNormal sampled in probit coordinates, as forecast.model samples the loading magnitudes."""

    support = _probit_positive


def prepare(inputs: ModelInputs, use_labels: bool = True) -> dict[str, Any]:
    """Arrays the peer needs, with every state-independent term computed once (NumPy, outside the sampler)."""
    cm = inputs.count_mask.astype(float)
    y = inputs.y_count * cm
    log_e = inputs.log_exposure * cm
    full = inputs.full_exposure
    partial = np.nonzero(inputs.count_mask & ~full)
    lm = inputs.level_mask.astype(float)
    z = inputs.z_level * lm
    # a hard label's log 0 is floored as in forecast.model (exp(-1e4) is 0 in float64: the density is unchanged)
    label_ev = (np.maximum(inputs.label_log_evidence(), -1.0e4) if use_labels
                else np.zeros((inputs.n_periods, N_SCENARIOS)))
    return {
        "T": inputs.n_periods,
        "count_index": np.asarray(inputs.count_index),
        "level_index": np.asarray(inputs.level_index),
        "y": y,
        "cmask": cm,
        "y_full": y * full,
        "full": full.astype(float),
        "partial_t": partial[0],
        "partial_c": partial[1],
        "partial_y": y[partial],
        "partial_log_e": log_e[partial],
        # per period, sum_c mask·(y log E − lgamma(y + 1)): independent of parameters and states
        "count_const": (y * log_e - gammaln(y + 1.0) * cm).sum(axis=1),
        "z": z,
        "zz": z * z,
        "lmask": lm,
        "n_level_obs": float(lm.sum()),
        "x_std": inputs.x_std,
        "label_evidence": label_ev,
    }


# -- likelihood ----------------------------------------------------------------------------------------------------


def log_obs(params: dict[str, jnp.ndarray], data: dict[str, Any]) -> jnp.ndarray:
    """(T, K) log density of each period's signals under each scenario, labels added, as matrix products."""
    effects = jnp.asarray(EFFECT_MATRIX)  # (K, 3)
    eta = params["intercept"][:, None] + params["loading"] @ effects.T  # (S, K)
    out = jnp.zeros((data["T"], N_SCENARIOS))
    if data["count_index"].size:
        phi = params["nb_alpha"]  # (C,)
        eta_c = eta[data["count_index"]]  # (C, K)
        log_phi = jnp.log(phi)
        log_mu_phi = jnp.logaddexp(eta_c, log_phi[:, None])  # (C, K): log(μ + φ) at full exposure
        # state-independent, parameter-dependent: sum_c mask·(lgamma(y + φ) − lgamma(φ) + φ log φ)
        norm = (data["cmask"] * (jgammaln(data["y"] + phi) - jgammaln(phi) + phi * log_phi)).sum(axis=1)
        out = out + (norm + data["count_const"])[:, None]
        out = out + data["y"] @ eta_c - data["y_full"] @ log_mu_phi - data["full"] @ (phi[:, None] * log_mu_phi)
        if data["partial_t"].size:
            c = data["partial_c"]
            lm = eta_c[c] + data["partial_log_e"][:, None]  # (P, K)
            term = (data["partial_y"][:, None] + phi[c][:, None]) * jnp.logaddexp(lm, log_phi[c][:, None])
            out = out.at[data["partial_t"]].add(-term)
    if data["level_index"].size:
        sigma = params["level_sigma"]  # (L,)
        m = eta[data["level_index"]]  # (L, K)
        prec = 1.0 / sigma**2
        out = (
            out
            - (data["lmask"] @ jnp.log(sigma))[:, None]
            - 0.5 * (data["zz"] @ prec)[:, None]
            + data["z"] @ (m * prec[:, None])
            - 0.5 * data["lmask"] @ (m * m * prec[:, None])
        )
        out = out - 0.5 * _LOG_2PI * data["lmask"].sum(axis=1)[:, None]
    return out + data["label_evidence"]


def transition_matrices(params: dict[str, jnp.ndarray], data: dict[str, Any]) -> jnp.ndarray:
    """(T, K, K) transition probabilities into each period (row t = 0 unused)."""
    shift = params["driver_effect"] @ jnp.asarray(FACTOR_MATRIX).T  # (D, K)
    g = data["x_std"] @ shift  # (T, K)
    logits = g[:, None, :] + jnp.diag(params["stickiness"])[None]  # (T, i, j)
    return jax.nn.softmax(logits, axis=-1)


def forward(init_prob: jnp.ndarray, trans: jnp.ndarray, lobs: jnp.ndarray) -> jnp.ndarray:
    """Scaled forward algorithm with ``lax.scan``; returns (T,) log p(y_t | y_<t)."""
    m0 = lobs[0].max()
    u0 = init_prob * jnp.exp(lobs[0] - m0)
    s0 = u0.sum()

    def step(alpha, inp):
        a_t, lo_t = inp
        m = lo_t.max()
        u = (alpha @ a_t) * jnp.exp(lo_t - m)  # one vector–matrix product per period
        s = u.sum()
        return u / s, jnp.log(s) + m

    _, incs = jax.lax.scan(step, u0 / s0, (trans[1:], lobs[1:]))
    return jnp.concatenate([jnp.log(s0)[None] + m0, incs])


def loglik_increments(params: dict[str, Any], data: dict[str, Any]) -> jnp.ndarray:
    """(T,) one-step-ahead log predictive densities for one parameter set (labels included if prepared so)."""
    p = {k: jnp.asarray(v) for k, v in params.items()}
    return forward(p["init_prob"], transition_matrices(p, data), log_obs(p, data))


def max_discrepancy(panel: xr.Dataset, n_params: int = 3, seed: int = 0,
                    options: ModelOptions | None = None) -> float:
    """Largest |difference| of per-period log-likelihoods, peer vs ``forecast.emissions`` + ``forecast.hmm``.

    Evaluated at ``n_params`` random parameter sets (labels included in both), so that a peer that drifts from
    the package's likelihood is caught before it is timed.
    """
    from forecast import emissions, hmm

    options = estimate_standardisation(panel, options or ModelOptions())
    inputs = build_inputs(panel, options)
    rng = np.random.default_rng(seed)
    s, c, lv, d = len(inputs.signals), len(inputs.count_signals), len(inputs.level_signals), len(inputs.drivers)
    params = {
        "intercept": rng.normal(0.0, 1.0, (n_params, s)), "loading": rng.normal(0.0, 1.0, (n_params, s, 3)),
        "nb_alpha": rng.gamma(2.0, 2.0, (n_params, c)), "level_sigma": rng.gamma(2.0, 0.5, (n_params, lv)),
        "stickiness": rng.normal(3.0, 1.0, (n_params, N_SCENARIOS)),
        "driver_effect": rng.normal(0.0, 0.5, (n_params, d, 2)),
        "init_prob": rng.dirichlet(np.ones(N_SCENARIOS), n_params),
    }
    evidence = inputs.label_log_evidence() if options.use_labels else 0.0
    lobs = emissions.log_emission(params, inputs) + evidence
    _, reference = hmm.forward(emissions.log_initial(params), emissions.log_transitions(params, inputs), lobs)
    data = prepare(inputs, use_labels=options.use_labels)
    worst = 0.0
    for n in range(n_params):
        mine = np.asarray(loglik_increments({k: v[n] for k, v in params.items()}, data))
        worst = max(worst, float(np.abs(mine - reference[n]).max()))
    return worst


# -- model ---------------------------------------------------------------------------------------------------------

#: PyMC distribution names of the prior families and how to build their NumPyro counterparts from PyMC kwargs.
_DISTRIBUTIONS = {
    "Normal": lambda k: dist.Normal(k.get("mu", 0.0), k.get("sigma", 1.0)),
    "HalfNormal": lambda k: dist.HalfNormal(k.get("sigma", 1.0)),
    "Gamma": lambda k: dist.Gamma(k["alpha"], k["beta"]),
    "LogNormal": lambda k: dist.LogNormal(k.get("mu", 0.0), k.get("sigma", 1.0)),
    "Exponential": lambda k: dist.Exponential(k["lam"]),
    "HalfCauchy": lambda k: dist.HalfCauchy(k["beta"]),
    "InverseGamma": lambda k: dist.InverseGamma(k["alpha"], k["beta"]),
    "StudentT": lambda k: dist.StudentT(k["nu"], k.get("mu", 0.0), k.get("sigma", 1.0)),
    "Cauchy": lambda k: dist.Cauchy(k["alpha"], k["beta"]),
    "Laplace": lambda k: dist.Laplace(k["mu"], k["b"]),
    "Beta": lambda k: dist.Beta(k["alpha"], k["beta"]),
    "Dirichlet": lambda k: dist.Dirichlet(jnp.asarray(k["a"], dtype=float)),
}


def numpyro_priors(prior_set: dict[str, Any]) -> dict[str, Any]:
    """NumPyro distributions for the families of a serialised prior set (:meth:`PriorSet.to_dict`)."""
    out = {}
    for family, entry in prior_set["priors"].items():
        name = entry["dist"]
        if name not in _DISTRIBUTIONS:
            raise ValueError(f"the NumPyro peer has no counterpart of {name} (prior family {family})")
        out[family] = _DISTRIBUTIONS[name](entry.get("kwargs", {}))
    return out


def loading_layout(inputs: ModelInputs) -> dict[str, np.ndarray]:
    """Which loading entries are signed magnitudes, free, shrunk interactions or marker cross-loadings.

    Taken from ``forecast.model.loading_layout`` (plain index arrays, no PyMC objects), so that the peer cannot
    drift from the model's identification rule: a known sign d gives ``d·|β|``; an unknown sign
    ``β ~ Normal(0, τ_group)``; non-markers' interactions are free but shrunk (count signals only: level signals
    have no u·r term); a marker's own-factor loading is ``d·|β|`` and its cross-loadings are
    ``|β_own|·(scale·r + shift)`` with r ~ Beta.
    """
    from forecast.model import loading_layout as model_layout

    lay = model_layout(inputs)
    names = ("mag_signal", "mag_effect", "mag_sign", "free_signal", "free_effect", "inter_signal", "cross_signal",
             "cross_effect", "cross_owner", "cross_scale", "cross_shift")
    return {name: np.asarray(getattr(lay, name)) for name in names}


def sample_parameters(inputs: ModelInputs, priors: dict[str, Any]) -> dict[str, jnp.ndarray]:
    """Sample statements of ``forecast.model`` (same names, parameterisation and centring)."""
    lay = loading_layout(inputs)
    n_sig, n_cnt, n_lvl = len(inputs.signals), len(inputs.count_signals), len(inputs.level_signals)
    group_of = np.asarray(inputs.signal_group)
    plate = lambda d, n: d.expand([n]).to_event(1)  # noqa: E731

    intercept = jnp.zeros(n_sig)
    if n_cnt:
        mu_a = numpyro.sample("intercept_location", priors["intercept_location"])
        sd_a = numpyro.sample("intercept_scale", priors["intercept_scale"])
        # centred where many events pin the intercept, non-centred where few do (forecast.model.centred_intercepts)
        from forecast.model import centred_intercepts

        centred = centred_intercepts(inputs)
        a_count = jnp.zeros(n_cnt)
        if centred.any():
            a_c = numpyro.sample("count_intercept_centred", plate(dist.Normal(mu_a, sd_a), int(centred.sum())))
            a_count = a_count.at[np.flatnonzero(centred)].set(a_c)
        if not centred.all():
            z = numpyro.sample("count_intercept_std", plate(dist.Normal(0.0, 1.0), int((~centred).sum())))
            a_count = a_count.at[np.flatnonzero(~centred)].set(mu_a + sd_a * z)
        intercept = intercept.at[inputs.count_index].set(a_count)
    if n_lvl:
        a_level = numpyro.sample("level_intercept", plate(priors["level_intercept"], n_lvl))
        intercept = intercept.at[inputs.level_index].set(a_level)

    tau = numpyro.sample("loading_scale", plate(priors["loading_group_scale"], len(inputs.groups)))
    loading = jnp.zeros((n_sig, 3))
    if lay["mag_signal"].size:
        magnitude = numpyro.sample("loading_magnitude",
                                   _ProbitHalfNormal(tau[group_of[lay["mag_signal"]]]).to_event(1))
        loading = loading.at[lay["mag_signal"], lay["mag_effect"]].set(lay["mag_sign"] * magnitude)
    if lay["free_signal"].size:
        free = numpyro.sample("loading_free", dist.Normal(0.0, tau[group_of[lay["free_signal"]]]).to_event(1))
        loading = loading.at[lay["free_signal"], lay["free_effect"]].set(free)
    if lay["inter_signal"].size:
        inter = numpyro.sample("loading_interaction", plate(priors["interaction_loading"], lay["inter_signal"].size))
        loading = loading.at[lay["inter_signal"], 2].set(inter)
    if lay["cross_signal"].size:
        ratio = numpyro.sample("marker_ratio", plate(priors["marker_ratio"], lay["cross_signal"].size))
        loading = loading.at[lay["cross_signal"], lay["cross_effect"]].set(
            magnitude[lay["cross_owner"]] * (lay["cross_scale"] * ratio + lay["cross_shift"])
        )
    params = {
        "intercept": numpyro.deterministic("intercept", intercept),
        "loading": numpyro.deterministic("loading", loading),
        "stickiness": numpyro.sample("stickiness", plate(priors["stickiness"], N_SCENARIOS)),
        "driver_effect": numpyro.sample("driver_effect", priors["driver_effect"].expand([len(inputs.drivers), 2])
                                        .to_event(2)),
        "init_prob": numpyro.sample("init_prob", priors["init_prob"]),
    }
    if n_cnt:
        params["nb_alpha"] = numpyro.sample("nb_alpha", plate(priors["nb_alpha"], n_cnt))
    if n_lvl:
        params["level_sigma"] = numpyro.sample("level_sigma", plate(priors["level_sigma"], n_lvl))
    return params


def model(data: dict[str, Any], inputs: ModelInputs, priors: dict[str, Any]) -> None:
    """The forecast model in NumPyro: priors as ``forecast.model``, states summed out by :func:`forward`."""
    params = sample_parameters(inputs, priors)
    incs = forward(params["init_prob"], transition_matrices(params, data), log_obs(params, data))
    numpyro.factor("loglik", incs.sum())


def initial_values(inputs: ModelInputs, prior_set: dict[str, Any], options: ModelOptions, seed: int,
                   starts: int = DEFAULT_STARTS) -> dict[str, np.ndarray]:
    """The start of ``forecast.fitting.fit`` (same for every chain, no jitter): the best posterior mode that
    ``forecast.start.find_mode`` reaches from the marker-labelled moment start and jittered copies of it.

    Builds the PyMC model of ``forecast.model`` to search (outside the timed sampling).
    """
    from forecast.model import build_model
    from forecast.priors import PriorSet
    from forecast.start import find_mode
    from forecast.start import initial_values as moment_start

    priors = PriorSet.from_dict(prior_set)
    values, _ = find_mode(build_model(inputs, priors, options), moment_start(inputs, priors), starts=starts,
                          seed=seed)
    return values


def joint_discrepancy(panel: xr.Dataset, n_points: int = 3, seed: int = 0) -> float:
    """Largest |difference| of the log joint density (no Jacobians), peer vs ``forecast.model``, at prior draws.

    Imports PyMC (only here): the peer must be the same model, priors included, not just the same likelihood.
    """
    import pymc as pm
    from numpyro.infer.util import log_density
    from pytensor.tensor import constant as pt_constant

    from forecast.model import build_model
    from forecast.priors import default_prior_set

    options = estimate_standardisation(panel, ModelOptions())
    inputs = build_inputs(panel, options)
    prior_set = default_prior_set()
    pm_model = build_model(inputs, prior_set, options)
    logp = pm_model.compile_logp(jacobian=False)
    data = prepare(inputs, use_labels=options.use_labels)
    priors = numpyro_priors(prior_set.to_dict())
    with pm_model:
        prior = pm.sample_prior_predictive(draws=n_points, random_seed=seed)
    group = prior["prior"].to_dataset() if hasattr(prior, "children") else prior.prior
    worst = 0.0
    for i in range(n_points):
        point = {rv.name: np.asarray(group[rv.name].values[0, i]) for rv in pm_model.free_RVs}
        value_point = {}
        for rv in pm_model.free_RVs:
            transform = pm_model.rvs_to_transforms.get(rv)
            value = point[rv.name]
            if transform is not None:
                value = transform.forward(pt_constant(value), *rv.owner.inputs).eval()
            value_point[pm_model.rvs_to_values[rv].name] = np.asarray(value)
        ours, _ = log_density(model, (data, inputs, priors), {}, {k: jnp.asarray(v) for k, v in point.items()})
        worst = max(worst, abs(float(ours) - float(logp(value_point))))
    return worst


# -- running -------------------------------------------------------------------------------------------------------


def run(panel: xr.Dataset, *, seed: int, draws: int = 1000, tune: int = 1000, chains: int = 4,
        target_accept: float = 0.95, options: ModelOptions | None = None,
        prior_set: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample the peer on ``panel``; return the posterior (named as the fit file) and timings.

    Parameters
    ----------
    panel : xarray.Dataset
        A panel from ``build_panel`` or ``simulate_panel``.
    seed : int
        PRNG seed.
    draws, tune, chains : int
        As ``forecast.fitting.fit``.
    target_accept : float
        NUTS target acceptance.
    options : ModelOptions, optional
        Defaults to ``ModelOptions()`` with standardisation estimated from ``panel`` (as ``fit`` does).
    prior_set : dict, optional
        A serialised prior set; the ``default`` set if None.

    Returns
    -------
    dict
        ``posterior`` (xarray.Dataset, chain/draw first), ``sampling_s`` (seconds of ``MCMC.run``, JIT
        included, as PyMC's ``sampling_time``), ``divergences``, ``chain_method``, ``mean_leapfrog_steps``.
    """
    from forecast.priors import default_prior_set

    options = estimate_standardisation(panel, options or ModelOptions())
    inputs = build_inputs(panel, options)
    data = prepare(inputs, use_labels=options.use_labels)
    prior_set = prior_set or default_prior_set().to_dict()
    priors = numpyro_priors(prior_set)
    start = initial_values(inputs, prior_set, options, seed)
    # the sampler settings forecast.fitting uses: a diagonal mass matrix, one host device per chain when there are
    # enough devices (else vectorised chains)
    kernel = NUTS(model, target_accept_prob=target_accept, dense_mass=False, init_strategy=init_to_value(values=start))
    chain_method = "parallel" if jax.local_device_count() >= chains > 1 else "vectorized"
    mcmc = MCMC(kernel, num_warmup=tune, num_samples=draws, num_chains=chains, chain_method=chain_method,
                progress_bar=False)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), data=data, inputs=inputs, priors=priors, extra_fields=("diverging", "num_steps"))
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    sampling = time.perf_counter() - t0
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return {"posterior": to_posterior(samples, inputs), "sampling_s": sampling,
            "divergences": int(np.asarray(extra["diverging"]).sum()), "chain_method": chain_method,
            "mean_leapfrog_steps": float(np.asarray(extra["num_steps"]).mean())}


def to_posterior(samples: dict[str, Any], inputs: ModelInputs) -> xr.Dataset:
    """Posterior Dataset with the fit file's variable names, dims and coordinates."""
    coords = {"signal": list(inputs.signals), "effect": list(EFFECTS), "count_signal": list(inputs.count_signals),
              "level_signal": list(inputs.level_signals), "scenario": list(SCENARIOS),
              "driver": list(inputs.drivers), "factor": list(FACTORS)}
    from forecast.emissions import PARAMETER_DIMS

    data_vars = {}
    for name, dims in PARAMETER_DIMS.items():
        if name in samples:
            data_vars[name] = (("chain", "draw", *dims), np.asarray(samples[name]))
    ds = xr.Dataset(data_vars, coords={k: v for k, v in coords.items()})
    return ds.assign_coords(chain=np.arange(ds.sizes["chain"]), draw=np.arange(ds.sizes["draw"]))
