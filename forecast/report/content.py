"""What a report says: probabilities, forecasts, what-if, history and diagnostics of one fit on one panel.

Everything is computed from the saved posterior by :mod:`forecast.probabilities`: each draw's filter and
smoother runs over the report's panel and the draws are averaged with their weights
(uniform after a refit, the importance weights of :mod:`forecast.update` on the update path). Probabilities are
computed from the evidence alone, so the analyst labels can be compared with them. Intervals are 90%
equal-tailed credible intervals over the (weighted) draws.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast.scenarios import SCENARIOS

if TYPE_CHECKING:
    from forecast.fitfile import Fit
    from forecast.report.config import WhatIf

logger = logging.getLogger(__name__)

#: Probability mass of every reported interval.
INTERVAL = 0.9
#: The smoothed history shown starts here (or at the panel's start, if later).
HISTORY_START = "1990-01-01"
#: Number of most recent periods of the indicator panel.
INDICATOR_PERIODS = 24
#: Factor names of the factor probabilities.
FACTOR_NAMES = ("us_engaged", "relations_workable")


@dataclass
class Summary:
    """Weighted mean and 90% interval arrays (same shape)."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class Content:
    """Computed report content.

    Attributes
    ----------
    periods : pandas.DatetimeIndex
        Periods of the panel.
    filtered, smoothed : Summary
        (T, 4) filtered and smoothed scenario probabilities.
    factors_now : Summary
        (2,) factor probabilities of the latest period (filtered).
    forecast : Summary
        (H, 4) forecast scenario probabilities 1..H periods ahead (baseline drivers).
    forecast_factors : Summary
        (H, 2) forecast factor probabilities.
    forecast_periods : pandas.DatetimeIndex
        (H,) forecast periods.
    what_if : list of dict
        One entry per comparison: ``name``, ``description``, ``drivers``, ``baseline`` (H, 4), ``what_if`` and
        ``difference`` (Summary of (H, 4) arrays), and the (H, 4) arrays ``difference_median``, ``p_increase``
        and ``p_decrease`` (:func:`forecast.probabilities.what_if`).
    n_draws : int
        Number of posterior draws.
    ess : float
        Effective sample size of the weights (the number of draws when unweighted).
    """

    periods: pd.DatetimeIndex
    filtered: Summary
    smoothed: Summary
    factors_now: Summary
    forecast: Summary
    forecast_factors: Summary
    forecast_periods: pd.DatetimeIndex
    what_if: list[dict[str, Any]]
    n_draws: int
    ess: float

    def current(self) -> pd.DataFrame:
        """Scenario probabilities of the latest period: ``scenario, mean, lower, upper``."""
        return pd.DataFrame({"scenario": list(SCENARIOS), "mean": self.filtered.mean[-1],
                             "lower": self.filtered.lower[-1], "upper": self.filtered.upper[-1]})

    def forecast_table(self) -> pd.DataFrame:
        """Forecasts: ``period, horizon, scenario, mean, lower, upper``."""
        h = len(self.forecast_periods)
        return pd.DataFrame({
            "period": np.repeat(self.forecast_periods, len(SCENARIOS)),
            "horizon": np.repeat(np.arange(1, h + 1), len(SCENARIOS)),
            "scenario": np.tile(np.array(SCENARIOS, dtype=object), h),
            "mean": self.forecast.mean.ravel(), "lower": self.forecast.lower.ravel(),
            "upper": self.forecast.upper.ravel(),
        })


def _arrays(table: pd.DataFrame, column: str, labels: tuple[str, ...],
            fields: tuple[str, ...] = ("mean", "lower", "upper")) -> Any:
    """(rows, len(labels)) arrays of ``fields`` from a tidy table, rows ordered by period."""
    out = {}
    for name in fields:
        wide = table.pivot(index="period", columns=column, values=name).sort_index()
        out[name] = wide[list(labels)].to_numpy(dtype=float)
    if tuple(fields) == ("mean", "lower", "upper"):
        return Summary(out["mean"], out["lower"], out["upper"])
    return out


