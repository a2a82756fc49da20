"""forecast.inputs: options, standardisation and the arrays built from a panel."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from forecast.errors import ConfigError
from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation, lag_rows
from forecast.simulate import simulate_panel


@pytest.fixture(scope="module")
def panel():
    p, _, _ = simulate_panel(
        40, seed=8,
        coverage={"trilateral_exercises": (5.5, 40.0), "nk_icbm_launches": (10.0, 30.0)},
        level_missing=0.25, label_stretches=[(3, 9)], label_confidence=0.75,
    )
    return p


def test_options_round_trip_through_json():
    opts = ModelOptions(driver_lag=2, use_labels=False, level_center={"a": 1.5}, level_scale={"a": 2.0},
                        driver_center={"d": 0.1}, driver_scale={"d": 0.9})
    assert ModelOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts


@pytest.mark.parametrize("bad", [{"driver_lag": -1}, {"driver_lag": 1.5}, {"driver_lag": True},
                                 {"driver_lag": np.bool_(True)}, {"driver_lag": np.int64(-1)}])
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError, match="driver_lag"):
        ModelOptions(**bad)


def test_numpy_integer_lag_is_accepted_as_a_plain_int():
    opts = ModelOptions(driver_lag=np.int64(2))
    assert opts.driver_lag == 2 and type(opts.driver_lag) is int
    assert ModelOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model option"):
        ModelOptions.from_dict({"driver_lag": 1, "use_lables": True})


def test_standardisation_constants(panel):
    opts = estimate_standardisation(panel, ModelOptions(driver_lag=3))
    assert opts.driver_lag == 3  # structural options are kept
    for name in ("usfk_personnel", "usfj_personnel"):
        logs = np.log(panel["y"].sel(signal=name).values)
        logs = logs[np.isfinite(logs)]
        assert opts.level_center[name] == pytest.approx(logs.mean())
        assert opts.level_scale[name] == pytest.approx(logs.std())
    for name in panel["driver"].values.tolist():
        x = panel["x"].sel(driver=name).values
        e = panel["x_exposure"].sel(driver=name).values
        ok = e > 0
        rate = np.log1p(x[ok] / e[ok])
        assert opts.driver_center[name] == pytest.approx(rate.mean())
        assert opts.driver_scale[name] == pytest.approx(rate.std() if rate.std() > 1e-12 else 1.0)


def test_constant_series_get_unit_scale(panel):
    flat = panel.copy(deep=True)
    flat["x"].loc[{"driver": "nk_nuclear_tests"}] = 0.0
    opts = estimate_standardisation(flat)
    assert opts.driver_scale["nk_nuclear_tests"] == 1.0
    assert opts.driver_center["nk_nuclear_tests"] == 0.0


def test_counts_masks_and_exposure(panel):
    inputs = build_inputs(panel, estimate_standardisation(panel))
    assert inputs.count_signals == ("rok_japan_defence_talks", "trilateral_meetings", "trilateral_exercises",
                                    "history_disputes")
    assert inputs.level_signals == ("usfk_personnel", "usfj_personnel")
    c = inputs.count_signals.index("trilateral_exercises")
    mask = inputs.count_mask[:, c]
    assert not mask[:5].any() and mask[5:].all()
    assert np.all(inputs.y_count[~inputs.count_mask] == 0.0)
    assert np.all(inputs.log_exposure[~inputs.count_mask] == 0.0)
    assert inputs.log_exposure[5, c] == pytest.approx(np.log(0.5))
    assert np.all(inputs.log_exposure[6:, c] == 0.0)
    y = panel["y"].sel(signal="trilateral_exercises").values
    np.testing.assert_array_equal(inputs.y_count[5:, c], y[5:])


def test_levels_are_standardised_on_observed_cells(panel):
    inputs = build_inputs(panel, estimate_standardisation(panel))
    for j in range(len(inputs.level_signals)):
        ok = inputs.level_mask[:, j]
        assert 0 < ok.sum() < inputs.n_periods  # 25% missing
        assert inputs.z_level[ok, j].mean() == pytest.approx(0.0, abs=1e-12)
        assert inputs.z_level[ok, j].std() == pytest.approx(1.0)
        assert np.all(inputs.z_level[~ok, j] == 0.0)


def test_drivers_are_lagged_and_zero_where_unknown(panel):
    opts0 = estimate_standardisation(panel, ModelOptions(driver_lag=0))
    x_now = build_inputs(panel, opts0).x_std
    d = list(panel["driver"].values).index("nk_icbm_launches")
    assert np.all(x_now[:10, d] == 0.0) and np.all(x_now[30:, d] == 0.0)
    name = "nk_missile_launches"
    j = list(panel["driver"].values).index(name)
    expect = (np.log1p(panel["x"].sel(driver=name).values) - opts0.driver_center[name]) / opts0.driver_scale[name]
    np.testing.assert_allclose(x_now[:, j], expect)
    for lag in (1, 2):
        lagged = build_inputs(panel, dataclasses.replace(opts0, driver_lag=lag)).x_std
        np.testing.assert_array_equal(lagged[lag:], x_now[:-lag])
        assert np.all(lagged[:lag] == 0.0)


def test_missing_constants_name_the_indicators(panel):
    opts = estimate_standardisation(panel)
    del opts.driver_center["nk_nuclear_tests"]
    with pytest.raises(ConfigError, match="nk_nuclear_tests"):
        build_inputs(panel, opts)


def test_labels_and_their_evidence(panel):
    opts = estimate_standardisation(panel)
    inputs = build_inputs(panel, opts)
    labelled = inputs.label >= 0
    assert labelled.sum() == 6
    ev = inputs.label_log_evidence()
    assert np.all(ev[~labelled] == 0.0)
    rows = np.flatnonzero(labelled)
    np.testing.assert_allclose(ev[rows, inputs.label[rows]], np.log(0.75))
    others = np.ones_like(ev, dtype=bool)
    others[rows, inputs.label[rows]] = False
    np.testing.assert_allclose(ev[rows][others[rows]], np.log(0.25 / 3))
    np.testing.assert_allclose(np.exp(ev[rows]).sum(axis=1), 1.0)
    off = build_inputs(panel, dataclasses.replace(opts, use_labels=False))
    assert np.all(off.label == -1) and np.all(np.isnan(off.label_confidence))
    assert np.all(off.label_log_evidence() == 0.0)


def test_hard_label_gives_minus_infinity(panel):
    hard = panel.copy(deep=True)
    hard["label_confidence"].values[3:9] = 1.0
    inputs = build_inputs(hard, estimate_standardisation(hard))
    ev = inputs.label_log_evidence()
    assert np.isneginf(ev[3]).sum() == 3 and ev[3, inputs.label[3]] == 0.0


def test_metadata(panel):
    inputs = build_inputs(panel, estimate_standardisation(panel))
    assert inputs.marker[:2] == ("relations", "us")
    np.testing.assert_array_equal(inputs.direction[3], [0, -1])
    assert inputs.groups == ("bilateral", "trilateral", "history", "us_forces")
    np.testing.assert_array_equal(inputs.signal_group, [0, 1, 1, 2, 3, 3])
    np.testing.assert_array_equal(inputs.count_index, [0, 1, 2, 3])
    np.testing.assert_array_equal(inputs.level_index, [4, 5])
    assert inputs.n_periods == 40


def test_lag_rows():
    values = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(lag_rows(values, 0), values)
    np.testing.assert_array_equal(lag_rows(values, 1)[1:], values[:-1])
    assert np.all(lag_rows(values, 1)[0] == 0)
    assert np.all(lag_rows(values, 9) == 0)
