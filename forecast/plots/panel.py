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
from forecast.scenarios import SCENARIOS

logger = logging.getLogger(__name__)

#: One colour per scenario, in :data:`forecast.scenarios.SCENARIOS` order (colour-blind safe, Okabe–Ito).
SCENARIO_COLOURS: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")


def _label_spans(panel: xr.Dataset) -> list[tuple[np.datetime64, np.datetime64, int]]:
    """Runs of consecutive periods with the same label: (first period start, next period start, scenario)."""
    label = panel["label"].values.astype(int)
    starts = panel["period"].values
    if label.size == 0:
        return []
    step = starts[-1] - starts[-2] if starts.size > 1 else np.timedelta64(31, "D")
    ends = np.append(starts[1:], starts[-1] + step)
    change = np.flatnonzero(np.diff(label) != 0) + 1
    bounds = np.concatenate([[0], change, [label.size]])
    return [(starts[a], ends[b - 1], int(label[a])) for a, b in itertools.pairwise(bounds)
            if label[a] >= 0]


def plot_panel(panel: xr.Dataset) -> Figure:
    """Draw the panel's signals and drivers as small multiples sharing the time axis.

    Counts are drawn as bars per period, levels as points joined by a line; periods outside an indicator's
    coverage are hatched grey; analyst labels are shaded in their scenario's colour on every row.

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
    n = max(len(rows), 1)
    figure = Figure(figsize=(11, 1.5 * n + 1.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    spans = _label_spans(panel)
    width = np.diff(periods).min() * 0.9 if periods.size > 1 else np.timedelta64(25, "D")
    for ax, (name, values, covered, kind) in zip(axes, rows, strict=False):
        for start, stop, code in spans:
            ax.axvspan(start, stop, color=SCENARIO_COLOURS[code], alpha=0.18, linewidth=0)
        if (~covered).any():
            outside = np.where(~covered, 1.0, 0.0)
            ax.fill_between(periods, 0, 1, where=outside > 0, transform=ax.get_xaxis_transform(), color="0.85",
                            hatch="//", edgecolor="0.7", linewidth=0, step="post")
        if kind == "count":
            ax.bar(periods, np.nan_to_num(values), width=width, align="edge", color="0.2")
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
    figure.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8, frameon=False)
    freq = panel.attrs.get("freq", "M")
    figure.suptitle(f"Panel per {'month' if freq == 'M' else 'quarter'}, observed through "
                    f"{panel.attrs.get('observed_through', '?')}", fontsize=10)
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
