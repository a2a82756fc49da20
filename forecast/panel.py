"""The panel: a validated dataset aggregated to periods, as an :class:`xarray.Dataset`.

:func:`build_panel` is a pure function of a :class:`~forecast.dataset.Dataset` and a frequency; its layout is
the contract described in ``docs/architecture.md`` ("The panel").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from forecast.catalog import Direction, Indicator
from forecast.dataset import Dataset
from forecast.errors import ConfigError
from forecast.scenarios import SCENARIOS

logger = logging.getLogger(__name__)

#: Supported panel frequencies: monthly and quarterly.
FREQUENCIES: tuple[str, ...] = ("M", "Q")


def period_index(start: pd.Timestamp, end: pd.Timestamp, freq: str) -> pd.PeriodIndex:
    """Periods of frequency ``freq`` from the one containing ``start`` to the one containing ``end``.

    Parameters
    ----------
    start, end : pandas.Timestamp
        First and last day to cover.
    freq : {"M", "Q"}
        Monthly or quarterly (calendar quarters).

    Returns
    -------
    pandas.PeriodIndex
        The periods.
    """
    _check_freq(freq)
    return pd.period_range(pd.Period(start, freq=freq), pd.Period(end, freq=freq), freq=freq)


def _check_freq(freq: str) -> None:
    if freq not in FREQUENCIES:
        raise ConfigError(f"unknown panel frequency {freq!r}; use 'M' (monthly) or 'Q' (quarterly)")


def _exposure(periods: pd.PeriodIndex, indicators: Sequence[Indicator], observed_through: pd.Timestamp) -> np.ndarray:
    """(T, K) fraction of each period's days inside [coverage_start, min(coverage_stop, observed_through)]."""
    first = periods.start_time.normalize().to_numpy().astype("datetime64[D]")
    last = periods.end_time.normalize().to_numpy().astype("datetime64[D]")  # inclusive last day
    days = (last - first).astype(np.int64) + 1
    cov_start = np.array([np.datetime64(i.coverage_start, "D") for i in indicators], dtype="datetime64[D]")
    stop = [min(pd.Timestamp(i.coverage_stop or observed_through), observed_through) for i in indicators]
    cov_stop = np.array([np.datetime64(s.date(), "D") for s in stop], dtype="datetime64[D]")
    lo = np.maximum(first[:, None], cov_start[None, :])
    hi = np.minimum(last[:, None], cov_stop[None, :])
    inside = np.clip((hi - lo).astype(np.int64) + 1, 0, None)
    return inside / days[:, None]


def _aggregate(obs: pd.DataFrame, periods: pd.PeriodIndex, freq: str, indicators: Sequence[Indicator],
               how: str) -> np.ndarray:
    """(T, K) sum or mean of the values per period and indicator, NaN where there are no rows."""
    ids = [i.id for i in indicators]
    out = np.full((len(periods), len(ids)), np.nan)
    rows = obs[obs["indicator"].isin(ids)]
    if rows.empty or not ids:
        return out
    row_period = rows["date"].dt.to_period(freq)
    t = periods.get_indexer(row_period)
    k = pd.Index(ids).get_indexer(rows["indicator"])
    keep = (t >= 0) & (k >= 0)
    grouped = pd.Series(rows["value"].to_numpy()[keep]).groupby([t[keep], k[keep]]).agg(how)
    ti = grouped.index.get_level_values(0).to_numpy()
    ki = grouped.index.get_level_values(1).to_numpy()
    out[ti, ki] = grouped.to_numpy()
    return out


def _labels(dataset: Dataset, periods: pd.PeriodIndex) -> tuple[np.ndarray, np.ndarray]:
    """Label index and confidence per period: the label whose interval contains the period's midpoint."""
    start = periods.start_time.to_numpy()
    stop = (periods + 1).start_time.to_numpy()
    midpoint = start + (stop - start) / 2
    label = np.full(len(periods), -1, dtype=np.int8)
    confidence = np.full(len(periods), np.nan)
    labels = dataset.labels
    if labels.empty:
        return label, confidence
    lo = labels["start"].to_numpy(dtype="datetime64[ns]")
    hi = labels["end"].to_numpy(dtype="datetime64[ns]") + np.timedelta64(1, "D")  # end day is inclusive
    contains = (lo[None, :] <= midpoint[:, None]) & (midpoint[:, None] < hi[None, :])
    hit = contains.any(axis=1)
    which = contains.argmax(axis=1)
    codes = np.array([SCENARIOS.index(s) for s in labels["scenario"]], dtype=np.int8)
    label[hit] = codes[which[hit]]
    confidence[hit] = labels["confidence"].to_numpy(dtype=float)[which[hit]]
    return label, confidence


