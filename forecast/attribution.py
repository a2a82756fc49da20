"""What changed since the previous report, and which observations moved it.

The previous report's probabilities came from a posterior (a fit, possibly reweighted by an update) and a panel.
The new report's data differ by some observation rows: new events, new measurements, revised or deleted rows.
Each changed row is attributed its share of the change by *leave-one-observation-out reweighting*: the row's
contribution is removed from its panel cell (a count goes down by its value, a level measurement leaves its
period's mean, a deleted row is put back), the periods from that cell on are filtered again for every posterior
draw, the draws are reweighted (PSIS) from the previous vintage to that counterfactual panel, and the row's
attribution is the new probability minus the counterfactual one. What the rows do not explain — the passage of
time into new periods (transitions, months with no events), and the difference between a refit and the
reweighted previous posterior — is reported as a residual, so that attributions and residual add up to the
total change.

Drivers act on transitions with a lag: a missile launch in the newest month cannot move that month's filtered
probability, only the forecast. Both the current probability and the 3-period-ahead forecast are attributed.

The entry points are :func:`attribute` (given the changed rows) and :func:`attribute_observations` (given the
observation tables of the two vintages; it finds the changed rows with :func:`diff_rows`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from forecast import hmm
from forecast.inputs import ModelInputs, build_inputs
from forecast.scenarios import SCENARIOS
from forecast.update import (
    BaseFiltered,
    absorb_periods,
    find_revisions,
    psis_weights,
    stored_base_filtered,
    structure_changes,
)

if TYPE_CHECKING:
    from forecast.fitfile import Fit

logger = logging.getLogger(__name__)

#: The forecast horizon (periods ahead of the latest period) whose change is attributed.
FORECAST_HORIZON = 3
#: Changes smaller than this many percentage points are not mentioned in the summary.
MENTION_POINTS = 0.5
#: At most this many moves are described in the summary (largest first).
MAX_SENTENCES = 4
#: Description of the residual rows of the table.
RESIDUAL = "new periods, time passing and refit (not explained by single rows)"
#: How the summary names :data:`RESIDUAL` when it is what moved a probability.
RESIDUAL_PHRASE = "the new period(s) and time passing"


@dataclass(frozen=True)
class DataRow:
    """One validated observation row of a data vintage, and whether it was added or removed between two.

    A row of :func:`forecast.observations.load_observations` (numeric value, file and line) plus the direction
    of the change; :class:`forecast.ingest.ObservationRow`'s text rows are for rewriting files instead.

    Parameters
    ----------
    date : str
        ISO date of the event or measurement.
    indicator : str
        Indicator id.
    value : float
        The row's value (1 for one event).
    file : str
        File the row is in.
    line : int
        1-based line number (the header is line 1).
    source : str, optional
        The row's source.
    note : str, optional
        The row's note.
    change : str, optional
        ``"added"`` (in the new data only) or ``"removed"`` (in the previous data only).
    """

    date: str
    indicator: str
    value: float
    file: str
    line: int
    source: str = ""
    note: str = ""
    change: str = "added"

    def key(self) -> tuple[str, str, float, str, str]:
        """What makes two rows the same observation (file and line may move when rows are inserted)."""
        return (str(self.date)[:10], self.indicator, float(self.value), self.source, self.note)

    def describe(self, names: dict[str, str] | None = None) -> str:
        """Plain-language description, e.g. ``"ICBM launch on 2026-03-14 (nk_icbm_launches)"``.

        Parameters
        ----------
        names : dict of str to str, optional
            Indicator id → readable name (from the catalog); the id alone is used when absent.

        Returns
        -------
        str
            Description naming what, when and which indicator.
        """
        name = (names or {}).get(self.indicator, self.indicator)
        amount = "" if self.value == 1 else f" (value {self.value:g})"
        text = f"{name}{amount} on {str(self.date)[:10]} ({self.indicator})"
        return f"removed row: {text}" if self.change == "removed" else text


@dataclass
class Attribution:
    """Attribution of the change between two report vintages.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per changed observation (and one residual entry) and scenario: ``row`` (description), ``file``,
        ``line``, ``scenario``, ``current`` and ``forecast`` (change in percentage points of the current
        probability and of the ``FORECAST_HORIZON``-ahead forecast attributed to that row).
    totals : pandas.DataFrame
        Per scenario: ``previous``, ``new`` and ``change`` (points) of the current probability and
        ``forecast_previous``, ``forecast_new``, ``forecast_change``.
    summary : str
        Plain-language summary generated from the numbers.
    pareto_k : float
        Largest Pareto k̂ of the reweightings behind the table (above 0.7 the attributions are rough).
    """

    table: pd.DataFrame
    totals: pd.DataFrame
    summary: str
    pareto_k: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (records)."""
        return {
            "table": self.table.to_dict(orient="records"),
            "totals": self.totals.to_dict(orient="records"),
            "summary": self.summary,
            "pareto_k": float(self.pareto_k) if np.isfinite(self.pareto_k) else None,
        }


