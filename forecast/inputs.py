"""Model inputs: the arrays that the PyMC model, the simulator and the probability code share.

Everything that turns a panel into numbers the model sees — masks, log exposures, the standardisation of level
signals and drivers, the driver lag, the label evidence — lives here and only here, so that fitting, updating
and forecasting transform every period identically. The standardisation constants are estimated once, from
the panel that is fitted, and are stored with the fit (:class:`ModelOptions`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from forecast.errors import ConfigError
from forecast.scenarios import N_SCENARIOS

logger = logging.getLogger(__name__)

_EPS = 1e-12
#: |log exposure| below this counts as a whole period of exposure.
_FULL_EXPOSURE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class ModelOptions:
    """Structural options of the model and the constants that fix its input transformations.

    Parameters
    ----------
    driver_lag : int
        Periods by which drivers lead the transitions they shift (1: last month's launches shift this
        month's transition).
    use_labels : bool
        Add the analyst labels as soft evidence when fitting. Reported probabilities never use them.
    level_center, level_scale : dict of str to float
        Per level signal: centre and scale of the transformed values (estimated from the fitted panel).
    driver_center, driver_scale : dict of str to float
        Per driver: centre and scale of ``log1p(count per full period)``.
    """

    driver_lag: int = 1
    use_labels: bool = True
    level_center: dict[str, float] = field(default_factory=dict)
    level_scale: dict[str, float] = field(default_factory=dict)
    driver_center: dict[str, float] = field(default_factory=dict)
    driver_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # bool is an int subclass: True would silently mean a lag of 1; NumPy integers are whole numbers
        lag = self.driver_lag
        if isinstance(lag, bool | np.bool_) or not isinstance(lag, int | np.integer) or lag < 0:
            raise ConfigError(f"driver_lag must be a whole number >= 0, got {lag!r}")
        object.__setattr__(self, "driver_lag", int(lag))  # plain int, so that to_dict stays JSON-serialisable

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the form stored in the fit file)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelOptions:
        """Rebuild options from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def estimate_standardisation(panel: xr.Dataset, options: ModelOptions | None = None) -> ModelOptions:
    """Return ``options`` with standardisation constants estimated from ``panel``.

    Parameters
    ----------
    panel : xarray.Dataset
        A panel from :func:`forecast.panel.build_panel`.
    options : ModelOptions, optional
        Structural options to keep; defaults to ``ModelOptions()``.

    Returns
    -------
    ModelOptions
        A copy whose ``level_*`` and ``driver_*`` constants describe ``panel``.
    """
    options = options or ModelOptions()
    level_center: dict[str, float] = {}
    level_scale: dict[str, float] = {}
    for name in _signals_of_kind(panel, "level"):
        values = _transform_level(panel, name)
        values = values[np.isfinite(values)]
        level_center[name] = float(values.mean()) if values.size else 0.0
        scale = float(values.std()) if values.size > 1 else 0.0
        level_scale[name] = scale if scale > _EPS else 1.0
    driver_center: dict[str, float] = {}
    driver_scale: dict[str, float] = {}
    log_rates = np.log1p(driver_rates(panel))
    for j, name in enumerate(panel["driver"].values.tolist()):
        values = log_rates[:, j]
        values = values[np.isfinite(values)]
        driver_center[name] = float(values.mean()) if values.size else 0.0
        scale = float(values.std()) if values.size > 1 else 0.0
        driver_scale[name] = scale if scale > _EPS else 1.0
    return dataclasses.replace(
        options,
        level_center=level_center,
        level_scale=level_scale,
        driver_center=driver_center,
        driver_scale=driver_scale,
    )


@dataclass(frozen=True)
class ModelInputs:
    """Arrays the model sees, for T periods, C count signals, L level signals and D drivers.

    Attributes
    ----------
    periods : numpy.ndarray
        (T,) ``datetime64[ns]`` period starts.
    signals, count_signals, level_signals, drivers, groups : tuple of str
        Ids in catalog order; ``groups`` are the distinct pooling groups of the signals.
    count_index, level_index : numpy.ndarray
        Positions of the count and level signals in ``signals``.
    signal_group : numpy.ndarray
        (S,) index into ``groups`` for each signal.
    direction : numpy.ndarray
        (S, 2) expected sign of each signal's loading on the US and relations factors: +1, −1, 0 = unknown, or
        :data:`forecast.catalog.NO_LOADING` = none (the loading is fixed at 0).
    marker : tuple of str
        (S,) ``"us"``, ``"relations"`` or ``""``.
    y_count, log_exposure : numpy.ndarray
        (T, C) counts and log exposures; 0 where unobserved.
    count_mask : numpy.ndarray
        (T, C) bool, observed cells.
    z_level : numpy.ndarray
        (T, L) standardised level signals; 0 where unobserved.
    level_mask : numpy.ndarray
        (T, L) bool.
    x_std : numpy.ndarray
        (T, D) standardised, lagged drivers; row t shifts the transition into period t.
    label : numpy.ndarray
        (T,) int scenario index of the analyst label, −1 where none.
    label_confidence : numpy.ndarray
        (T,) label confidence, NaN where none.
    """

    periods: np.ndarray
    signals: tuple[str, ...]
    count_signals: tuple[str, ...]
    level_signals: tuple[str, ...]
    drivers: tuple[str, ...]
    groups: tuple[str, ...]
    count_index: np.ndarray
    level_index: np.ndarray
    signal_group: np.ndarray
    direction: np.ndarray
    marker: tuple[str, ...]
    y_count: np.ndarray
    log_exposure: np.ndarray
    count_mask: np.ndarray
    z_level: np.ndarray
    level_mask: np.ndarray
    x_std: np.ndarray
    label: np.ndarray
    label_confidence: np.ndarray

    @property
    def n_periods(self) -> int:
        """Number of periods T."""
        return int(self.periods.shape[0])

    @property
    def full_exposure(self) -> np.ndarray:
        """(T, C) bool: observed count cells that cover the whole period (log exposure 0).

        Their densities depend on the period only through the count, which the emission code exploits; the other
        observed cells (coverage boundaries, rare) are scored one by one.
        """
        return self.count_mask & (np.abs(self.log_exposure) < _FULL_EXPOSURE_TOLERANCE)

    def label_log_evidence(self) -> np.ndarray:
        """Log soft evidence of the analyst labels, shape (T, 4).

        A label with confidence c adds ``log c`` to its scenario and ``log((1 − c) / 3)`` to each other one;
        unlabelled periods add 0. Confidence 1 gives ``-inf`` to the other scenarios (a hard label).

        Returns
        -------
        numpy.ndarray
            (T, 4) additive log evidence.
        """
        out = np.zeros((self.n_periods, N_SCENARIOS))
        has = self.label >= 0
        if not has.any():
            return out
        conf = self.label_confidence[has]
        with np.errstate(divide="ignore"):
            other = np.log((1.0 - conf) / (N_SCENARIOS - 1))
            own = np.log(conf)
        out[has] = other[:, None]
        out[np.flatnonzero(has), self.label[has]] = own
        return out


def build_inputs(panel: xr.Dataset, options: ModelOptions) -> ModelInputs:
    """Turn a panel into :class:`ModelInputs` using the constants in ``options``.

    Parameters
    ----------
    panel : xarray.Dataset
        A panel from :func:`forecast.panel.build_panel` (or :func:`forecast.simulate.simulate_panel`).
    options : ModelOptions
        Options with standardisation constants (see :func:`estimate_standardisation`). A level signal or
        driver missing from the constants is a :class:`ConfigError`: the fit and the panel disagree.

    Returns
    -------
    ModelInputs
        The arrays, in catalog order.
    """
    signals = tuple(panel["signal"].values.tolist())
    kinds = panel["kind"].values.tolist()
    count_signals = tuple(s for s, k in zip(signals, kinds, strict=True) if k == "count")
    level_signals = tuple(s for s, k in zip(signals, kinds, strict=True) if k == "level")
    drivers = tuple(panel["driver"].values.tolist())
    missing = [s for s in level_signals if s not in options.level_center]
    missing += [d for d in drivers if d not in options.driver_center]
    if missing:
        raise ConfigError(
            "no standardisation constants for " + ", ".join(missing)
            + "; the panel has indicators the fit did not see (estimate_standardisation on the fitted panel)"
        )

    observed = panel["observed"].values.astype(bool)
    y = panel["y"].values.astype(float)
    exposure = panel["exposure"].values.astype(float)
    count_index = np.array([signals.index(s) for s in count_signals], dtype=int)
    level_index = np.array([signals.index(s) for s in level_signals], dtype=int)

    count_mask = observed[:, count_index] & (exposure[:, count_index] > 0) & np.isfinite(y[:, count_index])
    y_count = np.where(count_mask, y[:, count_index], 0.0)
    with np.errstate(divide="ignore"):
        log_exposure = np.where(count_mask, np.log(np.maximum(exposure[:, count_index], _EPS)), 0.0)

    z_level = np.zeros((panel.sizes["period"], len(level_signals)))
    level_mask = np.zeros_like(z_level, dtype=bool)
    for j, name in enumerate(level_signals):
        values = _transform_level(panel, name)
        ok = np.isfinite(values) & observed[:, signals.index(name)]
        z = (values - options.level_center[name]) / options.level_scale[name]
        z_level[:, j] = np.where(ok, z, 0.0)
        level_mask[:, j] = ok

    x_now = np.zeros((panel.sizes["period"], len(drivers)))
    log_rates = np.log1p(driver_rates(panel))
    for j, name in enumerate(drivers):
        z = (log_rates[:, j] - options.driver_center[name]) / options.driver_scale[name]
        x_now[:, j] = np.where(np.isfinite(z), z, 0.0)
    x_std = lag_rows(x_now, options.driver_lag)

    groups_all = panel["group"].values.tolist()
    groups = tuple(dict.fromkeys(groups_all))
    signal_group = np.array([groups.index(g) for g in groups_all], dtype=int)
    direction = np.stack(
        [panel["direction_us"].values.astype(int), panel["direction_relations"].values.astype(int)], axis=1
    )
    label = panel["label"].values.astype(int) if "label" in panel else np.full(panel.sizes["period"], -1)
    label_confidence = (
        panel["label_confidence"].values.astype(float)
        if "label_confidence" in panel
        else np.full(panel.sizes["period"], np.nan)
    )
    if not options.use_labels:
        label = np.full_like(label, -1)
        label_confidence = np.full_like(label_confidence, np.nan)

    return ModelInputs(
        periods=panel["period"].values,
        signals=signals,
        count_signals=count_signals,
        level_signals=level_signals,
        drivers=drivers,
        groups=groups,
        count_index=count_index,
        level_index=level_index,
        signal_group=signal_group,
        direction=direction,
        marker=tuple(str(m) for m in panel["marker"].values.tolist()),
        y_count=y_count,
        log_exposure=log_exposure,
        count_mask=count_mask,
        z_level=z_level,
        level_mask=level_mask,
        x_std=x_std,
        label=label,
        label_confidence=label_confidence,
    )


def lag_rows(values: np.ndarray, lag: int) -> np.ndarray:
    """Shift rows down by ``lag`` periods, filling the first rows with 0 (the standardised mean).

    Parameters
    ----------
    values : numpy.ndarray
        (T, D) array.
    lag : int
        Non-negative lag.

    Returns
    -------
    numpy.ndarray
        (T, D) array with ``out[t] = values[t - lag]``.
    """
    if lag == 0:
        return values.copy()
    out = np.zeros_like(values)
    if lag < values.shape[0]:
        out[lag:] = values[:-lag]
    return out


def _signals_of_kind(panel: xr.Dataset, kind: str) -> list[str]:
    return [s for s, k in zip(panel["signal"].values.tolist(), panel["kind"].values.tolist(), strict=True)
            if k == kind]


def _transform_level(panel: xr.Dataset, name: str) -> np.ndarray:
    values = panel["y"].sel(signal=name).values.astype(float)
    transform = str(panel["transform"].sel(signal=name).values) if "transform" in panel.coords else "identity"
    if transform == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
    return values


def driver_rates(panel: xr.Dataset) -> np.ndarray:
    """Driver counts per full period: ``x / x_exposure``, NaN outside coverage.

    Parameters
    ----------
    panel : xarray.Dataset
        A panel from :func:`forecast.panel.build_panel`.

    Returns
    -------
    numpy.ndarray
        (T, D) rates in the panel's driver order.
    """
    counts = panel["x"].values.astype(float)
    exposure = panel["x_exposure"].values.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exposure > 0, counts / np.where(exposure > 0, exposure, 1.0), np.nan)
