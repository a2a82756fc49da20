"""Tests of forecast.panel.build_panel: layout, aggregation, coverage mask and exposure, labels."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CATALOG, raw_rows, write_tiny_data_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.dataset import load_dataset
from forecast.errors import ConfigError
from forecast.panel import build_panel
from forecast.scenarios import SCENARIOS


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _drop_rows(path: Path, keep) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(lines[0] + "".join(line for line in lines[1:] if keep(line)), encoding="utf-8")


def test_layout_follows_the_contract(tiny_data_dir):
    dataset = load_dataset(tiny_data_dir)
    panel = build_panel(dataset)
    assert dict(panel.sizes) == {"period": 24, "signal": 3, "driver": 1, "scenario": 4}
    assert panel["period"].dtype == "datetime64[ns]"
    assert pd.Timestamp(panel["period"].values[0]) == pd.Timestamp("2020-01-01")
    assert pd.Timestamp(panel["period"].values[-1]) == pd.Timestamp("2021-12-01")
    assert panel["signal"].values.tolist() == ["talks", "disputes", "troops"]
    assert panel["driver"].values.tolist() == ["launches"]
    assert panel["scenario"].values.tolist() == list(SCENARIOS)
    assert panel["kind"].values.tolist() == ["count", "count", "level"]
    assert panel["group"].values.tolist() == ["bilateral", "history", "posture"]
    assert panel["direction_us"].dtype == np.int8
    assert panel["direction_us"].values.tolist() == [0, 0, 1]
    assert panel["direction_relations"].values.tolist() == [1, -1, 0]
    assert panel["marker"].values.tolist() == ["relations", "", "us"]
    assert panel["transform"].values.tolist() == ["", "", "log"]
    for name, dims in {"y": ("period", "signal"), "exposure": ("period", "signal"), "observed": ("period", "signal"),
                       "x": ("period", "driver"), "x_exposure": ("period", "driver"), "label": ("period",),
                       "label_confidence": ("period",)}.items():
        assert panel[name].dims == dims, name
    assert panel["observed"].dtype == bool and panel["label"].dtype == np.int8
    assert panel.attrs == {"freq": "M", "observed_through": "2021-12-31", "data_sha256": dataset.sha256}


def test_monthly_counts_are_sums_and_levels_are_means(tiny_data_dir):
    signals = tiny_data_dir / "observations" / "signals.csv"
    with signals.open("a", encoding="utf-8") as handle:
        handle.write("2020-06-01,troops,28700,Extra report,\n")  # a second measurement in June 2020
    dataset = load_dataset(tiny_data_dir)
    panel = build_panel(dataset, "M")
    rows = raw_rows(tiny_data_dir)
    for name in ("talks", "disputes"):
        for period in panel["period"].values:
            month = pd.Timestamp(period).strftime("%Y-%m")
            expected = sum(float(r["value"]) for r in rows if r["indicator"] == name and r["date"].startswith(month))
            assert panel["y"].sel(signal=name, period=period).item() == expected
    troops = panel["y"].sel(signal="troops")
    june = [float(r["value"]) for r in rows if r["indicator"] == "troops" and r["date"].startswith("2020-06")]
    assert len(june) == 2 and troops.sel(period="2020-06-01").item() == pytest.approx(np.mean(june))
    measured = {r["date"][:7] for r in rows if r["indicator"] == "troops"}
    months = pd.DatetimeIndex(panel["period"].values).strftime("%Y-%m")
    assert (panel["observed"].sel(signal="troops").values == months.isin(measured)).all()
    assert np.isnan(troops.values[~months.isin(measured)]).all()
    # counts inside coverage without rows are 0 and observed
    assert panel["y"].sel(signal="talks", period="2020-02-01").item() == 0.0
    assert panel["observed"].sel(signal=["talks", "disputes"]).all()
    assert (panel["exposure"] == 1.0).all()


def test_quarterly_panel_aggregates_the_monthly_one(tiny_data_dir):
    dataset = load_dataset(tiny_data_dir)
    monthly = build_panel(dataset, "M")
    quarterly = build_panel(dataset, "Q")
    assert quarterly.sizes["period"] == 8 and quarterly.attrs["freq"] == "Q"
    assert pd.DatetimeIndex(quarterly["period"].values).month.tolist() == [1, 4, 7, 10] * 2
    counts = monthly[["y", "x"]].sel(signal=["talks", "disputes"]).resample(period="QS").sum()
    np.testing.assert_array_equal(quarterly["y"].sel(signal=["talks", "disputes"]).values, counts["y"].values)
    np.testing.assert_array_equal(quarterly["x"].values, counts["x"].values)
    obs = dataset.observations
    troops = obs[obs["indicator"] == "troops"]
    means = troops.groupby(troops["date"].dt.to_period("Q"))["value"].mean()
    got = quarterly["y"].sel(signal="troops").to_series()
    for quarter, value in means.items():
        assert got.loc[quarter.start_time] == pytest.approx(value)


def test_coverage_mask_and_partial_exposure(tiny_data_dir):
    catalog = tiny_data_dir / "catalog.toml"
    # disputes start mid-March 2020; launches stop on 10 June 2021
    _edit(catalog, 'coverage_start = 2020-01-01\nsource = "Test foreign ministry statements"',
          'coverage_start = 2020-03-15\nsource = "Test foreign ministry statements"')
    _edit(catalog, "coverage_end = 2021-12-31", "coverage_end = 2021-06-10")
    _drop_rows(tiny_data_dir / "observations" / "signals.csv", lambda line: not line.startswith("2020-03-03"))
    _drop_rows(tiny_data_dir / "observations" / "drivers.csv", lambda line: line[:7] < "2021-06")
    panel = build_panel(load_dataset(tiny_data_dir), "M")
    disputes = panel.sel(signal="disputes")
    assert disputes["exposure"].sel(period=["2020-01-01", "2020-02-01"]).values.tolist() == [0.0, 0.0]
    assert np.isnan(disputes["y"].sel(period=["2020-01-01", "2020-02-01"]).values).all()
    assert not disputes["observed"].sel(period="2020-01-01").item()
    assert disputes["exposure"].sel(period="2020-03-01").item() == pytest.approx(17 / 31)
    assert disputes["y"].sel(period="2020-03-01").item() == 0.0  # inside coverage, no rows
    assert disputes["observed"].sel(period="2020-03-01").item()
    assert disputes["exposure"].sel(period="2020-04-01").item() == 1.0
    launches = panel.sel(driver="launches")
    assert launches["x_exposure"].sel(period="2021-06-01").item() == pytest.approx(10 / 30)
    assert (launches["x_exposure"].sel(period=slice("2021-07-01", None)) == 0).all()
    assert np.isnan(launches["x"].sel(period=slice("2021-07-01", None))).all()
    assert launches["x"].sel(period="2021-05-01").item() == 0.0
    quarterly = build_panel(load_dataset(tiny_data_dir), "Q")
    assert quarterly["exposure"].sel(signal="disputes", period="2020-01-01").item() == pytest.approx(17 / 91)
    assert quarterly["x_exposure"].sel(driver="launches", period="2021-04-01").item() == pytest.approx(71 / 91)


def test_observed_through_mid_month_gives_a_partial_last_period(tiny_data_dir):
    _edit(tiny_data_dir / "catalog.toml", "observed_through = 2021-12-31", "observed_through = 2021-12-15")
    _edit(tiny_data_dir / "catalog.toml", "coverage_end = 2021-12-31", "coverage_end = 2021-12-15")
    for name in ("signals.csv", "drivers.csv"):
        _drop_rows(tiny_data_dir / "observations" / name, lambda line: not line.startswith("2021-12-31"))
    panel = build_panel(load_dataset(tiny_data_dir), "M")
    assert pd.Timestamp(panel["period"].values[-1]) == pd.Timestamp("2021-12-01")
    assert panel["exposure"].sel(signal="talks").values[-1] == pytest.approx(15 / 31)
    assert panel["x_exposure"].values[-1, 0] == pytest.approx(15 / 31)


def test_labels_mark_periods_whose_midpoint_they_contain(tiny_data_dir):
    dataset = load_dataset(tiny_data_dir)
    panel = build_panel(dataset, "M")
    months = pd.DatetimeIndex(panel["period"].values)
    expected = np.full(len(months), -1)
    expected[(months >= "2020-01-01") & (months <= "2020-06-01")] = SCENARIOS.index("trilateral")
    expected[(months >= "2021-07-01") & (months <= "2021-12-01")] = SCENARIOS.index("bilateral_alliances")
    np.testing.assert_array_equal(panel["label"].values, expected)
    conf = panel["label_confidence"].values
    assert np.isnan(conf[expected == -1]).all()
    assert (conf[expected == 0] == 0.8).all() and (conf[expected == 1] == 0.6).all()
    quarterly = build_panel(dataset, "Q")
    assert quarterly["label"].values.tolist() == [0, 0, -1, -1, -1, -1, 1, 1]


@pytest.mark.parametrize(("end_day", "labelled"), [(15, False), (16, True)])
def test_a_label_ending_mid_month_needs_the_midpoint(tiny_data_dir, end_day, labelled):
    # January's midpoint is 16 Jan 12:00; a label ending on the 16th (inclusive) contains it, the 15th does not.
    labels = tiny_data_dir / "labels.csv"
    labels.write_text("start,end,scenario,confidence,rationale,source\n"
                      f"2020-01-01,2020-01-{end_day},multilateral,0.5,r,s\n", encoding="utf-8")
    panel = build_panel(load_dataset(tiny_data_dir), "M")
    assert panel["label"].values[0] == (SCENARIOS.index("multilateral") if labelled else -1)
    assert (panel["label"].values[1:] == -1).all()


def test_build_panel_is_pure_and_checks_freq(tiny_data_dir):
    dataset = load_dataset(tiny_data_dir)
    before = dataset.observations.copy()
    first = build_panel(dataset)
    pd.testing.assert_frame_equal(dataset.observations, before)
    assert first.identical(build_panel(dataset))
    with pytest.raises(ConfigError, match="frequency"):
        build_panel(dataset, "W")


# Property test: totals and exposure on random rows and coverages --------------------------------------------------

_DAY0 = dt.date(2020, 1, 1)
_DAYS = (dt.date(2021, 12, 31) - _DAY0).days


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start_offset=st.integers(0, _DAYS),
    length=st.integers(0, _DAYS),
    rows=st.lists(st.tuples(st.integers(0, _DAYS), st.integers(0, 9)), max_size=30),
    freq=st.sampled_from(["M", "Q"]),
)
def test_panel_totals_equal_the_rows_inside_coverage(start_offset, length, rows, freq):
    start = _DAY0 + dt.timedelta(days=start_offset)
    end = min(start + dt.timedelta(days=length), dt.date(2021, 12, 31))
    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_data_dir(Path(tmp))
        text = TINY_CATALOG.replace(
            'coverage_start = 2020-01-01\nsource = "Test foreign ministry statements"',
            f'coverage_start = {start.isoformat()}\ncoverage_end = {end.isoformat()}\n'
            'source = "Test foreign ministry statements"')
        (data / "catalog.toml").write_text(text, encoding="utf-8")
        lines = [f"{(_DAY0 + dt.timedelta(days=d)).isoformat()},disputes,{v},src,{i}" for i, (d, v) in enumerate(rows)]
        inside = [v for d, v in rows if start <= _DAY0 + dt.timedelta(days=d) <= end]
        lines = [line for line, (d, _) in zip(lines, rows, strict=True)
                 if start <= _DAY0 + dt.timedelta(days=d) <= end]
        (data / "observations" / "signals.csv").write_text(
            "date,indicator,value,source,note\n2020-01-15,talks,1,src,\n" + "\n".join(lines) + "\n", encoding="utf-8")
        panel = build_panel(load_dataset(data), freq)
    y = panel["y"].sel(signal="disputes").values
    exposure = panel["exposure"].values
    assert np.nansum(y) == sum(inside)
    assert ((exposure >= 0) & (exposure <= 1)).all() and ((panel["x_exposure"] >= 0) & (panel["x_exposure"] <= 1)).all()
    e = panel["exposure"].sel(signal="disputes").values
    assert (np.isnan(y) == (e == 0)).all()
    # exposure days add up to the covered days
    periods = pd.PeriodIndex(pd.DatetimeIndex(panel["period"].values), freq=freq)
    days = np.array([(p.end_time.normalize() - p.start_time).days + 1 for p in periods])
    assert np.isclose((e * days).sum(), (end - start).days + 1)