def compute_content(
    fit: Fit,
    panel: xr.Dataset,
    *,
    log_weights: np.ndarray | None = None,
    horizon: int = 12,
    what_if: tuple[WhatIf, ...] = (),
) -> Content:
    """Filter, smooth and forecast every posterior draw on ``panel`` and summarise over the (weighted) draws.

    The computations are those of :mod:`forecast.probabilities`; this function arranges its tables as arrays.

    Parameters
    ----------
    fit : forecast.fitfile.Fit
        The fit whose draws are used.
    panel : xarray.Dataset
        The report's panel (the fitted one, or its extension on the update path).
    log_weights : numpy.ndarray, optional
        (N,) log weights of the draws (from an update); uniform when omitted.
    horizon : int, optional
        Forecast horizon in periods.
    what_if : tuple of WhatIf, optional
        What-if comparisons.

    Returns
    -------
    Content
        The summaries.
    """
    from forecast import probabilities as P

    logger.info("filtering and smoothing %d draws over %d periods", fit.n_draws, panel.sizes["period"])
    states = P.compute_states(fit, panel=panel, log_weights=log_weights)
    n = states.n_draws
    if states.log_weights is None:
        ess = float(n)
    else:
        w = np.exp(states.log_weights - np.max(states.log_weights))
        ess = float(w.sum() ** 2 / np.sum(w**2))
    forecast = P.forecast_probabilities(states, horizon)
    factors_now = P.factor_probabilities_table(states, "filtered")
    factors_now = factors_now[factors_now["period"] == factors_now["period"].max()]
    comparisons = []
    for item in what_if:
        table = P.what_if(states, item.drivers, horizon)
        alt = _arrays(table, "scenario", SCENARIOS, ("what_if", "what_if_lower", "what_if_upper"))
        diff = _arrays(table, "scenario", SCENARIOS, ("difference", "difference_lower", "difference_upper"))
        base = _arrays(table, "scenario", SCENARIOS, ("baseline",))
        spread = _arrays(table, "scenario", SCENARIOS, ("difference_median", "p_increase", "p_decrease"))
        comparisons.append({
            "name": item.name, "description": item.description, "drivers": item.to_dict()["drivers"],
            "baseline": base["baseline"],
            "what_if": Summary(alt["what_if"], alt["what_if_lower"], alt["what_if_upper"]),
            "difference": Summary(diff["difference"], diff["difference_lower"], diff["difference_upper"]),
            **spread,
        })
    now = _arrays(factors_now, "factor", FACTOR_NAMES)
    return Content(
        periods=pd.DatetimeIndex(panel["period"].values),
        filtered=_arrays(P.filtered_probabilities(states), "scenario", SCENARIOS),
        smoothed=_arrays(P.smoothed_probabilities(states), "scenario", SCENARIOS),
        factors_now=Summary(now.mean[0], now.lower[0], now.upper[0]),
        forecast=_arrays(forecast, "scenario", SCENARIOS),
        forecast_factors=_arrays(P.factor_probabilities_table(states, "forecast", horizon=horizon), "factor",
                                 FACTOR_NAMES),
        forecast_periods=pd.DatetimeIndex(sorted(forecast["period"].unique())),
        what_if=comparisons,
        n_draws=n,
        ess=ess,
    )


def history_summary(content: Content, panel: xr.Dataset) -> dict[str, Any]:
    """Yearly mean smoothed probabilities since :data:`HISTORY_START` and agreement with the analyst labels.

    Parameters
    ----------
    content : Content
        Computed content.
    panel : xarray.Dataset
        The report's panel (labels).

    Returns
    -------
    dict
        ``start``, ``end``, ``yearly`` (records: year, then one mean per scenario), ``most_likely_runs``
        (spans where the smoothed most likely scenario stayed the same), ``label_agreement`` (share of labelled
        periods whose smoothed most likely scenario is the label, None without labels).
    """
    keep = content.periods >= pd.Timestamp(HISTORY_START)
    periods = content.periods[keep]
    probs = content.smoothed.mean[keep]
    if len(periods) == 0:
        return {"start": None, "end": None, "yearly": [], "most_likely_runs": [], "label_agreement": None}
    frame = pd.DataFrame(probs, columns=list(SCENARIOS), index=periods)
    yearly = frame.groupby(frame.index.year).mean()
    records = [{"year": int(y), **{s: float(row[s]) for s in SCENARIOS}} for y, row in yearly.iterrows()]
    top = probs.argmax(axis=1)
    runs = []
    start = 0
    for t in range(1, len(top) + 1):
        if t == len(top) or top[t] != top[start]:
            runs.append({"start": periods[start].strftime("%Y-%m"), "end": periods[t - 1].strftime("%Y-%m"),
                         "scenario": SCENARIOS[int(top[start])]})
            start = t
    labels = np.asarray(panel["label"].values)[keep]
    labelled = labels >= 0
    agreement = float(np.mean(top[labelled] == labels[labelled])) if labelled.any() else None
    return {"start": periods[0].strftime("%Y-%m-%d"), "end": periods[-1].strftime("%Y-%m-%d"),
            "yearly": records, "most_likely_runs": runs, "label_agreement": agreement}


def indicator_table(panel: xr.Dataset, names: dict[str, str], n_periods: int = INDICATOR_PERIODS) -> pd.DataFrame:
    """The indicator panel of the last ``n_periods`` periods as a tidy table.

    Parameters
    ----------
    panel : xarray.Dataset
        The report's panel.
    names : dict of str to str
        Indicator id → readable name.
    n_periods : int, optional
        Number of most recent periods.

    Returns
    -------
    pandas.DataFrame
        ``period, indicator, name, role, kind, value`` (NaN where unobserved).
    """
    recent = panel.isel(period=slice(-n_periods, None))
    periods = pd.DatetimeIndex(recent["period"].values)
    rows = []
    for role, var, dim in (("signal", "y", "signal"), ("driver", "x", "driver")):
        for ind in recent[dim].values.tolist():
            values = recent[var].sel({dim: ind}).values.astype(float)
            kind = str(recent["kind"].sel(signal=ind).item()) if role == "signal" else "count"
            if role == "signal":
                values = np.where(recent["observed"].sel(signal=ind).values, values, np.nan)
            for p, v in zip(periods, values, strict=True):
                rows.append({"period": p, "indicator": str(ind), "name": names.get(str(ind), str(ind)),
                             "role": role, "kind": kind, "value": float(v)})
    return pd.DataFrame(rows, columns=["period", "indicator", "name", "role", "kind", "value"])
