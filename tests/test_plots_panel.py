"""Tests of forecast.plots.panel: merged spans, few artists whatever the length, title clear of the legend."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Polygon, Rectangle, StepPatch

from forecast.dataset import load_dataset
from forecast.panel import build_panel
from forecast.plots.panel import _label_spans, _runs, plot_panel


@pytest.fixture
def tiny_panel(tiny_data_dir):
    return build_panel(load_dataset(tiny_data_dir), "M")


def test_runs_merge_consecutive_periods():
    edges = np.arange("2020-01", "2020-07", dtype="datetime64[M]").astype("datetime64[ns]")
    codes = np.array([1, 1, 0, 0, 1])
    assert _runs(codes, edges) == [(edges[0], edges[2], 1), (edges[2], edges[4], 0), (edges[4], edges[5], 1)]
    assert _runs(np.array([], dtype=int), edges[:0]) == []


def test_label_spans_cover_each_labelled_run_once(tiny_panel):
    label = tiny_panel["label"].values.astype(int)
    spans = _label_spans(tiny_panel)
    assert len(spans) == np.count_nonzero((label >= 0) & np.r_[True, np.diff(label) != 0])
    starts = tiny_panel["period"].values
    for start, stop, code in spans:
        inside = (starts >= start) & (starts < stop)
        assert (label[inside] == code).all()


def test_one_artist_per_count_row_and_one_span_per_run(tiny_panel):
    figure = plot_panel(tiny_panel)
    rows = tiny_panel.sizes["signal"] + tiny_panel.sizes["driver"]
    assert len(figure.axes) == rows
    n_spans = len(_label_spans(tiny_panel))
    count_rows = int((tiny_panel["kind"].values == "count").sum()) + tiny_panel.sizes["driver"]
    steps = [p for ax in figure.axes for p in ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == count_rows  # one artist for all bars of a row, not one per period
    for ax in figure.axes:
        spans = [p for p in ax.patches if isinstance(p, Polygon | Rectangle) and not isinstance(p, StepPatch)]
        assert len(spans) >= n_spans
        assert len(spans) <= n_spans + tiny_panel.sizes["period"] // 2 + 1  # coverage gaps merged into runs


def test_title_legend_and_rows_do_not_overlap(tiny_panel):
    figure = plot_panel(tiny_panel)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    title = figure._suptitle.get_window_extent(renderer)
    legend = figure.legends[0].get_window_extent(renderer)
    axes = [ax.get_tightbbox(renderer) for ax in figure.axes]
    assert not title.overlaps(legend)
    assert all(not title.overlaps(box) and not legend.overlaps(box) for box in axes)
    assert all(0 <= b.x0 and b.x1 <= figure.bbox.x1 for b in [title, legend, *axes])  # nothing cut off