def diff_rows(previous: Iterable[DataRow], new: Iterable[DataRow]) -> list[DataRow]:
    """Rows added in ``new`` and rows of ``previous`` missing from ``new`` (a revised row is both).

    Parameters
    ----------
    previous, new : iterable of DataRow
        The observation rows of the two data vintages.

    Returns
    -------
    list of DataRow
        Added rows (``change="added"``, file/line in the new data) then removed rows (``change="removed"``,
        file/line in the previous data). Identical rows are matched as multisets.
    """
    previous, new = list(previous), list(new)
    remaining = Counter(r.key() for r in previous)
    added = []
    for row in new:
        if remaining[row.key()] > 0:
            remaining[row.key()] -= 1
        else:
            added.append(dataclasses.replace(row, change="added"))
    still = Counter(r.key() for r in new)
    removed = []
    for row in previous:
        if still[row.key()] > 0:
            still[row.key()] -= 1
        else:
            removed.append(dataclasses.replace(row, change="removed"))
    return added + removed


def rows_from_frame(frame: pd.DataFrame) -> list[DataRow]:
    """Observation rows from a table with columns ``date, indicator, value, file, line`` (+ ``source, note``).

    Parameters
    ----------
    frame : pandas.DataFrame
        E.g. the observations table of :class:`forecast.dataset.Dataset`.

    Returns
    -------
    list of DataRow
        One per table row.
    """
    out = []
    for rec in frame.to_dict(orient="records"):
        note = rec.get("note", "")
        out.append(DataRow(
            date=str(pd.Timestamp(rec["date"]).date()), indicator=str(rec["indicator"]), value=float(rec["value"]),
            file=str(rec.get("file", "")), line=int(rec.get("line", 0) or 0), source=str(rec.get("source", "") or ""),
            note="" if note is None or (isinstance(note, float) and np.isnan(note)) else str(note),
        ))
    return out


def remove_row(panel: xr.Dataset, row: DataRow, rows_in_cell: int = 1) -> xr.Dataset:
    """The panel without ``row``'s contribution to its cell (or with it put back, for a removed row).

    Parameters
    ----------
    panel : xarray.Dataset
        The panel built from the data the row belongs to (for ``"removed"`` rows: the data without it).
    row : DataRow
        The row.
    rows_in_cell : int, optional
        Level indicators: how many measurements the cell's mean is over in ``panel`` (the row included for an
        added row, excluded for a removed one).

    Returns
    -------
    xarray.Dataset
        A modified copy; ``panel`` is untouched. A row outside the panel's periods or indicators leaves it as is.
    """
    t = period_index(panel, row.date)
    out = panel.copy(deep=True)
    if t is None:
        logger.warning("row %s:%s (%s) lies outside the panel's periods", row.file, row.line, row.date)
        return out
    sign = -1.0 if row.change == "added" else 1.0
    if row.indicator in panel["driver"].values.tolist():
        cell = {"period": t, "driver": panel["driver"].values.tolist().index(row.indicator)}
        old = float(out["x"][cell])
        if np.isfinite(old):
            out["x"][cell] = max(old + sign * row.value, 0.0)
        return out
    if row.indicator not in panel["signal"].values.tolist():
        logger.warning("row %s:%s names %s, which is not in the panel", row.file, row.line, row.indicator)
        return out
    k = panel["signal"].values.tolist().index(row.indicator)
    cell = {"period": t, "signal": k}
    old = float(out["y"][cell])
    if str(panel["kind"].values[k]) == "count":
        if bool(out["observed"][cell]) and np.isfinite(old):
            out["y"][cell] = max(old + sign * row.value, 0.0)
        return out
    n = max(int(rows_in_cell), 0)
    if row.change == "added":
        if n <= 1:
            out["y"][cell] = np.nan
            out["observed"][cell] = False
        else:
            out["y"][cell] = (n * old - row.value) / (n - 1)
    else:
        out["y"][cell] = row.value if n == 0 or not np.isfinite(old) else (n * old + row.value) / (n + 1)
        out["observed"][cell] = True
    return out


