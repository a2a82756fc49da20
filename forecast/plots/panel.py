"""Small multiples of a panel: one row per indicator, analyst labels shaded."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from forecast.atomic import atomic_path
from forecast.scenarios import SCENARIO_COLOURS, SCENARIOS

logger = logging.getLogger(__name__)

_WIDTH_INCHES, _ROW_INCHES, _TOP_INCHES, _BOTTOM_INCHES = 11.0, 1.3, 0.45, 0.75
#: Width of one character of the 8-point row names, generously rounded up (inches).
_NAME_CHAR_INCHES = 0.07


def _period_edges(periods: np.ndarray) -> np.ndarray:
    """(T + 1,) period boundaries: each period's start, then the end of the last one."""
    if periods.size == 0:
        return periods
    step = periods[-1] - periods[-2] if periods.size > 1 else np.timedelta64(31, "D")
    return np.append(periods, periods[-1] + step)


def _runs(codes: np.ndarray, edges: np.ndarray) -> list[tuple[np.datetime64, np.datetime64, int]]:
    """Runs of consecutive periods with the same code: (first period start, next period start, code)."""
    if codes.size == 0:
        return []
    change = np.flatnonzero(np.diff(codes) != 0) + 1
    bounds = np.concatenate([[0], change, [codes.size]])
    return [(edges[a], edges[b], int(codes[a])) for a, b in itertools.pairwise(bounds)]


def _label_spans(panel: xr.Dataset) -> list[tuple[np.datetime64, np.datetime64, int]]:
    """Runs of consecutive periods with the same label: (first period start, next period start, scenario)."""
    label = panel["label"].values.astype(int)
    return [run for run in _runs(label, _period_edges(panel["period"].values)) if run[2] >= 0]


def plot_panel(panel: xr.Dataset) -> Figure:
    """Draw the panel's signals and drivers as small multiples sharing the time axis.

    Counts are drawn as filled steps (one bar per period), levels as points joined by a line; periods outside
    an indicator's coverage are hatched grey; analyst labels are shaded in their scenario's colour on every row.

    Parameters
    ----------
    panel : xarray.Dataset
        A panel from :func:`forecast.panel.build_panel`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not attached to any GUI backend).
    """
    rows: list[tuple[str, np.ndarray, np.ndarray, str]] = []
    for name in panel["signal"].values.tolist():
        cell = panel.sel(signal=name)
        rows.append((name, cell["y"].values, cell["exposure"].values > 0, str(cell["kind"].values)))
    for name in panel["driver"].values.tolist():
        cell = panel.sel(driver=name)
        rows.append((f"{name} (driver)", cell["x"].values, cell["x_exposure"].values > 0, "count"))
    periods = panel["period"].values
    edges = _period_edges(periods)
    n = max(len(rows), 1)
    # fixed margins in inches (title on top, legend at the bottom, names on the left) instead of a layout
    # engine: the figure's size is known, and constrained layout redrew every tick several times per render
    height = _ROW_INCHES * n + _TOP_INCHES + _BOTTOM_INCHES
    left = min(0.6 + _NAME_CHAR_INCHES * max((len(row[0]) for row in rows), default=0), _WIDTH_INCHES / 3)
    figure = Figure(figsize=(_WIDTH_INCHES, height))
    FigureCanvasAgg(figure)
    axes = figure.subplots(n, 1, sharex=True, squeeze=False, gridspec_kw={
        "left": left / _WIDTH_INCHES, "right": 1 - 0.2 / _WIDTH_INCHES,
        "top": 1 - _TOP_INCHES / height, "bottom": _BOTTOM_INCHES / height, "hspace": 0.25,
    })[:, 0]
    spans = _label_spans(panel)
    # few artists per row whatever the number of periods: one span per run of labels or of missing coverage,
    # one step patch for all counts, one line for a level (thousands of bars made drawing take seconds)
    for ax, (name, values, covered, kind) in zip(axes, rows, strict=False):
        for start, stop, code in spans:
            ax.axvspan(start, stop, color=SCENARIO_COLOURS[code], alpha=0.18, linewidth=0)
        for start, stop, inside in _runs(covered.astype(int), edges):
            if not inside:
                ax.axvspan(start, stop, facecolor="0.85", hatch="//", edgecolor="0.7", linewidth=0)
        if kind == "count":
            if periods.size:
                ax.stairs(np.nan_to_num(values), edges, fill=True, color="0.2", linewidth=0)
        else:
            ok = np.isfinite(values)
            ax.plot(periods[ok], values[ok], marker="o", markersize=2.5, linewidth=0.8, color="0.2")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    if not rows:
        axes[0].text(0.5, 0.5, "no indicators", ha="center", va="center", transform=axes[0].transAxes)
    handles = [Patch(color=c, alpha=0.35, label=f"label: {s}")
               for s, c in zip(SCENARIOS, SCENARIO_COLOURS, strict=True)]
    handles.append(Patch(facecolor="0.85", hatch="//", edgecolor="0.7", label="outside coverage"))
    # the legend goes below the rows: at the top it shared the title's space and overlapped it when the figure
    # was shown inline (cropped to its tight bounding box)
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.05 / height), ncols=len(handles),
                  fontsize=8, frameon=False)
    freq = panel.attrs.get("freq", "M")
    figure.suptitle(f"Panel per {'month' if freq == 'M' else 'quarter'}, observed through "
                    f"{panel.attrs.get('observed_through', '?')}", fontsize=10, y=1 - 0.1 / height, va="top")
    return figure


def save_panel_plot(panel: xr.Dataset, path: str | Path, dpi: int = 120) -> Path:
    """Draw :func:`plot_panel` and write it as PNG atomically.

    Parameters
    ----------
    panel : xarray.Dataset
        A panel from :func:`forecast.panel.build_panel`.
    path : str or pathlib.Path
        Target PNG file; replaced atomically (a reader sees the old file or the new one).
    dpi : int, optional
        Resolution.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    figure = plot_panel(panel)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    logger.info("wrote %s", path)
    return path
