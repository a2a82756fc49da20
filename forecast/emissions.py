"""Emission and transition log-densities of the model, in NumPy, for many posterior draws at once.

The equations are those of ``docs/architecture.md``; this module is their NumPy statement, shared by the
probability code, the online update, the simulator and the fit's log-likelihood group, so that every consumer
scores a period identically. Parameters come as a dict of arrays with the posterior draws flattened onto a
leading axis N (:func:`params_from_posterior`):

=================  ==========  =========================================================================
key                shape       meaning
=================  ==========  =========================================================================
``intercept``      (N, S)      a_k per signal (log rate per full period, or standardised mean)
``loading``        (N, S, 3)   signed loadings on the effects (``us``, ``relations``, ``interaction``)
``nb_alpha``       (N, C)      negative-binomial dispersion φ (variance μ + μ²/φ) per count signal
``level_sigma``    (N, L)      Normal scale per level signal (standardised scale)
``stickiness``     (N, 4)      ρ_i, the extra log-odds of staying in scenario i
``driver_effect``  (N, D, 2)   γ per driver on the factors (``us``, ``relations``)
``init_prob``      (N, 4)      initial scenario distribution
=================  ==========  =========================================================================

Speed: every density is split into a state-independent part, computed once per draw and period, and a
state-dependent part written as matrix products over signals; the large outputs are returned as views of
time-major arrays, which the period loop of :mod:`forecast.hmm` reads fastest.
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr
from scipy.special import gammaln

from forecast.errors import ConfigError
from forecast.hmm import StickyTransitions, single_threaded_blas
from forecast.inputs import ModelInputs
from forecast.scenarios import EFFECT_MATRIX, EFFECTS, FACTOR_MATRIX, FACTORS, N_SCENARIOS, SCENARIOS

logger = logging.getLogger(__name__)

__all__ = [
    "PARAMETER_DIMS",
    "log_emission",
    "log_initial",
    "log_transitions",
    "log_transitions_from_x",
    "nbinom_logpmf",
    "normal_logpdf",
    "params_from_posterior",
    "take_draws",
    "transition_model",
]

#: Posterior variables and their dimensions after ``chain`` and ``draw`` (the fit file's contract).
PARAMETER_DIMS: dict[str, tuple[str, ...]] = {
    "intercept": ("signal",),
    "loading": ("signal", "effect"),
    "nb_alpha": ("count_signal",),
    "level_sigma": ("level_signal",),
    "stickiness": ("scenario",),
    "driver_effect": ("driver", "factor"),
    "init_prob": ("scenario",),
}

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Above this many distinct count values the negative-binomial normalising terms are computed cell by cell.
_MAX_DISTINCT_COUNTS = 256


def params_from_posterior(posterior: xr.Dataset, inputs: ModelInputs | None = None) -> dict[str, np.ndarray]:
    """Per-draw parameter arrays from a posterior, draws flattened to a leading axis.

    Parameters
    ----------
    posterior : xarray.Dataset
        The ``posterior`` group of a fit (dims ``chain``, ``draw`` then those of :data:`PARAMETER_DIMS`).
    inputs : ModelInputs, optional
        If given, signals and drivers are selected by name in the order of ``inputs`` (and a name the posterior
        lacks is a :class:`~forecast.errors.ConfigError`); otherwise the posterior's own order is kept.

    Returns
    -------
    dict of str to numpy.ndarray
        Arrays keyed as in :data:`PARAMETER_DIMS`, shape (N, ...) with N = chains × draws, chain-major.

    Raises
    ------
    ConfigError
        If a variable is missing or its coordinates do not match ``inputs``.
    """
    missing = [name for name in PARAMETER_DIMS if name not in posterior]
    if missing:
        raise ConfigError(f"posterior lacks variable(s) {', '.join(missing)}; is this a forecast fit?")
    order: dict[str, list[str]] = {
        "effect": list(EFFECTS), "factor": list(FACTORS), "scenario": list(SCENARIOS),
    }
    if inputs is not None:
        order.update(
            signal=list(inputs.signals), count_signal=list(inputs.count_signals),
            level_signal=list(inputs.level_signals), driver=list(inputs.drivers),
        )
    out: dict[str, np.ndarray] = {}
    for name, dims in PARAMETER_DIMS.items():
        da = posterior[name]
        lead = [d for d in ("chain", "draw") if d in da.dims]
        if set(da.dims) != set(lead) | set(dims):
            raise ConfigError(f"posterior variable {name!r} has dims {da.dims}, expected (chain, draw, {dims})")
        da = da.transpose(*lead, *dims)
        for dim in dims:
            if dim in order and dim in da.coords:
                have = [str(v) for v in da[dim].values.tolist()]
                want = order[dim]
                absent = [w for w in want if w not in have]
                if absent:
                    raise ConfigError(
                        f"posterior variable {name!r} has no {dim} {', '.join(absent)}: the fit was made with "
                        "other indicators; refit on this catalog"
                    )
                if have != want:
                    da = da.sel({dim: want})
        values = np.asarray(da.values, dtype=float)
        out[name] = values.reshape(-1, *values.shape[len(lead):])
    return out


#: Draws filtered together by the callers that run the filter over every draw of a fit: the per-draw arrays of
#: one chunk (a few (T, chunk, 4) temporaries) stay small and are reused, whatever the number of draws.
DRAW_CHUNK = 1000


def take_draws(params: dict[str, np.ndarray], index: np.ndarray | slice) -> dict[str, np.ndarray]:
    """Select draws (the leading axis) of every parameter array.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        As from :func:`params_from_posterior`.
    index : numpy.ndarray or slice
        Draw positions.

    Returns
    -------
    dict of str to numpy.ndarray
        The selected draws.
    """
    return {k: v[index] for k, v in params.items()}


def n_draws(params: dict[str, np.ndarray]) -> int:
    """Number of draws N in a parameter dict."""
    return int(params["intercept"].shape[0])


def nbinom_logpmf(y: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Negative-binomial log pmf with mean ``mu`` and dispersion ``alpha`` (variance ``mu + mu**2 / alpha``).

    Parameters
    ----------
    y, mu, alpha : numpy.ndarray
        Counts, means (> 0) and dispersions (> 0), broadcast together.

    Returns
    -------
    numpy.ndarray
        ``log p(y)``; equals ``scipy.stats.nbinom.logpmf(y, n=alpha, p=alpha / (alpha + mu))``.
    """
    y, mu, alpha = np.asarray(y, float), np.asarray(mu, float), np.asarray(alpha, float)
    return (
        gammaln(y + alpha) - gammaln(alpha) - gammaln(y + 1.0)
        + alpha * np.log(alpha) + y * np.log(mu) - (y + alpha) * np.log(mu + alpha)
    )