def period_index(panel: xr.Dataset, date: str) -> int | None:
    """Index of the panel period containing ``date`` (None outside the panel).

    Parameters
    ----------
    panel : xarray.Dataset
        A panel (``freq`` attribute ``"M"`` or ``"Q"``).
    date : str
        ISO date.

    Returns
    -------
    int or None
        Position along ``period``.
    """
    freq = "Q" if panel.attrs.get("freq") == "Q" else "M"
    start = pd.Timestamp(date).to_period(freq).start_time
    periods = pd.DatetimeIndex(panel["period"].values)
    hits = np.flatnonzero(periods == start)
    return int(hits[0]) if hits.size else None


class _Vintages:
    """The previous vintage's draws and filtered history, and reweighting to any modified panel.

    The filtered history of every draw over the previous panel is computed only when a panel differing inside
    it is evaluated. When every change lies after the previous panel (new months only) and the fit file stores
    each draw's last filtered state for exactly the previous panel (:func:`forecast.update.stored_base_filtered`),
    that state is all the reweighting needs and the history is never filtered again.
    """

    def __init__(self, fit: Fit, previous_panel: xr.Dataset, previous_log_weights: np.ndarray | None):
        from forecast import emissions

        self.fit = fit
        self.options = fit.options
        self.prev_inputs = build_inputs(previous_panel, self.options)
        self.params = emissions.params_from_posterior(fit.posterior, self.prev_inputs)
        self.n_draws = fit.n_draws
        self.prev_log_w = (np.full(self.n_draws, -np.log(self.n_draws)) if previous_log_weights is None
                           else np.asarray(previous_log_weights, dtype=float))
        self.log_init = emissions.log_initial(self.params)
        self._history: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.last = _stored_last_state(fit, previous_panel)
        if self.last is None:
            self.last = self._state_after(self.prev_inputs.n_periods)
        self.max_khat = -np.inf

    def history(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reported, conditioning, increments) filtered over the previous panel, computed on first use."""
        if self._history is None:
            self._history = self._filter(self.prev_inputs)
        return self._history

    def _state_after(self, t: int) -> BaseFiltered:
        """The filter of every draw after the previous panel's first ``t`` periods, from its filtered history."""
        report, weight, inc = self.history()
        base = BaseFiltered(weight_last=weight[:, t - 1], report_last=report[:, t - 1], loglik_inc=inc[:, :t])
        return dataclasses.replace(base, report_last=base.weight_last) if weight is report else base

    def _filter(self, inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward filter every draw over ``inputs``: (reported, conditioning, increments).

        The reported filtered states use the evidence alone; the conditioning states and their increments are
        what the fit's posterior conditions on (label evidence added when the fit used labels; otherwise the
        same arrays as reported).
        """
        from forecast import emissions

        log_trans = emissions.transition_model(self.params, inputs.x_std)
        log_obs = emissions.log_emission(self.params, inputs)
        report, inc = hmm.forward(self.log_init, log_trans, log_obs)
        if self.options.use_labels and np.any(inputs.label >= 0):
            weight, inc = hmm.forward(self.log_init, log_trans, log_obs + inputs.label_log_evidence())
            return report, weight, inc
        return report, report, inc

    def previous(self, horizon: int, panel: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Current probability and horizon-ahead forecast of the previous vintage (weighted means)."""
        w = np.exp(self.prev_log_w)
        last = self.last.report_last
        return w @ np.exp(last), self._forecast(last, panel, horizon, self.prev_log_w)

    def evaluate(self, panel: xr.Dataset, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Current probability and forecast under ``panel`` by reweighting the previous vintage's draws."""
        inputs = build_inputs(panel, self.options)
        t0 = _first_difference(self.prev_inputs, inputs)
        n_prev = self.prev_inputs.n_periods
        if t0 == 0:
            report, _, inc = self._filter(inputs)
            log_ratio = inc.sum(axis=1) - self.history()[2].sum(axis=1)
            last = report[:, -1, :]
        else:
            if t0 >= n_prev:  # nothing of the previous panel changed: continue from its last state
                base, dropped = self.last, 0.0
            else:
                base = self._state_after(t0)
                dropped = self.history()[2][:, t0:n_prev].sum(axis=1)
            step = absorb_periods(self.params, inputs, t0, base, use_labels=self.options.use_labels)
            log_ratio = step.log_ratio - dropped
            last = step.log_filtered_report[:, -1, :] if inputs.n_periods > t0 else base.report_last
        total = self.prev_log_w + log_ratio
        log_w, khat, _ = psis_weights(total)
        self.max_khat = max(self.max_khat, khat)
        w = np.exp(log_w)
        return w @ np.exp(last), self._forecast(last, panel, horizon, log_w)

    def _forecast(self, log_last: np.ndarray, panel: xr.Dataset, horizon: int, log_w: np.ndarray) -> np.ndarray:
        """Weighted mean forecast probabilities ``horizon`` periods after ``panel``'s last period."""
        from forecast.probabilities import forecast_from_filtered

        table = forecast_from_filtered(log_last, self.params, panel, self.options, horizon, log_weights=log_w)
        return table.loc[table["horizon"] == horizon, "mean"].to_numpy()


def _stored_last_state(fit: Fit, previous_panel: xr.Dataset) -> BaseFiltered | None:
    """The fit file's stored last filtered states when ``previous_panel`` is exactly the fitted panel."""
    if fit.filtered_state is None or previous_panel.sizes.get("period") != fit.tree["panel"].sizes.get("period"):
        return None  # an older fit file, or the previous report was itself an update (its panel runs past the fit)
    fitted = fit.panel
    if structure_changes(fitted, previous_panel) or find_revisions(fitted, previous_panel,
                                                                     labels=fit.options.use_labels):
        return None
    return stored_base_filtered(fit)


def attribute(
    fit: Fit,
    previous_panel: xr.Dataset,
    new_panel: xr.Dataset,
    changed_rows: Sequence[DataRow],
    *,
    previous_log_weights: np.ndarray | None = None,
    new_current: np.ndarray | None = None,
    new_forecast: np.ndarray | None = None,
    level_rows_in_cell: dict[tuple[str, int], int] | None = None,
    names: dict[str, str] | None = None,
    horizon: int = FORECAST_HORIZON,
) -> Attribution:
    """Attribute the change between the previous report and the new one to the changed observation rows.

    Parameters
    ----------
    fit : forecast.fitfile.Fit
        The fit behind the previous report.
    previous_panel : xarray.Dataset
        The panel the previous report was computed on (``fit.panel``, or its extension on an update path).
    new_panel : xarray.Dataset
        The panel of the new data.
    changed_rows : sequence of DataRow
        Rows added to or removed from the data since the previous report (:func:`diff_rows`).
    previous_log_weights : numpy.ndarray, optional
        (N,) normalised log weights of the previous report's draws (its update), uniform when omitted.
    new_current, new_forecast : numpy.ndarray, optional
        (4,) the new report's current probabilities and ``horizon``-ahead forecast (e.g. from a refit). When
        omitted they are computed by reweighting the previous vintage to ``new_panel``.
    level_rows_in_cell : dict, optional
        ``(indicator, period index) -> number of measurements`` in ``new_panel`` for level indicators that have
        changed rows; 1 when omitted.
    names : dict of str to str, optional
        Indicator id → readable name for the descriptions.
    horizon : int, optional
        Forecast horizon whose change is attributed.

    Returns
    -------
    Attribution
        Per-row attributions, the residual, totals and a plain-language summary.
    """
    vint = _Vintages(fit, previous_panel, previous_log_weights)
    prev_cur, prev_fc = vint.previous(horizon, previous_panel)
    full_cur, full_fc = vint.evaluate(new_panel, horizon)
    new_cur = full_cur if new_current is None else np.asarray(new_current, dtype=float)
    new_fc = full_fc if new_forecast is None else np.asarray(new_forecast, dtype=float)
    counts = level_rows_in_cell or {}
    records: list[dict[str, Any]] = []
    explained_cur = np.zeros(len(SCENARIOS))
    explained_fc = np.zeros(len(SCENARIOS))
    for row in changed_rows:
        t = period_index(new_panel, row.date)
        without = remove_row(new_panel, row, counts.get((row.indicator, t if t is not None else -1), 1))
        cur, fc = vint.evaluate(without, horizon)
        d_cur, d_fc = full_cur - cur, full_fc - fc
        explained_cur += d_cur
        explained_fc += d_fc
        for s, scenario in enumerate(SCENARIOS):
            records.append({"row": row.describe(names), "file": row.file, "line": row.line, "scenario": scenario,
                            "current": 100 * d_cur[s], "forecast": 100 * d_fc[s]})
    resid_cur = (new_cur - prev_cur) - explained_cur
    resid_fc = (new_fc - prev_fc) - explained_fc
    for s, scenario in enumerate(SCENARIOS):
        records.append({"row": RESIDUAL, "file": "", "line": 0, "scenario": scenario,
                        "current": 100 * resid_cur[s], "forecast": 100 * resid_fc[s]})
    table = pd.DataFrame.from_records(records, columns=["row", "file", "line", "scenario", "current", "forecast"])
    totals = pd.DataFrame({
        "scenario": list(SCENARIOS),
        "previous": 100 * prev_cur, "new": 100 * new_cur, "change": 100 * (new_cur - prev_cur),
        "forecast_previous": 100 * prev_fc, "forecast_new": 100 * new_fc, "forecast_change": 100 * (new_fc - prev_fc),
    })
    return Attribution(table=table, totals=totals, summary=summarise(table, totals, horizon),
                       pareto_k=float(vint.max_khat))


def attribute_observations(
    fit: Fit,
    previous_panel: xr.Dataset,
    new_panel: xr.Dataset,
    previous_observations: pd.DataFrame,
    new_observations: pd.DataFrame,
    **kwargs: Any,
) -> Attribution:
    """:func:`attribute` for two observation tables: finds the changed rows and the level-cell counts itself.

    Parameters
    ----------
    fit : forecast.fitfile.Fit
        The fit behind the previous report.
    previous_panel, new_panel : xarray.Dataset
        The panels of the previous and the new data.
    previous_observations, new_observations : pandas.DataFrame
        ``Dataset.observations`` of the two vintages (columns ``date, indicator, value, source, note, file,
        line``).
    **kwargs
        Passed to :func:`attribute` (``previous_log_weights``, ``new_current``, ``names``, ...).

    Returns
    -------
    Attribution
        As :func:`attribute`.
    """
    changed = diff_rows(rows_from_frame(previous_observations), rows_from_frame(new_observations))
    levels = {str(s) for s, k in zip(new_panel["signal"].values.tolist(), new_panel["kind"].values.tolist(),
                                     strict=True) if k == "level"}
    counts: dict[tuple[str, int], int] = {}
    if changed and levels:
        new_rows = [r for r in rows_from_frame(new_observations) if r.indicator in levels]
        tally = Counter((r.indicator, period_index(new_panel, r.date)) for r in new_rows)
        for row in changed:
            if row.indicator in levels:
                key = (row.indicator, period_index(new_panel, row.date))
                counts[key] = tally.get(key, 0)
    logger.info("attributing the change to %d changed observation row(s)", len(changed))
    return attribute(fit, previous_panel, new_panel, changed, level_rows_in_cell=counts, **kwargs)


def summarise(table: pd.DataFrame, totals: pd.DataFrame, horizon: int = FORECAST_HORIZON) -> str:
    """Plain-language summary of an attribution, generated from its numbers.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`Attribution.table`.
    totals : pandas.DataFrame
        :attr:`Attribution.totals`.
    horizon : int, optional
        The forecast horizon of the ``forecast`` columns.

    Returns
    -------
    str
        One sentence per scenario and quantity (now, ``horizon`` ahead) that moved by at least
        ``MENTION_POINTS`` points, largest first and at most ``MAX_SENTENCES``, naming the row that moved it most
        in the same direction; or a sentence saying nothing moved.
    """
    sentences = []
    for rec in totals.itertuples():
        for column, change, before, after, what in (
            ("current", rec.change, rec.previous, rec.new, "now"),
            ("forecast", rec.forecast_change, rec.forecast_previous, rec.forecast_new,
             f"{horizon} periods ahead"),
        ):
            if abs(change) < MENTION_POINTS:
                continue
            verb = "rose" if change > 0 else "fell"
            text = (f"{rec.scenario.replace('_', ' ').capitalize()} ({what}) {verb} {abs(change):.1f} points, "
                    f"from {before:.1f}% to {after:.1f}%")
            mine = table[table["scenario"] == rec.scenario]
            rows = mine[mine["row"] != RESIDUAL]
            residual = float(mine.loc[mine["row"] == RESIDUAL, column].sum())
            same = rows[np.sign(rows[column]) == np.sign(change)]
            if not same.empty:
                top = same.loc[same[column].abs().idxmax()]
                share = top[column] / change
                how = "mostly" if share >= 0.5 else "partly"
                text += f", {how} on {top['row']} ({top[column]:+.1f})"
            elif np.sign(residual) == np.sign(change):
                # no row pushed this way: say what did (the new period itself, time passing), and what pushed back
                text += f", not on any single new observation but on {RESIDUAL_PHRASE} ({residual:+.1f})"
                against = rows[np.sign(rows[column]) == -np.sign(change)]
                if not against.empty:
                    top = against.loc[against[column].abs().idxmax()]
                    if abs(top[column]) >= MENTION_POINTS:
                        text += f", against {top['row']} ({top[column]:+.1f})"
            else:
                text += ", not driven by any single new observation"
            sentences.append((abs(change), text + "."))
    if not sentences:
        return f"No scenario probability moved by {MENTION_POINTS} points or more, now or {horizon} periods ahead."
    sentences.sort(key=lambda item: -item[0])
    shown = [text for _, text in sentences[:MAX_SENTENCES]]
    if len(sentences) > MAX_SENTENCES:
        more = len(sentences) - MAX_SENTENCES
        shown.append(f"{more} smaller move{'s are' if more > 1 else ' is'} in the table.")
    return " ".join(shown)


def _first_difference(a: ModelInputs, b: ModelInputs) -> int:
    """First period index where two inputs differ (or where one ends)."""
    n = min(a.n_periods, b.n_periods)
    per_period = ("y_count", "log_exposure", "count_mask", "z_level", "level_mask", "x_std", "label",
                  "label_confidence")
    first = n
    for name in per_period:
        x, y = np.asarray(getattr(a, name))[:n], np.asarray(getattr(b, name))[:n]
        if x.dtype.kind == "f":
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        else:
            same = x == y
        same = same.reshape(n, -1).all(axis=1)
        bad = np.flatnonzero(~same)
        if bad.size:
            first = min(first, int(bad[0]))
    return first
