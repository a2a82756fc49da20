"""Report figures as self-contained ``data:image/png;base64,...`` URIs (matplotlib, Agg backend).

Every function returns a data URI for an ``<img src=...>``; no file and no network are involved.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecast.scenarios import SCENARIO_COLOURS, SCENARIOS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from forecast.report.content import Content

#: One colour per scenario (the same in every figure of the package).
COLOURS = SCENARIO_COLOURS


def _figure(width: float = 9.0, height: float = 3.6, nrows: int = 1, ncols: int = 1,
            **kwargs: Any) -> tuple[Figure, Any]:
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    for ax in axes.ravel():
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    top = 1 - 0.45 / height
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.35 / height + 0.05, top=top, hspace=0.55, wspace=0.25)
    return fig, axes


def to_data_uri(fig: Figure) -> str:
    """Render a figure to a base64 PNG data URI.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.

    Returns
    -------
    str
        ``data:image/png;base64,...``.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def history_plot(content: Content, labels: pd.DataFrame, start: str = "1990-01-01") -> str:
    """Smoothed scenario probabilities since ``start`` with the analyst labels as bands above.

    Parameters
    ----------
    content : Content
        Computed content.
    labels : pandas.DataFrame
        Analyst labels (``start, end, scenario, confidence``).
    start : str, optional
        First period shown.

    Returns
    -------
    str
        PNG data URI.
    """
    fig, axes = _figure(10, 4.2)
    ax = axes[0, 0]
    keep = content.periods >= pd.Timestamp(start)
    x = content.periods[keep]
    for s, scenario in enumerate(SCENARIOS):
        ax.plot(x, content.smoothed.mean[keep, s], color=COLOURS[s], lw=1.3, label=scenario)
        ax.fill_between(x, content.smoothed.lower[keep, s], content.smoothed.upper[keep, s], color=COLOURS[s],
                        alpha=0.07, lw=0)
    for row in labels.itertuples():
        s = SCENARIOS.index(row.scenario)
        ax.axvspan(pd.Timestamp(row.start), pd.Timestamp(row.end), ymin=1.0, ymax=1.06, color=COLOURS[s],
                   alpha=float(row.confidence), clip_on=False, lw=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("smoothed probability")
    ax.set_title("Smoothed scenario probabilities with 90% intervals (bars above: analyst labels, opacity = "
                 "confidence)",
                 fontsize=10, pad=14)
    ax.legend(loc="upper left", fontsize=8, ncols=4)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def forecast_plot(content: Content, history_periods: int = 24) -> str:
    """Fan chart: filtered probabilities of the last periods, then the forecast with 90% intervals.

    Parameters
    ----------
    content : Content
        Computed content.
    history_periods : int, optional
        Number of observed periods shown before the forecast.

    Returns
    -------
    str
        PNG data URI.
    """
    fig, axes = _figure(10, 4.0)
    ax = axes[0, 0]
    past = content.periods[-history_periods:]
    for s, scenario in enumerate(SCENARIOS):
        ax.plot(past, content.filtered.mean[-history_periods:, s], color=COLOURS[s], lw=1.3, label=scenario)
        xs = pd.DatetimeIndex([content.periods[-1], *content.forecast_periods])
        mean = np.r_[content.filtered.mean[-1, s], content.forecast.mean[:, s]]
        lower = np.r_[content.filtered.lower[-1, s], content.forecast.lower[:, s]]
        upper = np.r_[content.filtered.upper[-1, s], content.forecast.upper[:, s]]
        ax.plot(xs, mean, color=COLOURS[s], lw=1.3, ls="--")
        ax.fill_between(xs, lower, upper, color=COLOURS[s], alpha=0.15, lw=0)
    ax.axvline(content.periods[-1], color="grey", lw=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title("Filtered probabilities and forecast (dashed) with 90% intervals", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncols=4)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def indicator_plot(table: pd.DataFrame) -> str:
    """Small multiples of every indicator over the last periods (gaps where unobserved).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`forecast.report.content.indicator_table`.

    Returns
    -------
    str
        PNG data URI.
    """
    ids = list(dict.fromkeys(table["indicator"]))
    ncols = 3
    nrows = max(1, -(-len(ids) // ncols))
    fig, axes = _figure(10, 1.8 * nrows + 0.4, nrows, ncols, sharex=True)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(ids):
            ax.set_visible(False)
            continue
        sub = table[table["indicator"] == ids[k]]
        if sub["kind"].iloc[0] == "count":
            ax.bar(sub["period"], sub["value"].fillna(0), width=20, color="#555555")
        else:
            ax.plot(sub["period"], sub["value"], marker="o", ms=3, color="#555555")
        ax.set_title(f"{ids[k]} ({sub['role'].iloc[0]})", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    return to_data_uri(fig)


def what_if_plot(comparison: dict[str, Any], periods: pd.DatetimeIndex) -> str:
    """Baseline forecast (solid) against the what-if forecast (dashed, with 90% interval).

    Parameters
    ----------
    comparison : dict
        One entry of :attr:`forecast.report.content.Content.what_if`.
    periods : pandas.DatetimeIndex
        Forecast periods.

    Returns
    -------
    str
        PNG data URI.
    """
    fig, axes = _figure(9, 3.4)
    ax = axes[0, 0]
    alt = comparison["what_if"]
    for s, scenario in enumerate(SCENARIOS):
        ax.plot(periods, comparison["baseline"][:, s], color=COLOURS[s], lw=1.3, label=scenario)
        ax.plot(periods, alt.mean[:, s], color=COLOURS[s], lw=1.3, ls="--")
        ax.fill_between(periods, alt.lower[:, s], alt.upper[:, s], color=COLOURS[s], alpha=0.12, lw=0)
    ax.set_ylim(0, 1)
    ax.set_title("Baseline (solid) and what-if (dashed) forecasts", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncols=4)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def trajectory_plot(entries: list[dict[str, Any]]) -> str:
    """Current probabilities across report vintages (one point per report).

    Parameters
    ----------
    entries : list of dict
        ``reports/index.json`` entries, oldest first (``as_of`` and ``current``).

    Returns
    -------
    str
        PNG data URI.
    """
    fig, axes = _figure(9, 3.4)
    ax = axes[0, 0]
    x = pd.DatetimeIndex([pd.Timestamp(e["as_of"]) for e in entries])
    for s, scenario in enumerate(SCENARIOS):
        mean = [e["current"][scenario]["mean"] for e in entries]
        lower = [e["current"][scenario]["lower"] for e in entries]
        upper = [e["current"][scenario]["upper"] for e in entries]
        ax.plot(x, mean, color=COLOURS[s], marker="o", ms=4, lw=1.2, label=scenario)
        ax.fill_between(x, lower, upper, color=COLOURS[s], alpha=0.12, lw=0)
    pad = pd.Timedelta(days=20)
    ax.set_xlim(x.min() - pad, x.max() + pad)
    ax.set_ylim(0, 1)
    ax.set_title("Current probabilities by report (90% intervals)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncols=4)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)