def normal_logpdf(z: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Normal log density.

    Parameters
    ----------
    z, mean, sigma : numpy.ndarray
        Values, means and scales (> 0), broadcast together.

    Returns
    -------
    numpy.ndarray
        ``log N(z; mean, sigma)``.
    """
    z, mean, sigma = np.asarray(z, float), np.asarray(mean, float), np.asarray(sigma, float)
    return -0.5 * _LOG_2PI - np.log(sigma) - 0.5 * ((z - mean) / sigma) ** 2


def log_emission(params: dict[str, np.ndarray], inputs: ModelInputs) -> np.ndarray:
    """Log density of each period's signals under each scenario, for every draw.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Per-draw parameters (:func:`params_from_posterior`), N draws.
    inputs : ModelInputs
        Model inputs of T periods.

    Returns
    -------
    numpy.ndarray
        (N, T, 4): ``sum_k log p(y_tk | s_t = j)`` over the observed signals of each period (masked cells
        contribute 0). Analyst labels are not included (:meth:`ModelInputs.label_log_evidence`). The array is a
        view of time-major memory.

    Notes
    -----
    Count signal k with full exposure contributes
    ``[lgamma(y + φ) − lgamma(φ) − lgamma(y + 1) + φ log φ] + [y η_s − (y + φ) log(exp(η_s) + φ)]`` with
    ``η_s = a + b·effects(s)``: the first bracket does not depend on the scenario, and the second is linear in
    per-draw (signal, scenario) tables, so all periods are scored by one matrix product. Cells with partial
    exposure E (coverage boundaries, rare) are scored directly with ``log μ = log E + η_s``.
    """
    n = n_draws(params)
    n_periods = inputs.n_periods
    left: list[np.ndarray] = []  # (T, m) period weights ...
    right: list[np.ndarray] = []  # ... times (N, m, K) per-draw tables: the scenario-dependent part
    left_si: list[np.ndarray] = []  # (T, m) ... times (N, m): the scenario-independent part
    right_si: list[np.ndarray] = []
    const = np.zeros(n_periods)
    partial_cells = None
    if inputs.count_signals:
        mask = inputs.count_mask.astype(float)
        y = inputs.y_count * mask
        alpha = params["nb_alpha"]  # (N, C)
        eta = _state_means(params, inputs.count_index)  # (N, C, K)
        log_alpha = np.log(alpha)
        log_mu_phi = np.logaddexp(eta, log_alpha[:, :, None])  # log(exp(η) + φ): full exposure
        full = inputs.full_exposure.astype(float)
        left += [y, -y * full, -full]
        right += [eta, log_mu_phi, alpha[:, :, None] * log_mu_phi]
        left_si.append(mask)
        right_si.append(alpha * log_alpha)
        const += (y * inputs.log_exposure * mask - gammaln(y + 1.0) * mask).sum(axis=1)
        partial_cells = (inputs.count_mask & (full == 0.0), y, eta, alpha, log_alpha)
    if inputs.level_signals:
        mask = inputs.level_mask.astype(float)
        z = inputs.z_level * mask
        sigma = params["level_sigma"]  # (N, L)
        mean = _state_means(params, inputs.level_index)  # (N, L, K)
        prec = 1.0 / sigma**2
        # log N = −½log2π − log σ − ½z²/σ² + z·m/σ² − ½m²/σ²
        left += [z, -0.5 * mask]
        right += [mean * prec[:, :, None], mean * mean * prec[:, :, None]]
        left_si += [-mask, -0.5 * z * z]
        right_si += [np.log(sigma), prec]
        const -= 0.5 * _LOG_2PI * mask.sum(axis=1)
    if not left:
        return np.zeros((n, n_periods, N_SCENARIOS))
    with single_threaded_blas():
        return _combine(left, right, left_si, right_si, const, inputs, params, partial_cells)


def _combine(left, right, left_si, right_si, const, inputs, params, partial_cells) -> np.ndarray:
    """Evaluate the products collected by :func:`log_emission`; (N, T, K) view of time-major memory."""
    out = _gemm_tn(np.concatenate(left, axis=1), np.concatenate(right, axis=1))  # (T, N, K)
    independent = _gemm_tn(np.concatenate(left_si, axis=1), np.concatenate(right_si, axis=1))  # (T, N)
    independent += const[:, None]
    if inputs.count_signals:
        mask_b = inputs.count_mask
        independent += _count_normaliser(inputs.y_count * mask_b, mask_b, params["nb_alpha"])
    out += independent[:, :, None]
    if partial_cells is not None:
        _add_partial_exposure(out, inputs, *partial_cells)
    return np.moveaxis(out, 0, 1)


def _add_partial_exposure(out, inputs, partial, y, eta, alpha, log_alpha) -> None:
    """Score count cells with partial exposure (0 < E < 1) directly: −(y + φ) log(E exp(η) + φ)."""
    for c in range(partial.shape[1]):
        rows = np.flatnonzero(partial[:, c])
        if rows.size == 0:
            continue
        log_mu = eta[None, :, c, :] + inputs.log_exposure[rows, c][:, None, None]  # (P, N, K)
        weight = y[rows, c][:, None, None] + alpha[None, :, c, None]
        out[rows] -= weight * np.logaddexp(log_mu, log_alpha[None, :, c, None])


def _state_means(params: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """(N, k, 4): a_k + b_k · effects(s) for the signals at ``index``."""
    a = params["intercept"][:, index]
    b = params["loading"][:, index, :]
    return a[:, :, None] + b @ EFFECT_MATRIX.T


def _gemm_tn(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``sum_c left[t, c] * right[n, c, ...]`` as one BLAS product, returned time-major (T, N, ...)."""
    n_periods, n_cols = left.shape
    rest = right.shape[2:]
    flat = np.moveaxis(right, 1, 0).reshape(n_cols, -1)
    return (left @ flat).reshape(n_periods, right.shape[0], *rest)


def _count_normaliser(y: np.ndarray, mask: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(T, N): ``sum_c mask · (lgamma(y + φ) − lgamma(φ))``, by distinct count value when counts are few."""
    values, codes = np.unique(y, return_inverse=True)
    codes = codes.reshape(y.shape)
    integral = np.all(values == np.round(values))
    if integral and values.size <= _MAX_DISTINCT_COUNTS:
        # g[v, n, c] for each distinct value v, then one-hot products over periods: T·V·N per signal
        g = gammaln(values[:, None, None] + alpha[None]) - gammaln(alpha)[None]  # (V, N, C)
        out = np.zeros((y.shape[0], alpha.shape[0]))
        for c in range(y.shape[1]):
            onehot = np.zeros((y.shape[0], values.size))
            rows = np.flatnonzero(mask[:, c])
            onehot[rows, codes[rows, c]] = 1.0
            out += onehot @ g[:, :, c]
        return out
    terms = gammaln(y[:, None, :] + alpha[None]) - gammaln(alpha)[None]  # (T, N, C)
    return (terms * mask[:, None, :]).sum(axis=2)


def log_initial(params: dict[str, np.ndarray]) -> np.ndarray:
    """Log initial scenario distribution per draw.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Per-draw parameters.

    Returns
    -------
    numpy.ndarray
        (N, 4) ``log init_prob``, renormalised against rounding.
    """
    p = np.asarray(params["init_prob"], dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(p / p.sum(axis=-1, keepdims=True))


def log_transitions(params: dict[str, np.ndarray], inputs: ModelInputs) -> np.ndarray:
    """Log transition matrices into every period, per draw.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Per-draw parameters, N draws.
    inputs : ModelInputs
        Model inputs; ``x_std`` row t shifts the transition into period t.

    Returns
    -------
    numpy.ndarray
        (N, T, 4, 4) with ``[n, t, i, j] = log P(s_t = j | s_{t-1} = i)``; row t = 0 is computed but unused.
        A view of time-major memory.
    """
    return log_transitions_from_x(params, inputs.x_std)


def log_transitions_from_x(params: dict[str, np.ndarray], x_std: np.ndarray) -> np.ndarray:
    """Log transition matrices for given standardised, lagged driver values.

    ``log P(s_t = j | s_{t-1} = i) = log_softmax_j(ρ_i [i = j] + sum_d x_td (γ_d,us u_j + γ_d,rel r_j))``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Per-draw parameters, N draws.
    x_std : numpy.ndarray
        (H, D) driver values shared by all draws, or (N, H, D) per draw, on the scale of
        :attr:`ModelInputs.x_std` (standardised ``log1p`` rates, already lagged).

    Returns
    -------
    numpy.ndarray
        (N, H, 4, 4) log transition matrices, rows normalised.
    """
    return transition_model(params, x_std).dense()


def transition_model(params: dict[str, np.ndarray], x_std: np.ndarray) -> StickyTransitions:
    """The transition matrices of :func:`log_transitions_from_x` in unexpanded form, for fast filtering.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Per-draw parameters, N draws.
    x_std : numpy.ndarray
        (H, D) or (N, H, D) standardised, lagged driver values.

    Returns
    -------
    forecast.hmm.StickyTransitions
        ``logits`` (N, H, 4) (a view of time-major memory) and ``stickiness`` (N, 4); accepted by every
        function of :mod:`forecast.hmm` in place of the dense array.
    """
    x = np.asarray(x_std, dtype=float)
    gamma = params["driver_effect"]  # (N, D, 2)
    n = gamma.shape[0]
    if x.shape[-1] != gamma.shape[1]:
        raise ValueError(f"x_std has {x.shape[-1]} drivers, the parameters {gamma.shape[1]}")
    shift_dk = gamma @ FACTOR_MATRIX.T  # (N, D, K): effect of each driver on the log-odds of entering j
    if x.ndim == 2:
        g = _gemm_tn(x, shift_dk)  # (H, N, K)
    elif x.ndim == 3 and x.shape[0] == n:
        g = np.einsum("nhd,ndk->hnk", x, shift_dk)
    else:
        raise ValueError(f"x_std must be (H, D) or (N={n}, H, D), got {x.shape}")
    return StickyTransitions(logits=np.moveaxis(g, 0, 1), stickiness=np.asarray(params["stickiness"], float))
