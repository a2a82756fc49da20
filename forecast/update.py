"""Online update: absorb new periods by reweighting the existing posterior draws (PSIS), or say why not.

When new months of data arrive, the posterior given the extended data is the old posterior reweighted by each
draw's predictive density of the new periods,

    w_n ∝ p(y_{T+1..T+m} | y_{1..T}, θ_n),

which the forward filter gives for every draw in milliseconds, starting from the draw's filtered state of the
last fitted period. The raw importance ratios are Pareto-smoothed (PSIS, Vehtari et al. 2024) and their
reliability is judged by the Pareto shape estimate k̂ and the effective sample size of the weights; when either
says the reweighted draws cannot be trusted, or when the fitted periods themselves changed (a revision), the
answer is ``refit_required`` with the reason, never a silently wrong probability.

The public entry points are :func:`update`, :func:`update_or_refit`, :func:`save_update` and
:func:`load_update`. See ``docs/update.md`` for the method, its limits and measured costs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast import hmm
from forecast.atomic import atomic_path
from forecast.catalog import Direction
from forecast.errors import FitFileError
from forecast.fitfile import NETCDF_ENGINE, read_netcdf
from forecast.inputs import ModelInputs, build_inputs

if TYPE_CHECKING:
    from forecast.fitfile import Fit

logger = logging.getLogger(__name__)

#: Version of the update-file layout.
UPDATE_FORMAT = 1
#: Paths an update can take.
PATHS = ("update", "refit_required", "refit")
#: Panel variables compared period by period to detect revisions of already-fitted data.
REVISION_VARIABLES = ("y", "observed", "exposure", "x", "x_exposure")
#: Panel variables compared when the fit used analyst labels.
LABEL_VARIABLES = ("label", "label_confidence")
#: Coordinates that define the panel's structure (a change means the catalog changed).
STRUCTURE_COORDS = (
    "signal", "driver", "kind", "group", "direction_us", "direction_relations", "marker", "transform",
)


@dataclass(frozen=True)
class RevisedCell:
    """One cell of an already-fitted period whose value differs in the new data.

    Parameters
    ----------
    period : str
        ISO date of the period start.
    variable : str
        Panel variable (``y``, ``observed``, ``exposure``, ``x``, ``x_exposure``, ``label``, ...).
    indicator : str
        Signal or driver id, ``""`` for per-period variables.
    old, new : str
        The fitted and the new value, as text (``nan`` for missing).
    """

    period: str
    variable: str
    indicator: str
    old: str
    new: str

    def __str__(self) -> str:
        where = f"{self.period} {self.variable}" + (f"[{self.indicator}]" if self.indicator else "")
        return f"{where}: {self.old} -> {self.new}"


@dataclass
class UpdateResult:
    """Outcome of an online update.

    Attributes
    ----------
    path : str
        ``"update"`` (the reweighted posterior is trusted), ``"refit_required"`` (it is not, or the data changed
        in a way reweighting cannot absorb; see ``reason``) or ``"refit"`` (a refit was run, see ``refit``).
    reason : str
        Plain-language reason for the path.
    pareto_k : float or None
        Pareto k̂ of the smoothed importance weights (None when no weights were computed). Above about 0.7 the
        reweighted estimates are unreliable.
    ess : float or None
        Effective sample size of the normalised weights, ``1 / sum(w**2)``.
    n_draws : int
        Number of posterior draws reweighted.
    periods_absorbed : tuple of str
        ISO dates of the new periods the weights account for.
    revisions : tuple of RevisedCell
        Changed cells of already-fitted periods (non-empty only on ``refit_required``).
    base_fit_sha256 : str
        ``content_sha256`` of the fit that was reweighted (so a report can cite "base fit + update").
    data_sha256 : str
        ``data_sha256`` of the new panel.
    thresholds : dict
        ``k_threshold``, ``min_ess`` and ``max_new_periods`` used for the decision.
    log_weights : numpy.ndarray or None
        (N,) normalised log weights of the draws (flattened chain-major, as
        :func:`forecast.emissions.params_from_posterior`).
    log_ratio : numpy.ndarray or None
        (N,) raw log importance ratios ``log p(y_new | y_old, θ_n)``.
    log_filtered : numpy.ndarray or None
        (N, m, 4) per-draw log filtered probabilities of the new periods (evidence only, no analyst labels).
    filtered : pandas.DataFrame or None
        Weighted filtered probabilities of the new periods: ``period, scenario, mean, lower, upper``.
    forecast : pandas.DataFrame or None
        Weighted forecasts from the new last period: ``period, horizon, scenario, mean, lower, upper``.
    refit : Fit or None
        The new fit when :func:`update_or_refit` refitted.
    """

    path: str
    reason: str
    pareto_k: float | None = None
    ess: float | None = None
    n_draws: int = 0
    periods_absorbed: tuple[str, ...] = ()
    revisions: tuple[RevisedCell, ...] = ()
    base_fit_sha256: str = ""
    data_sha256: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    log_weights: np.ndarray | None = None
    log_ratio: np.ndarray | None = None
    log_filtered: np.ndarray | None = None
    filtered: pd.DataFrame | None = None
    forecast: pd.DataFrame | None = None
    refit: Fit | None = None

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {self.path!r}")

    @property
    def ok(self) -> bool:
        """True when the update path was taken and its probabilities can be used."""
        return self.path == "update"

    def current(self) -> pd.DataFrame | None:
        """Weighted filtered probabilities of the latest period (``scenario, mean, lower, upper``), if any."""
        if self.filtered is None or self.filtered.empty:
            return None
        last = self.filtered["period"].max()
        return self.filtered[self.filtered["period"] == last].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (what ``forecast update --json`` writes).

        Returns
        -------
        dict
            Path, reason, diagnostics, periods, revisions and the probability tables as records.
        """
        def records(df: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            if df is None:
                return None
            out = df.copy()
            if "period" in out:
                out["period"] = pd.to_datetime(out["period"]).dt.strftime("%Y-%m-%d")
            return out.to_dict(orient="records")

        return {
            "path": self.path,
            "reason": self.reason,
            "pareto_k": _finite_or_none(self.pareto_k),
            "ess": _finite_or_none(self.ess),
            "n_draws": self.n_draws,
            "periods_absorbed": list(self.periods_absorbed),
            "revisions": [dataclasses.asdict(r) for r in self.revisions],
            "base_fit_sha256": self.base_fit_sha256,
            "data_sha256": self.data_sha256,
            "thresholds": self.thresholds,
            "filtered": records(self.filtered),
            "forecast": records(self.forecast),
        }


# --------------------------------------------------------------------------------------------------------------
# comparing panels
# --------------------------------------------------------------------------------------------------------------
def _shown(name: str, value: Any) -> str:
    """A structure coordinate's value as the catalog writes it (direction codes as their signs)."""
    if name.startswith("direction_"):
        return Direction.as_sign(int(value))
    return str(value)


def _same_signals(old: xr.Dataset, new: xr.Dataset) -> bool:
    return "signal" in new.coords and old["signal"].values.tolist() == new["signal"].values.tolist()


def structure_changes(old: xr.Dataset, new: xr.Dataset) -> list[str]:
    """Differences in structure between the fitted panel and a new one (catalog, frequency, period grid).

    Parameters
    ----------
    old : xarray.Dataset
        The fitted panel.
    new : xarray.Dataset
        The panel of the extended data.

    Returns
    -------
    list of str
        Human-readable differences; empty when ``new`` only adds periods to ``old``'s structure.
    """
    changes: list[str] = []
    if old.attrs.get("freq") != new.attrs.get("freq"):
        changes.append(f"period frequency changed from {old.attrs.get('freq')!r} to {new.attrs.get('freq')!r}")
    for name in STRUCTURE_COORDS:
        in_old, in_new = name in old.coords, name in new.coords
        if in_old != in_new:
            changes.append(f"coordinate {name!r} {'removed' if in_old else 'added'}")
            continue
        if not in_old:
            continue
        a = [_shown(name, v) for v in np.asarray(old[name].values).tolist()]
        b = [_shown(name, v) for v in np.asarray(new[name].values).tolist()]
        if a == b:
            continue
        if name != "signal" and old[name].dims == ("signal",) and _same_signals(old, new):
            # the same signals: name each one that changed, as the catalog spells the value
            changes.extend(f"{name} of {signal!r} changed from {x!r} to {y!r}"
                           for signal, x, y in zip(old["signal"].values.tolist(), a, b, strict=True) if x != y)
        else:
            changes.append(f"{name} changed from {a} to {b}")
    n_old, n_new = old.sizes.get("period", 0), new.sizes.get("period", 0)
    if n_new < n_old:
        changes.append(f"the new data has {n_new} periods, fewer than the {n_old} fitted")
    elif not np.array_equal(
        np.asarray(old["period"].values, dtype="datetime64[ns]"),
        np.asarray(new["period"].values[:n_old], dtype="datetime64[ns]"),
    ):
        changes.append("the fitted periods are not the first periods of the new data (start or grid changed)")
    return changes


def find_revisions(old: xr.Dataset, new: xr.Dataset, *, labels: bool = True) -> list[RevisedCell]:
    """Cells of the fitted periods whose values differ in the new panel.

    A completed partial last period (exposure 0.5 → 1, more events) is a revision like any other: the fitted
    posterior conditioned on the partial value.

    Parameters
    ----------
    old : xarray.Dataset
        The fitted panel.
    new : xarray.Dataset
        The panel of the extended data, with the same structure (see :func:`structure_changes`).
    labels : bool, optional
        Also compare analyst labels (they are evidence when the fit used them).

    Returns
    -------
    list of RevisedCell
        Every changed cell, in period order; NaN equals NaN.
    """
    n_old = old.sizes["period"]
    periods = pd.DatetimeIndex(old["period"].values).strftime("%Y-%m-%d")
    variables = REVISION_VARIABLES + (LABEL_VARIABLES if labels else ())
    found: list[tuple[int, RevisedCell]] = []
    for name in variables:
        if name not in old and name not in new:
            continue
        if (name in old) != (name in new):
            found.append((0, RevisedCell(periods[0], name, "", "present" if name in old else "absent",
                                         "present" if name in new else "absent")))
            continue
        a = np.asarray(old[name].values)
        b = np.asarray(new[name].isel(period=slice(0, n_old)).values)
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            a, b = a.astype(float), b.astype(float)
            differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        else:
            differ = a != b
        other = [d for d in old[name].dims if d != "period"]
        labels_of = np.asarray(old[other[0]].values).tolist() if other else None
        for idx in zip(*np.nonzero(differ), strict=True):
            t = int(idx[0])
            indicator = str(labels_of[int(idx[1])]) if labels_of is not None else ""
            found.append((t, RevisedCell(periods[t], name, indicator, _text(a[idx]), _text(b[idx]))))
    found.sort(key=lambda item: item[0])
    return [cell for _, cell in found]


# --------------------------------------------------------------------------------------------------------------
# Pareto-smoothed importance weights
# --------------------------------------------------------------------------------------------------------------
def psis_weights(log_ratio: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Pareto-smoothed normalised log importance weights from log importance ratios.

    Parameters
    ----------
    log_ratio : numpy.ndarray
        (N,) log importance ratios: ``log target(θ_n) − log proposal(θ_n)`` up to a constant, e.g. the log
        predictive density of new data under each draw. Large ratios get large weights. ``-inf`` (data
        impossible under a draw) gives weight 0.

    Returns
    -------
    log_weights : numpy.ndarray
        (N,) normalised log weights (``logsumexp == 0``).
    pareto_k : float
        Pareto shape estimate of the upper tail of the ratios; 0 when all ratios are equal (no tail), ``inf``
        when the ratios are so extreme that no tail can be fitted.
    ess : float
        Effective sample size ``1 / sum(w**2)`` of the smoothed weights.

    Notes
    -----
    ArviZ 1's ``psislw`` (``arviz_stats``) is written for PSIS-LOO: it expects *log-likelihood* values and
    smooths the weights ``∝ 1 / p``, i.e. it negates its input. Importance ratios are therefore passed negated,
    so that draws with larger ratios get larger weights; ``tests/test_update.py`` pins this direction.
    """
    log_ratio = np.asarray(log_ratio, dtype=float)
    if log_ratio.ndim != 1 or log_ratio.size == 0:
        raise ValueError(f"log_ratio must be a non-empty 1-d array, got shape {log_ratio.shape}")
    finite = np.isfinite(log_ratio)
    if np.any(np.isnan(log_ratio)) or np.any(log_ratio == np.inf):
        raise ValueError("log_ratio has NaN or +inf entries")
    if not finite.any():
        raise ValueError("the new data are impossible under every draw (all log ratios are -inf)")
    # draws under which the data are impossible keep weight 0: put them far below every finite ratio
    floor = log_ratio[finite].min() - 1000.0
    r = np.where(finite, log_ratio, floor)
    n = r.size
    if np.ptp(r[finite]) < 1e-12 and finite.all():
        log_w = np.full(n, -np.log(n))
        return log_w, 0.0, float(n)
    log_w, khat = _array_stats().psislw(-r, r_eff=1.0)
    log_w = np.asarray(log_w, dtype=float)
    log_w = np.where(finite, log_w, -np.inf)
    log_w = log_w - _logsumexp(log_w)
    w = np.exp(log_w)
    khat = float(np.asarray(khat))
    if not np.isfinite(khat):  # the tail fit failed (extreme ratios): as unreliable as it gets
        khat = np.inf
    return log_w, khat, float(1.0 / np.sum(w**2))


def _array_stats() -> Any:
    """ArviZ's NumPy statistics (``arviz_stats.base.array_stats``), imported on first use.

    Importing ``arviz_stats`` costs about a second (it imports ``scipy.stats`` and the whole package), so it
    happens only when weights are computed. It also registers a *lazy* placeholder module for jax (ArviZ's
    NumPyro converter). SciPy's array-API type checks, which ``scipy.special.logsumexp`` inside ``psislw`` runs
    on its index arrays, look that placeholder up and so import all of jax (0.5–0.7 s) merely to learn that a
    NumPy array is not a jax array. SciPy caches that answer per array type; asking it once *before* the
    placeholder exists (one ``logsumexp`` of two zeros) records "not jax" for NumPy arrays and jax is never
    imported. The numbers are unaffected; if a SciPy release stops caching, only the 0.5–0.7 s come back.
    """
    if "arviz_stats" not in sys.modules and "jax" not in sys.modules:
        from scipy.special import logsumexp

        logsumexp(np.zeros(2))
    from arviz_stats.base import array_stats

    return array_stats


# --------------------------------------------------------------------------------------------------------------
# the update
# --------------------------------------------------------------------------------------------------------------
def update(
    fit: Fit,
    panel_new: xr.Dataset,
    *,
    k_threshold: float = 0.7,
    min_ess: float = 400.0,
    max_new_periods: int = 6,
    states: Any = None,
    horizon: int = 12,
) -> UpdateResult:
    """Absorb the new periods of ``panel_new`` into ``fit`` by Pareto-smoothed importance reweighting.

    Parameters
    ----------
    fit : forecast.fitfile.Fit
        The base fit.
    panel_new : xarray.Dataset
        The panel of the extended data: the fitted periods unchanged, followed by new periods, same catalog.
    k_threshold : float, optional
        Largest acceptable Pareto k̂ (0.7 is the usual PSIS reliability limit).
    min_ess : float, optional
        Smallest acceptable effective sample size of the weights.
    max_new_periods : int, optional
        More new periods than this always require a refit (weights degenerate as evidence accumulates, and a
        posterior that has drifted should be refitted anyway).
    states : forecast.probabilities.StateDraws, optional
        Per-draw filtered states of the fit already computed (:func:`forecast.probabilities.compute_states`), to
        avoid filtering the fitted periods again when the fit file has no ``filtered_state`` group (the stored
        last states are used first: :func:`stored_base_filtered`). Used only when it holds every draw of the
        fit, unweighted, over the fitted periods, and the fit has no analyst labels (with labels the importance
        ratios must continue the label-conditioned filter, which the states do not hold).
    horizon : int, optional
        Forecast horizon in periods from the new last period.

    Returns
    -------
    UpdateResult
        ``path == "update"`` with weights, k̂, ESS and weighted probabilities and forecasts; or
        ``path == "refit_required"`` with the reason (a base fit that failed its convergence gate, revisions,
        structure change, too many periods, unreliable weights).
    """
    from forecast import emissions
    from forecast.probabilities import forecast_from_filtered, scenario_table

    old = fit.panel
    options = fit.options
    thresholds = {"k_threshold": float(k_threshold), "min_ess": float(min_ess),
                  "max_new_periods": int(max_new_periods)}
    common = {
        "n_draws": fit.n_draws,
        "base_fit_sha256": str(fit.tree.attrs.get("content_sha256", "")),
        "data_sha256": str(panel_new.attrs.get("data_sha256", "")),
        "thresholds": thresholds,
    }

    if not fit.converged:
        return UpdateResult("refit_required", "the base fit did not pass its convergence gate ("
                            + "; ".join(map(str, fit.diagnostics.get("failures", []))) + "); reweighting its draws "
                            "would carry its problems over", **common)
    changes = structure_changes(old, panel_new)
    if changes:
        return UpdateResult("refit_required", "the catalog or panel structure changed: " + "; ".join(changes),
                            **common)
    revisions = find_revisions(old, panel_new, labels=options.use_labels)
    if revisions:
        shown = "; ".join(str(r) for r in revisions[:5]) + ("; ..." if len(revisions) > 5 else "")
        return UpdateResult(
            "refit_required",
            f"{len(revisions)} cell(s) of already-fitted periods changed (revised or completed data): {shown}",
            revisions=tuple(revisions), **common,
        )

    n_old = old.sizes["period"]
    n_new = panel_new.sizes["period"] - n_old
    new_periods = tuple(pd.DatetimeIndex(panel_new["period"].values[n_old:]).strftime("%Y-%m-%d"))
    if n_new > max_new_periods:
        return UpdateResult(
            "refit_required",
            f"{n_new} new periods exceed max_new_periods={max_new_periods}; refit to absorb this much new data",
            periods_absorbed=new_periods, **common,
        )

    inputs = build_inputs(panel_new, options)
    params = emissions.params_from_posterior(fit.posterior, inputs)
    base = _base_filtered(params, inputs, n_old, options.use_labels, states, fit)
    step = absorb_periods(params, inputs, n_old, base)
    if n_new == 0:
        log_w = np.full(fit.n_draws, -np.log(fit.n_draws))
        khat, ess = 0.0, float(fit.n_draws)
    else:
        try:
            log_w, khat, ess = psis_weights(step.log_ratio)
        except ValueError as exc:
            return UpdateResult("refit_required", f"importance weights failed: {exc}",
                                periods_absorbed=new_periods, log_ratio=step.log_ratio, **common)
    logger.info("update over %d new period(s): Pareto k-hat %.3f, ESS %.0f of %d draws",
                n_new, khat, ess, fit.n_draws)

    failures = []
    if khat > k_threshold:
        failures.append(f"Pareto k-hat {khat:.2f} > {k_threshold:g}: the new data are too surprising for the "
                        "current posterior (the weights are dominated by a few draws)")
    if ess < min_ess:
        failures.append(f"effective sample size {ess:.0f} < {min_ess:g}")
    diag = {"pareto_k": khat, "ess": ess, "log_weights": log_w, "log_ratio": step.log_ratio,
            "periods_absorbed": new_periods}
    if failures:
        return UpdateResult("refit_required", "; ".join(failures), **diag, **common)

    filtered = scenario_table(np.exp(step.log_filtered_report), inputs.periods[n_old:], log_w)
    last = step.log_filtered_report[:, -1, :] if n_new else base.report_last
    forecast = forecast_from_filtered(last, params, panel_new, options, horizon, log_weights=log_w)
    reason = (f"absorbed {n_new} new period(s) by reweighting {fit.n_draws} draws" if n_new
              else "no new periods: the fit already covers the data")
    return UpdateResult(
        "update", reason, log_filtered=step.log_filtered_report, filtered=filtered, forecast=forecast,
        **diag, **common,
    )


def update_or_refit(
    fit: Fit,
    panel_new: xr.Dataset,
    refit: Callable[[xr.Dataset], Fit] | None = None,
    **kwargs: Any,
) -> UpdateResult:
    """Update when the weights are trusted; otherwise refit (``refit`` given: "auto") or say so ("tell").

    Parameters
    ----------
    fit : forecast.fitfile.Fit
        The base fit.
    panel_new : xarray.Dataset
        The panel of the extended data.
    refit : callable, optional
        ``refit(panel_new) -> Fit``, e.g. ``functools.partial(forecast.fitting.fit, seed=...)``. When None the
        ``refit_required`` result is returned as is.
    **kwargs
        Passed to :func:`update`.

    Returns
    -------
    UpdateResult
        The update, or on ``refit_required`` with ``refit`` given, a result with ``path == "refit"`` whose
        ``refit`` attribute holds the new fit and whose ``reason`` says why it was needed.
    """
    result = update(fit, panel_new, **kwargs)
    if result.path != "refit_required" or refit is None:
        return result
    logger.info("refitting: %s", result.reason)
    new_fit = refit(panel_new)
    return dataclasses.replace(result, path="refit", reason=f"refitted because {result.reason}", refit=new_fit)


# --------------------------------------------------------------------------------------------------------------
# building blocks shared with forecast.attribution
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaseFiltered:
    """Per-draw filtered state of the last fitted period.

    Attributes
    ----------
    weight_last : numpy.ndarray
        (N, 4) log filtered distribution including analyst-label evidence when the fit used labels (the
        conditioning the posterior had, hence the one importance ratios must continue from).
    report_last : numpy.ndarray
        (N, 4) the evidence-only filtered distribution (what is reported).
    loglik_inc : numpy.ndarray or None
        (N, T) per-period log-likelihood increments of the fitted periods under the weight filter; None when the
        states were read from the fit file's ``filtered_state`` group rather than filtered again.
    report_inc : numpy.ndarray or None
        (N, T) the same under the evidence-only filter (the fit file's ``log_likelihood``); the same array as
        ``loglik_inc`` when the fit used no labels, None when not filtered.
    """

    weight_last: np.ndarray
    report_last: np.ndarray
    loglik_inc: np.ndarray | None = None
    report_inc: np.ndarray | None = None


@dataclass(frozen=True)
class Absorbed:
    """New periods pushed through the forward filter for every draw.

    Attributes
    ----------
    log_ratio : numpy.ndarray
        (N,) ``sum_t log p(y_t | y_<t, θ)`` over the new periods (label evidence included when used).
    log_filtered_report : numpy.ndarray
        (N, m, 4) evidence-only log filtered distributions of the new periods.
    """

    log_ratio: np.ndarray
    log_filtered_report: np.ndarray


def slice_inputs(inputs: ModelInputs, start: int, stop: int | None = None) -> ModelInputs:
    """The periods ``start:stop`` of ``inputs`` (every per-period array sliced, the rest kept).

    Parameters
    ----------
    inputs : forecast.inputs.ModelInputs
        Inputs of a whole panel (drivers already lagged, so slicing keeps each row's meaning).
    start, stop : int
        Period range.

    Returns
    -------
    forecast.inputs.ModelInputs
        The sliced inputs.
    """
    sl = slice(start, stop)
    per_period = ("periods", "y_count", "log_exposure", "count_mask", "z_level", "level_mask", "x_std", "label",
                  "label_confidence")
    return dataclasses.replace(inputs, **{name: getattr(inputs, name)[sl] for name in per_period})


def filter_history(params: dict[str, np.ndarray], inputs: ModelInputs, use_labels: bool) -> BaseFiltered:
    """Run the forward filter over all periods of ``inputs`` for every draw.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Draws from :func:`forecast.emissions.params_from_posterior`.
    inputs : forecast.inputs.ModelInputs
        The fitted periods.
    use_labels : bool
        Whether the fit conditioned on analyst labels.

    Returns
    -------
    BaseFiltered
        The last period's filtered distributions and the per-period increments of both filters.
    """
    from forecast import emissions

    n = emissions.n_draws(params)
    if n > emissions.DRAW_CHUNK:  # a chunk at a time: the filter's temporaries grow with the draws filtered together
        parts = [filter_history(emissions.take_draws(params, slice(lo, lo + emissions.DRAW_CHUNK)), inputs,
                                use_labels) for lo in range(0, n, emissions.DRAW_CHUNK)]
        weight_inc = np.concatenate([p.loglik_inc for p in parts])
        report_inc = np.concatenate([p.report_inc for p in parts]) if parts[0].report_inc is not parts[0].loglik_inc \
            else weight_inc
        return BaseFiltered(weight_last=np.concatenate([p.weight_last for p in parts]),
                            report_last=np.concatenate([p.report_last for p in parts]),
                            loglik_inc=weight_inc, report_inc=report_inc)
    log_init = emissions.log_initial(params)
    log_trans = emissions.transition_model(params, inputs.x_std)  # unexpanded: O(K) per period and draw
    log_obs = emissions.log_emission(params, inputs)
    if use_labels and np.any(inputs.label >= 0):
        # both filters in one pass: a leading axis of 2 (evidence only, evidence + labels) broadcast against the
        # transitions, so the transition normalisers are computed once; time-major memory for the period loop
        stacked = np.empty((inputs.n_periods, 2, *log_obs.shape[:1], log_obs.shape[-1]))
        stacked[:, 0] = np.moveaxis(log_obs, 1, 0)
        stacked[:, 1] = stacked[:, 0] + inputs.label_log_evidence()[:, None, :]
        filt, inc = hmm.forward(log_init, log_trans, np.moveaxis(stacked, 0, 2))
        return BaseFiltered(weight_last=filt[1, :, -1, :], report_last=filt[0, :, -1, :], loglik_inc=inc[1],
                            report_inc=inc[0])
    filt, inc = hmm.forward(log_init, log_trans, log_obs)
    return BaseFiltered(weight_last=filt[:, -1, :], report_last=filt[:, -1, :], loglik_inc=inc, report_inc=inc)


def absorb_periods(
    params: dict[str, np.ndarray], inputs: ModelInputs, start: int, base: BaseFiltered, *, use_labels: bool = True
) -> Absorbed:
    """Filter the periods ``start:`` of ``inputs`` onward from the base filtered state, for every draw.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Draws from :func:`forecast.emissions.params_from_posterior`.
    inputs : forecast.inputs.ModelInputs
        Inputs of the whole extended panel (built with the fit's options).
    start : int
        Index of the first new period (the number of fitted periods).
    base : BaseFiltered
        Filtered states of period ``start − 1``.
    use_labels : bool, optional
        Add label evidence of the new periods to the importance ratios (when the fit used labels, ``inputs``
        carries them; otherwise its labels are already −1).

    Returns
    -------
    Absorbed
        Log importance ratios and evidence-only filtered distributions of the new periods.
    """
    from forecast import emissions

    n_draws = base.weight_last.shape[0]
    new = slice_inputs(inputs, start)
    m = new.n_periods
    if m == 0:
        return Absorbed(np.zeros(n_draws), np.zeros((n_draws, 0, base.report_last.shape[-1])))
    log_obs = emissions.log_emission(params, new)
    log_trans = emissions.log_transitions_from_x(params, new.x_std)
    label_ev = new.label_log_evidence() if use_labels else np.zeros((m, log_obs.shape[-1]))
    has_labels = bool(np.any(label_ev != 0)) or base.weight_last is not base.report_last
    w_state, r_state = base.weight_last, base.report_last
    log_ratio = np.zeros(n_draws)
    out = np.empty((n_draws, m, log_obs.shape[-1]))
    for t in range(m):
        w_state, inc = hmm.forward_step(w_state, log_trans[:, t], log_obs[:, t] + label_ev[t])
        log_ratio += inc
        if has_labels:
            r_state, _ = hmm.forward_step(r_state, log_trans[:, t], log_obs[:, t])
        else:
            r_state = w_state
        out[:, t] = r_state
    return Absorbed(log_ratio=log_ratio, log_filtered_report=out)


def stored_base_filtered(fit: Fit) -> BaseFiltered | None:
    """Each draw's last fitted filtered state as stored in the fit file, or None when the file has none.

    Parameters
    ----------
    fit : forecast.fitfile.Fit
        The fit. Its ``filtered_state`` group (written by :func:`forecast.fitting.fit` since it exists) holds
        the state given the evidence alone and the state given everything the fit conditioned on (the
        evidence and, when the fit used them, the analyst labels).

    Returns
    -------
    BaseFiltered or None
        ``weight_last`` from the conditioned state, ``report_last`` from the evidence-only one (the same array
        when the two are equal), no increments; None when the group is absent or does not belong to the
        fitted periods (an older fit file): the caller then filters the history again.
    """
    state = fit.filtered_state
    if state is None:
        return None
    last_period = np.asarray(fit.tree["panel"]["period"].values[-1], dtype="datetime64[ns]")
    if np.asarray(state["period"].values, dtype="datetime64[ns]") != last_period:
        logger.warning("the fit file's filtered_state is not of its last fitted period; filtering again")
        return None
    n_scen = state.sizes["scenario"]
    report = np.asarray(state["log_filtered"].values, dtype=float).reshape(-1, n_scen)
    weight = np.asarray(state["log_filtered_conditioned"].values, dtype=float).reshape(-1, n_scen)
    if np.array_equal(weight, report):
        weight = report
    return BaseFiltered(weight_last=weight, report_last=report)


def _base_filtered(params: dict[str, np.ndarray], inputs: ModelInputs, n_old: int, use_labels: bool,
                   states: Any, fit: Fit | None = None) -> BaseFiltered:
    if fit is not None:
        stored = stored_base_filtered(fit)
        if stored is not None and stored.weight_last.shape[0] == fitted_draws(params):
            return stored
    fitted = slice_inputs(inputs, 0, n_old)
    labelled = use_labels and bool(np.any(fitted.label >= 0))
    usable = (states is not None and np.asarray(states.log_filtered).shape[:2] == (fitted_draws(params), n_old)
              and getattr(states, "log_weights", None) is None)
    if states is not None and not usable:
        logger.warning("ignoring the given states: they are not every unweighted draw over the fitted periods")
    if usable and not labelled:
        last = np.asarray(states.log_filtered)[..., -1, :]
        last = last.reshape(-1, last.shape[-1])
        inc = np.asarray(states.loglik_inc).reshape(last.shape[0], -1)
        return BaseFiltered(weight_last=last, report_last=last, loglik_inc=inc)
    return filter_history(params, fitted, use_labels)


def fitted_draws(params: dict[str, np.ndarray]) -> int:
    """Number of draws N in a parameter dict."""
    return int(next(iter(params.values())).shape[0])


# --------------------------------------------------------------------------------------------------------------
# saving and loading
# --------------------------------------------------------------------------------------------------------------
def save_update(result: UpdateResult, path: str | Path) -> Path:
    """Write an update result to netCDF atomically (no pickles; the refit itself is not stored).

    Parameters
    ----------
    result : UpdateResult
        The result to write.
    path : str or pathlib.Path
        Target, conventionally ``*.update.nc``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    meta = {
        "path": result.path,
        "reason": result.reason,
        "pareto_k": _finite_or_none(result.pareto_k),
        "ess": _finite_or_none(result.ess),
        "n_draws": result.n_draws,
        "periods_absorbed": list(result.periods_absorbed),
        "revisions": [dataclasses.asdict(r) for r in result.revisions],
        "base_fit_sha256": result.base_fit_sha256,
        "data_sha256": result.data_sha256,
        "thresholds": result.thresholds,
    }
    ds = xr.Dataset(attrs={"forecast_update_format": UPDATE_FORMAT, "meta": json.dumps(meta, sort_keys=True)})
    if result.log_weights is not None:
        ds["log_weights"] = ("sample", np.asarray(result.log_weights, dtype=float))
    if result.log_ratio is not None:
        ds["log_ratio"] = ("sample", np.asarray(result.log_ratio, dtype=float))
    if result.log_filtered is not None:
        ds["log_filtered"] = (("sample", "new_period", "scenario"), np.asarray(result.log_filtered, dtype=float))
        ds = ds.assign_coords(new_period=np.asarray(pd.DatetimeIndex(list(result.periods_absorbed)),
                                                    dtype="datetime64[ns]"))
    for name, table in (("filtered", result.filtered), ("forecast", result.forecast)):
        if table is not None:
            for column in table.columns:
                values = table[column].to_numpy()
                if values.dtype == object:
                    values = values.astype(str)
                ds[f"{name}__{column}"] = (f"{name}_row", values)
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine=NETCDF_ENGINE)
    logger.info("wrote update file %s", path)
    return path


def load_update(path: str | Path) -> UpdateResult:
    """Read an update file written by :func:`save_update`.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    UpdateResult
        The result (without ``refit``).

    Raises
    ------
    FitFileError
        If the file is missing, unreadable, or not an update file of this format.
    """
    path = Path(path)
    ds = read_netcdf(path, "update file", "an update file",
                     missing_fix="run 'forecast update --json' or pass the right path",
                     damaged_fix="run 'forecast update' again")
    if int(np.asarray(ds.attrs.get("forecast_update_format", -1)).item()) != UPDATE_FORMAT or "meta" not in ds.attrs:
        raise FitFileError(path, "not an update file of this version", "run 'forecast update' again")
    meta = json.loads(ds.attrs["meta"])
    tables: dict[str, pd.DataFrame | None] = {}
    for name in ("filtered", "forecast"):
        cols = [str(v)[len(name) + 2:] for v in ds.data_vars if str(v).startswith(f"{name}__")]
        if not cols:
            tables[name] = None
            continue
        frame = pd.DataFrame({c: ds[f"{name}__{c}"].values for c in cols})
        if "scenario" in frame:
            frame["scenario"] = frame["scenario"].astype(str).astype(object)
        tables[name] = frame

    def arr(name: str) -> np.ndarray | None:
        return np.asarray(ds[name].values) if name in ds else None

    return UpdateResult(
        path=meta["path"],
        reason=meta["reason"],
        pareto_k=meta["pareto_k"],
        ess=meta["ess"],
        n_draws=int(meta["n_draws"]),
        periods_absorbed=tuple(meta["periods_absorbed"]),
        revisions=tuple(RevisedCell(**r) for r in meta["revisions"]),
        base_fit_sha256=meta["base_fit_sha256"],
        data_sha256=meta["data_sha256"],
        thresholds=meta["thresholds"],
        log_weights=arr("log_weights"),
        log_ratio=arr("log_ratio"),
        log_filtered=arr("log_filtered"),
        filtered=tables["filtered"],
        forecast=tables["forecast"],
    )


def _logsumexp(a: np.ndarray) -> float:
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return -np.inf
    m = finite.max()
    return float(m + np.log(np.exp(finite - m).sum()))


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _text(value: Any) -> str:
    value = np.asarray(value).item()
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:g}"
    return str(value)