def build_panel(dataset: Dataset, freq: str = "M") -> xr.Dataset:
    """Aggregate a dataset to periods.

    Parameters
    ----------
    dataset : Dataset
        A validated dataset.
    freq : {"M", "Q"}, optional
        Monthly (default) or quarterly periods.

    Returns
    -------
    xarray.Dataset
        Dimensions ``period`` (first day of each period, from the one containing the earliest coverage_start to
        the one containing observed_through), ``signal`` and ``driver`` (catalog order) and ``scenario``; data
        variables ``y``, ``exposure``, ``observed``, ``x``, ``x_exposure``, ``label``, ``label_confidence``;
        attributes ``freq``, ``observed_through`` and ``data_sha256``. See ``docs/architecture.md``.

    Raises
    ------
    ConfigError
        If ``freq`` is not ``"M"`` or ``"Q"``.
    """
    _check_freq(freq)
    catalog = dataset.catalog
    observed_through = pd.Timestamp(catalog.observed_through)
    start = min(pd.Timestamp(i.coverage_start) for i in catalog)
    periods = period_index(start, observed_through, freq)
    obs = dataset.observations
    signals = catalog.signals
    drivers = catalog.drivers

    exposure = _exposure(periods, signals, observed_through)
    kinds = np.array([s.kind for s in signals], dtype=object)
    is_count = kinds == "count"
    sums = _aggregate(obs, periods, freq, signals, "sum")
    means = _aggregate(obs, periods, freq, signals, "mean")
    covered = exposure > 0
    y_count = np.where(covered, np.nan_to_num(sums, nan=0.0), np.nan)
    y = np.where(is_count[None, :], y_count, np.where(covered, means, np.nan))
    observed = np.where(is_count[None, :], covered, covered & np.isfinite(means))

    x_exposure = _exposure(periods, drivers, observed_through)
    x_sums = _aggregate(obs, periods, freq, drivers, "sum")
    x = np.where(x_exposure > 0, np.nan_to_num(x_sums, nan=0.0), np.nan)

    label, confidence = _labels(dataset, periods)

    period_coord = periods.start_time.to_numpy().astype("datetime64[ns]")
    signal_ids = [s.id for s in signals]
    panel = xr.Dataset(
        data_vars={
            "y": (("period", "signal"), y.reshape(len(periods), len(signals))),
            "exposure": (("period", "signal"), exposure.reshape(len(periods), len(signals))),
            "observed": (("period", "signal"), observed.reshape(len(periods), len(signals)).astype(bool)),
            "x": (("period", "driver"), x.reshape(len(periods), len(drivers))),
            "x_exposure": (("period", "driver"), x_exposure.reshape(len(periods), len(drivers))),
            "label": (("period",), label),
            "label_confidence": (("period",), confidence),
        },
        coords={
            "period": period_coord,
            "signal": np.array(signal_ids, dtype=object),
            "driver": np.array([d.id for d in drivers], dtype=object),
            "scenario": np.array(SCENARIOS, dtype=object),
            "kind": ("signal", np.array([s.kind for s in signals], dtype=object)),
            "group": ("signal", np.array([s.group for s in signals], dtype=object)),
            "direction_us": ("signal", np.array([Direction.as_int(s.direction.us) for s in signals], dtype=np.int8)),
            "direction_relations": (
                "signal", np.array([Direction.as_int(s.direction.relations) for s in signals], dtype=np.int8)),
            "marker": ("signal", np.array([s.marker or "" for s in signals], dtype=object)),
            "transform": ("signal", np.array([s.level_transform for s in signals], dtype=object)),
        },
        attrs={
            "freq": freq,
            "observed_through": catalog.observed_through.isoformat(),
            "data_sha256": dataset.sha256,
        },
    )
    panel["y"].attrs["description"] = "count: sum of values in the period; level: mean of the measurements"
    panel["exposure"].attrs["description"] = "fraction of the period inside the indicator's coverage"
    panel["label"].attrs["description"] = "index into scenario of the analyst label at the period midpoint, -1 if none"
    logger.debug("panel: %d periods (%s), %d signals, %d drivers", len(periods), freq, len(signals), len(drivers))
    return panel
