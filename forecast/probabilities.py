"""Scenario probabilities from a fit: filtered, smoothed, forecast and what-if, as tidy tables.

Every table is a summary over posterior draws: for each draw the scenario distribution is computed exactly
(forward filter, smoother or forecast of :mod:`forecast.hmm` with that draw's parameters), and the table reports
the mean over draws and a 90% equal-tailed credible interval. Draws can carry log weights (from an online
update or a prior reweighting); means and quantiles are then weighted.

Two readings of the past:

- **filtered** — ``P(s_t | y_1..t)``: what was knowable at the end of period t from the evidence up to then;
- **smoothed** — ``P(s_t | y_1..T)``: history reinterpreted in the light of everything observed since.

Both use the evidence (signals and drivers) alone, never the analyst labels, so that labels can be checked
against them. Forecasts start from the last observed period's filtered distribution and run the transitions
forward with future driver values: by default each driver's **baseline**, its average count per full period
over the last 12 observed periods; :func:`what_if` replaces chosen future values (a nuclear test two months
ahead, a surge of missile launches) and reports the difference from the baseline forecast.

Compute the per-draw states once with :func:`compute_states` and pass the result to every table function;
passing a :class:`~forecast.fitfile.Fit` instead recomputes them each time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecast import hmm
from forecast.emissions import (
    DRAW_CHUNK,
    log_emission,
    log_initial,
    n_draws,
    params_from_posterior,
    take_draws,
    transition_model,
)
from forecast.errors import ConfigError
from forecast.fitfile import Fit
from forecast.inputs import ModelInputs, ModelOptions, build_inputs, driver_rates
from forecast.scenarios import SCENARIOS, factor_probabilities

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINE_WINDOW",
    "INTERVAL",
    "StateDraws",
    "baseline_drivers",
    "compute_states",
    "factor_probabilities_table",
    "filtered_probabilities",
    "forecast_from_filtered",
    "forecast_probabilities",
    "scenario_table",
    "smoothed_probabilities",
    "what_if",
]

#: Credible interval reported in every table: 90%, equal-tailed.
INTERVAL: float = 0.90
#: Number of last observed periods averaged for the baseline future drivers.
BASELINE_WINDOW: int = 12
FACTOR_IDS: tuple[str, ...] = ("us_engaged", "relations_workable")


@dataclass(frozen=True)
class StateDraws:
    """Per-draw state distributions of a fit, the material of every table (and of updates and reports).

    Attributes
    ----------
    log_filtered : numpy.ndarray
        (N, T, 4) ``log P(s_t | y_1..t)`` per draw.
    log_smoothed : numpy.ndarray
        (N, T, 4) ``log P(s_t | y_1..T)`` per draw.
    loglik_inc : numpy.ndarray
        (N, T) ``log p(y_t | y_1..t-1)`` per draw (evidence only, no labels).
    params : dict of str to numpy.ndarray
        The N draws' parameters (:func:`forecast.emissions.params_from_posterior` layout).
    inputs : ModelInputs
        The model inputs of the fitted panel, labels removed.
    options : ModelOptions
        The fit's options (standardisation constants for future drivers).
    x_rate : numpy.ndarray
        (T, D) observed driver counts per full period (NaN outside coverage), for baselines.
    x_now : numpy.ndarray
        (T, D) standardised drivers before lagging (row t = period t's own value).
    freq : str
        ``"M"`` or ``"Q"``.
    draw_index : numpy.ndarray
        (N,) positions of these draws among the fit's flattened draws (chain-major).
    log_weights : numpy.ndarray or None
        (N,) log weights of the draws, None for equal weights.
    """

    log_filtered: np.ndarray
    log_smoothed: np.ndarray
    loglik_inc: np.ndarray
    params: dict[str, np.ndarray]
    inputs: ModelInputs
    options: ModelOptions
    x_rate: np.ndarray
    x_now: np.ndarray
    freq: str
    draw_index: np.ndarray
    log_weights: np.ndarray | None = None

    @property
    def n_draws(self) -> int:
        """Number of draws N."""
        return int(self.log_filtered.shape[0])

    @property
    def periods(self) -> pd.DatetimeIndex:
        """Period starts."""
        return pd.DatetimeIndex(self.inputs.periods)

    @property
    def drivers(self) -> tuple[str, ...]:
        """Driver ids."""
        return self.inputs.drivers

    def with_log_weights(self, log_weights: np.ndarray | None) -> StateDraws:
        """Return a copy whose draws carry ``log_weights`` (see :func:`compute_states`)."""
        return dataclasses.replace(self, log_weights=_check_weights(log_weights, self))


def compute_states(
    fit: Fit,
    *,
    max_draws: int | None = None,
    log_weights: np.ndarray | None = None,
    panel: Any = None,
) -> StateDraws:
    """Filter and smooth every posterior draw of a fit.

    Parameters
    ----------
    fit : Fit
        A fit (:func:`forecast.fitfile.load_fit`).
    max_draws : int, optional
        Use at most this many draws, evenly spaced over the chain-major flattened draws (deterministic).
    log_weights : numpy.ndarray, optional
        Log weights of the draws, either one per draw of the fit or one per selected draw.
    panel : xarray.Dataset, optional
        Score this panel instead of the fitted one (e.g. the fitted periods plus new ones), transformed with
        the fit's standardisation constants.

    Returns
    -------
    StateDraws
        Per-draw filtered and smoothed log probabilities, log-likelihood increments and what the tables need.
    """
    started = time.perf_counter()
    options = fit.options
    panel = fit.panel if panel is None else panel
    no_labels = dataclasses.replace(options, use_labels=False)
    inputs = build_inputs(panel, no_labels)
    params = params_from_posterior(fit.posterior, inputs)
    total = n_draws(params)
    if max_draws is not None and max_draws < total:
        if max_draws < 1:
            raise ConfigError(f"max_draws must be at least 1, got {max_draws}")
        index = np.unique(np.linspace(0, total - 1, max_draws).round().astype(int))
        params = take_draws(params, index)
    else:
        index = np.arange(total)
    n = index.size
    n_periods = inputs.n_periods
    k = len(SCENARIOS)
    # time-major storage (what the period loops produce), exposed as (N, T, ...) views
    log_filtered = np.empty((n_periods, n, k))
    log_smoothed = np.empty((n_periods, n, k))
    loglik_inc = np.empty((n_periods, n))
    with hmm.single_threaded_blas():
        for lo in range(0, n, DRAW_CHUNK):
            part = take_draws(params, slice(lo, lo + DRAW_CHUNK))
            f, inc, s = hmm.forward_backward(
                log_initial(part), transition_model(part, inputs.x_std), log_emission(part, inputs)
            )
            log_filtered[:, lo:lo + DRAW_CHUNK] = np.moveaxis(f, 1, 0)
            log_smoothed[:, lo:lo + DRAW_CHUNK] = np.moveaxis(s, 1, 0)
            loglik_inc[:, lo:lo + DRAW_CHUNK] = inc.T
            logger.debug("filtered and smoothed draws %d-%d of %d", lo + 1, min(n, lo + DRAW_CHUNK), n)
    x_now = build_inputs(panel, dataclasses.replace(no_labels, driver_lag=0)).x_std
    states = StateDraws(
        log_filtered=np.moveaxis(log_filtered, 0, 1), log_smoothed=np.moveaxis(log_smoothed, 0, 1),
        loglik_inc=loglik_inc.T, params=params,
        inputs=inputs, options=options, x_rate=driver_rates(panel), x_now=x_now,
        freq=str(panel.attrs.get("freq", "M")), draw_index=index,
    )
    if log_weights is not None:
        weights = np.asarray(log_weights, dtype=float)
        if weights.shape == (total,) and n != total:
            weights = weights[index]
        states = states.with_log_weights(weights)
    logger.info("state probabilities for %d draws x %d periods in %.2f s", n, n_periods,
                time.perf_counter() - started)
    return states


@dataclass(frozen=True)
class _DriverHistory:
    """What a forecast needs of the observed drivers (a :class:`StateDraws` has the same attributes)."""

    drivers: tuple[str, ...]
    options: ModelOptions
    x_rate: np.ndarray
    x_now: np.ndarray
    periods: pd.DatetimeIndex
    freq: str


def _driver_history(panel: Any, options: ModelOptions) -> _DriverHistory:
    unlagged = build_inputs(panel, dataclasses.replace(options, use_labels=False, driver_lag=0))
    return _DriverHistory(drivers=unlagged.drivers, options=options, x_rate=driver_rates(panel),
                          x_now=unlagged.x_std, periods=pd.DatetimeIndex(unlagged.periods),
                          freq=str(panel.attrs.get("freq", "M")))


def _states(fit_or_states: Fit | StateDraws, log_weights: np.ndarray | None) -> StateDraws:
    states = fit_or_states if isinstance(fit_or_states, StateDraws) else compute_states(fit_or_states)
    if log_weights is not None:
        states = states.with_log_weights(log_weights)
    return states


def _check_weights(log_weights: np.ndarray | None, states: StateDraws) -> np.ndarray | None:
    if log_weights is None:
        return None
    lw = np.asarray(log_weights, dtype=float)
    if lw.shape != (states.n_draws,):
        raise ConfigError(f"log_weights must have one entry per draw ({states.n_draws}), got shape {lw.shape}")
    if np.isnan(lw).any() or not np.isfinite(lw).any():
        raise ConfigError("log_weights must not be NaN and at least one must be finite")
    return lw


def _normalised_weights(log_weights: np.ndarray | None) -> np.ndarray | None:
    if log_weights is None:
        return None
    w = np.exp(log_weights - np.max(log_weights))
    return w / w.sum()


# -- summaries over draws ------------------------------------------------------------------------------------
def summarise_draws(values: np.ndarray, log_weights: np.ndarray | None = None,
                    interval: float = INTERVAL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and equal-tailed interval over the leading (draw) axis, optionally weighted.

    Parameters
    ----------
    values : numpy.ndarray
        (N, ...) per-draw values.
    log_weights : numpy.ndarray, optional
        (N,) log weights; None for equal weights.
    interval : float
        Central probability of the interval; ``0`` gives the median as both bounds.

    Returns
    -------
    mean, lower, upper : numpy.ndarray
        Each of shape ``values.shape[1:]``.

    Notes
    -----
    Quantiles interpolate linearly between order statistics; draw i (in sorted order, cumulative weight
    ``S_i``) sits at position ``(S_i − w_i) / (1 − w_N)``, which for equal weights is ``(i − 1)/(N − 1)``, the
    default of :func:`numpy.quantile`: equal weights and no weights give the same intervals. Draws of zero
    weight are dropped first, so all weight on one draw gives that draw's value as both bounds.
    """
    rest = values.shape[1:]
    w = _normalised_weights(log_weights)
    if w is not None:
        keep = w > 0  # draws without weight play no part, not even in the interpolation
        values, w = values[keep], w[keep]
    n = values.shape[0]
    flat = np.ascontiguousarray(np.moveaxis(values, 0, -1)).reshape(-1, n)  # (M, N): one row per cell
    q = np.array([(1.0 - interval) / 2.0, (1.0 + interval) / 2.0])
    if w is None:
        mean = flat.mean(axis=1)
        flat.sort(axis=1)
        pos = q * (n - 1)
        lo_i = np.floor(pos).astype(int)
        hi_i = np.minimum(lo_i + 1, n - 1)
        frac = pos - lo_i
        bounds = flat[:, lo_i] * (1.0 - frac) + flat[:, hi_i] * frac  # (M, 2)
    else:
        mean = flat @ w
        order = np.argsort(flat, axis=1)
        sorted_v = np.take_along_axis(flat, order, axis=1)
        sorted_w = w[order]
        cum = np.cumsum(sorted_w, axis=1)
        denom = 1.0 - sorted_w[:, -1:]
        pos = (cum - sorted_w) / np.where(denom > 0, denom, 1.0)
        bounds = np.empty((flat.shape[0], 2))
        rows = np.arange(flat.shape[0])
        for j, qq in enumerate(q):
            hi_i = np.minimum((pos < qq).sum(axis=1), n - 1)
            lo_i = np.maximum(hi_i - 1, 0)
            p_lo, p_hi = pos[rows, lo_i], pos[rows, hi_i]
            span = p_hi - p_lo
            frac = np.where(span > 0, (qq - p_lo) / np.where(span > 0, span, 1.0), 0.0)
            frac = np.clip(frac, 0.0, 1.0)
            bounds[:, j] = sorted_v[rows, lo_i] * (1.0 - frac) + sorted_v[rows, hi_i] * frac
    return mean.reshape(rest), bounds[:, 0].reshape(rest), bounds[:, 1].reshape(rest)


def scenario_table(probs: np.ndarray, periods: Any, log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Tidy table of per-draw scenario probabilities: weighted mean and 90% interval per period and scenario.

    Parameters
    ----------
    probs : numpy.ndarray
        (N, m, 4) per-draw probabilities.
    periods : array-like
        (m,) period starts.
    log_weights : numpy.ndarray, optional
        (N,) log weights of the draws; None for equal weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, ``scenario``, ``mean``, ``lower``, ``upper``.
    """
    return _table(pd.DatetimeIndex(periods), SCENARIOS, "scenario", probs, log_weights)


def _table(periods: pd.DatetimeIndex, labels: tuple[str, ...], label_name: str, probs: np.ndarray,
           log_weights: np.ndarray | None, horizon: np.ndarray | None = None) -> pd.DataFrame:
    """Tidy table from (N, T, L) per-draw probabilities."""
    mean, lower, upper = summarise_draws(probs, log_weights)
    n_periods, n_labels = mean.shape
    data: dict[str, Any] = {"period": np.repeat(periods.values, n_labels)}
    if horizon is not None:
        data["horizon"] = np.repeat(horizon, n_labels)
    data[label_name] = np.tile(np.array(labels, dtype=object), n_periods)
    data.update(mean=mean.ravel(), lower=lower.ravel(), upper=upper.ravel())
    return pd.DataFrame(data)


def filtered_probabilities(fit_or_states: Fit | StateDraws, *,
                           log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Filtered scenario probabilities: what the evidence up to each period said at the time.

    Parameters
    ----------
    fit_or_states : Fit or StateDraws
        A fit, or states from :func:`compute_states` (faster when making several tables).
    log_weights : numpy.ndarray, optional
        Per-draw log weights (override those carried by the states).

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, ``scenario``, ``mean``, ``lower``, ``upper`` (90% credible interval over draws),
        one row per period and scenario.
    """
    states = _states(fit_or_states, log_weights)
    return _table(states.periods, SCENARIOS, "scenario", np.exp(states.log_filtered), states.log_weights)


def smoothed_probabilities(fit_or_states: Fit | StateDraws, *,
                           log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Smoothed scenario probabilities: each period in the light of all the evidence.

    Parameters
    ----------
    fit_or_states : Fit or StateDraws
        A fit, or states from :func:`compute_states`.
    log_weights : numpy.ndarray, optional
        Per-draw log weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, ``scenario``, ``mean``, ``lower``, ``upper``.
    """
    states = _states(fit_or_states, log_weights)
    return _table(states.periods, SCENARIOS, "scenario", np.exp(states.log_smoothed), states.log_weights)


# -- forecasts -----------------------------------------------------------------------------------------------
def baseline_drivers(states: StateDraws | _DriverHistory, window: int = BASELINE_WINDOW) -> dict[str, float]:
    """Each driver's baseline future value: its mean count per full period over the last ``window`` periods.

    Periods outside the driver's coverage are skipped; a driver never observed in the window gets the mean
    of the standardisation (its historical typical value).

    Parameters
    ----------
    states : StateDraws
        States of a fit.
    window : int
        Number of last periods averaged.

    Returns
    -------
    dict of str to float
        Driver id to counts per period.
    """
    recent = states.x_rate[-window:]
    out = {}
    for j, name in enumerate(states.drivers):
        values = recent[:, j]
        values = values[np.isfinite(values)]
        if values.size:
            out[name] = float(values.mean())
        else:
            out[name] = float(np.expm1(states.options.driver_center[name]))
    return out


def _future_counts(states: StateDraws | _DriverHistory, horizon: int, drivers: Mapping[str, Mapping[Any, float]] | None,
                   ) -> np.ndarray:
    """(H, D) future driver counts per period: baseline, overridden by ``drivers``."""
    names = states.drivers
    base = baseline_drivers(states)
    counts = np.tile(np.array([base[d] for d in names], dtype=float), (horizon, 1))
    last = pd.Period(states.periods[-1], freq=states.freq)
    problems = []
    for name, values in (drivers or {}).items():
        if name not in names:
            problems.append(f"unknown driver {name!r} (drivers: {', '.join(names)})")
            continue
        for key, value in values.items():
            h = _horizon_of(key, last, states.freq)
            if h is None or not 1 <= h <= horizon:
                problems.append(f"{name}: {key!r} is not a period 1..{horizon} ahead of {last}")
                continue
            if not np.isfinite(value) or value < 0:
                problems.append(f"{name}: count {value!r} for {key!r} must be a number >= 0")
                continue
            counts[h - 1, names.index(name)] = float(value)
    if problems:
        raise ConfigError("bad future drivers: " + "; ".join(problems))
    return counts


def _horizon_of(key: Any, last: pd.Period, freq: str) -> int | None:
    """Horizon (1 = the period after the last observed one) of an int horizon or a period-like key."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return int(key)
    try:
        period = pd.Period(key, freq=freq)
    except (ValueError, TypeError):
        return None
    return int((period - last).n)


def _future_x_std(states: StateDraws | _DriverHistory, counts: np.ndarray) -> np.ndarray:
    """(H, D) standardised, lagged drivers of the transitions into the H future periods."""
    opts = states.options
    z = np.stack([(np.log1p(counts[:, j]) - opts.driver_center[d]) / opts.driver_scale[d]
                  for j, d in enumerate(states.drivers)], axis=1) if states.drivers else counts
    x_all = np.concatenate([states.x_now, z.reshape(counts.shape[0], -1)], axis=0)  # (T + H, D)
    n_periods = states.x_now.shape[0]
    rows = np.arange(n_periods, n_periods + counts.shape[0]) - opts.driver_lag
    out = np.zeros((counts.shape[0], x_all.shape[1]))
    ok = rows >= 0
    out[ok] = x_all[rows[ok]]
    return out


def _predict(history: StateDraws | _DriverHistory, params: dict[str, np.ndarray], log_last: np.ndarray,
             horizon: int, drivers: Mapping[str, Mapping[Any, float]] | None) -> np.ndarray:
    """(N, H, 4) per-draw forecast probabilities from the (N, 4) log filtered states of the last period."""
    if horizon < 1:
        raise ConfigError(f"horizon must be at least 1, got {horizon}")
    x_future = _future_x_std(history, _future_counts(history, horizon, drivers))
    return np.exp(hmm.predict(log_last, transition_model(params, x_future)))


def _forecast_draws(states: StateDraws, horizon: int,
                    drivers: Mapping[str, Mapping[Any, float]] | None) -> np.ndarray:
    """(N, H, 4) per-draw forecast probabilities from the states' last period."""
    return _predict(states, states.params, states.log_filtered[:, -1, :], horizon, drivers)


def _future_periods(states: StateDraws | _DriverHistory, horizon: int) -> pd.DatetimeIndex:
    last = pd.Period(states.periods[-1], freq=states.freq)
    return pd.DatetimeIndex([(last + h).start_time for h in range(1, horizon + 1)]).astype("datetime64[ns]")


def forecast_probabilities(fit_or_states: Fit | StateDraws, horizon: int = 12,
                           drivers: Mapping[str, Mapping[Any, float]] | None = None, *,
                           log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Scenario probabilities 1..``horizon`` periods after the last observed one.

    Parameters
    ----------
    fit_or_states : Fit or StateDraws
        A fit, or states from :func:`compute_states`.
    horizon : int
        Number of periods ahead.
    drivers : mapping, optional
        Future driver counts overriding the baseline (:func:`baseline_drivers`):
        ``{driver_id: {horizon_or_period: count}}`` with horizon 1 = the next period, or a period such as
        ``"2026-03"``.
    log_weights : numpy.ndarray, optional
        Per-draw log weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, ``horizon``, ``scenario``, ``mean``, ``lower``, ``upper``.
    """
    states = _states(fit_or_states, log_weights)
    probs = _forecast_draws(states, horizon, drivers)
    return _table(_future_periods(states, horizon), SCENARIOS, "scenario", probs, states.log_weights,
                  horizon=np.arange(1, horizon + 1))


def forecast_from_filtered(log_filtered_last: np.ndarray, params: dict[str, np.ndarray], panel: Any,
                           options: ModelOptions, horizon: int = 12,
                           drivers: Mapping[str, Mapping[Any, float]] | None = None, *,
                           log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Scenario probabilities 1..``horizon`` periods after ``panel``'s last period, from given filtered states.

    The forecast of :func:`forecast_probabilities` for states that were not computed by
    :func:`compute_states`, e.g. those of an online update that absorbed new periods: the same baseline
    future drivers (:func:`baseline_drivers` of ``panel``), the same overrides, the same summaries.

    Parameters
    ----------
    log_filtered_last : numpy.ndarray
        (N, 4) per-draw log filtered probabilities of ``panel``'s last period.
    params : dict of str to numpy.ndarray
        The N draws' parameters (:func:`forecast.emissions.params_from_posterior`).
    panel : xarray.Dataset
        The panel the forecast starts from (observed drivers and their baseline).
    options : ModelOptions
        The fit's options (driver lag and standardisation constants).
    horizon : int
        Number of periods ahead.
    drivers : mapping, optional
        Future driver counts overriding the baseline, as for :func:`forecast_probabilities`.
    log_weights : numpy.ndarray, optional
        (N,) per-draw log weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, ``horizon``, ``scenario``, ``mean``, ``lower``, ``upper``.
    """
    log_last = np.asarray(log_filtered_last, dtype=float)
    n = log_last.shape[0]
    if log_weights is not None:
        log_weights = np.asarray(log_weights, dtype=float)
        if log_weights.shape != (n,):
            raise ConfigError(f"log_weights must have one entry per draw ({n}), got shape {log_weights.shape}")
    history = _driver_history(panel, options)
    probs = _predict(history, params, log_last, horizon, drivers)
    return _table(_future_periods(history, horizon), SCENARIOS, "scenario", probs, log_weights,
                  horizon=np.arange(1, horizon + 1))


def factor_probabilities_table(fit_or_states: Fit | StateDraws, kind: str = "filtered", *, horizon: int = 12,
                               drivers: Mapping[str, Mapping[Any, float]] | None = None,
                               log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Factor probabilities: P(US engaged) and P(ROK–Japan relations workable).

    Parameters
    ----------
    fit_or_states : Fit or StateDraws
        A fit, or states from :func:`compute_states`.
    kind : {"filtered", "smoothed", "forecast"}
        Which scenario probabilities to sum.
    horizon : int
        Forecast horizon (``kind="forecast"``).
    drivers : mapping, optional
        Future drivers (``kind="forecast"``), as for :func:`forecast_probabilities`.
    log_weights : numpy.ndarray, optional
        Per-draw log weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, (``horizon`` for forecasts), ``factor`` (``us_engaged``, ``relations_workable``),
        ``mean``, ``lower``, ``upper``. Sums are taken per draw before summarising, so the intervals are those
        of the factor probability itself.
    """
    states = _states(fit_or_states, log_weights)
    horizon_col = None
    if kind == "filtered":
        probs, periods = np.exp(states.log_filtered), states.periods
    elif kind == "smoothed":
        probs, periods = np.exp(states.log_smoothed), states.periods
    elif kind == "forecast":
        probs, periods = _forecast_draws(states, horizon, drivers), _future_periods(states, horizon)
        horizon_col = np.arange(1, horizon + 1)
    else:
        raise ConfigError(f"kind must be 'filtered', 'smoothed' or 'forecast', got {kind!r}")
    factors = factor_probabilities(probs)
    stacked = np.stack([factors[f] for f in FACTOR_IDS], axis=-1)
    return _table(periods, FACTOR_IDS, "factor", stacked, states.log_weights, horizon=horizon_col)


def what_if(fit_or_states: Fit | StateDraws, future_drivers: Mapping[str, Mapping[Any, float]],
            horizon: int = 12, *, log_weights: np.ndarray | None = None) -> pd.DataFrame:
    """Forecast under user-chosen future driver values against the baseline forecast.

    Parameters
    ----------
    fit_or_states : Fit or StateDraws
        A fit, or states from :func:`compute_states`.
    future_drivers : mapping
        ``{driver_id: {horizon_or_period: count}}``: e.g. ``{"nk_nuclear_tests": {2: 1}}`` for a nuclear test
        two periods ahead; values replace the baseline counts of those periods (drivers act on transitions
        ``driver_lag`` periods later).
    horizon : int
        Number of periods ahead.
    log_weights : numpy.ndarray, optional
        Per-draw log weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``period``, ``horizon``, ``scenario``, ``baseline``, ``what_if``, ``difference`` (means over
        draws), ``baseline_lower/upper``, ``what_if_lower/upper``, ``difference_lower/upper`` (90%
        intervals; the difference is taken per draw), ``difference_median``, and ``p_increase`` and
        ``p_decrease``: the posterior probability (share of the draws, weighted when weights are given) that
        the what-if raises, or lowers, the scenario's probability. Both are 0 where nothing changes.

    Notes
    -----
    Read the median and ``p_increase``/``p_decrease`` next to the mean. A driver value far outside the driver's
    usual range multiplies the uncertainty of its effect, and a scenario already near 1 can fall much further than
    it can rise: the mean change then mostly reflects the draws in which the effect is large and unfavourable,
    while the median may be close to 0 (``docs/model.md``, "Reading a what-if", has an example on the bundled
    data). With weights, the median is the weighted 0.5 quantile under :func:`summarise_draws`'s interpolation.

    Examples
    --------
    A seventh nuclear test two months ahead, and a surge of ten missile launches a month for three months::

        states = compute_states(load_fit("fit.nc"))
        what_if(states, {"nk_nuclear_tests": {2: 1}})
        what_if(states, {"nk_missile_launches": {1: 10, 2: 10, 3: 10}})
        what_if(states, {"nk_nuclear_tests": {"2027-01": 1}})  # by period instead of horizon
    """
    states = _states(fit_or_states, log_weights)
    base = _forecast_draws(states, horizon, None)
    alt = _forecast_draws(states, horizon, future_drivers)
    periods = _future_periods(states, horizon)
    lw = states.log_weights
    out = _table(periods, SCENARIOS, "scenario", base, lw, horizon=np.arange(1, horizon + 1))
    out = out.rename(columns={"mean": "baseline", "lower": "baseline_lower", "upper": "baseline_upper"})
    diff = alt - base
    for name, values in (("what_if", alt), ("difference", diff)):
        mean, lower, upper = summarise_draws(values, lw)
        out[name], out[f"{name}_lower"], out[f"{name}_upper"] = mean.ravel(), lower.ravel(), upper.ravel()
    _, median, _ = summarise_draws(diff, lw, interval=0.0)  # an interval of width 0: both bounds are the median
    out["difference_median"] = median.ravel()
    for name, sign in (("p_increase", diff > 0), ("p_decrease", diff < 0)):
        out[name] = summarise_draws(sign.astype(float), lw)[0].ravel()  # the (weighted) mean of an indicator
    cols = ["period", "horizon", "scenario", "baseline", "what_if", "difference", "baseline_lower",
            "baseline_upper", "what_if_lower", "what_if_upper", "difference_lower", "difference_upper",
            "difference_median", "p_increase", "p_decrease"]
    return out[cols]
