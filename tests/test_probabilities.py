"""forecast.probabilities on fits whose posterior is the simulation's true parameters (plus small jitter)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast import hmm
from forecast import probabilities as prob
from forecast.emissions import transition_model
from forecast.errors import ConfigError
from forecast.scenarios import SCENARIOS
from forecast.simulate import default_params, known_parameter_fit, simulate_panel

N_PERIODS = 180


@pytest.fixture(scope="module")
def sim():
    params = default_params()
    params["driver_effect"][2] = [0.6, 0.0]  # nuclear tests push toward US engagement, not relations
    panel, states, true = simulate_panel(N_PERIODS, seed=21, params=params, label_stretches=3)
    fit = known_parameter_fit(panel, true, chains=2, draws=60, jitter=0.03, seed=5)
    return panel, states, true, fit


@pytest.fixture(scope="module")
def states(sim):
    return prob.compute_states(sim[3])


def wide(table: pd.DataFrame, column: str = "mean", label: str = "scenario", order=SCENARIOS) -> np.ndarray:
    return table.pivot(index="period", columns=label, values=column)[list(order)].to_numpy()


def test_smoothed_mode_recovers_the_true_path(sim, states):
    _, true_states, _, _ = sim
    smoothed = wide(prob.smoothed_probabilities(states))
    assert smoothed.shape == (N_PERIODS, 4)
    assert (smoothed.argmax(axis=1) == true_states).mean() >= 0.9


def test_tables_are_consistent(states):
    tables = {
        "filtered": prob.filtered_probabilities(states),
        "smoothed": prob.smoothed_probabilities(states),
        "forecast": prob.forecast_probabilities(states, horizon=6),
    }
    assert list(tables["filtered"].columns) == ["period", "scenario", "mean", "lower", "upper"]
    assert list(tables["forecast"].columns) == ["period", "horizon", "scenario", "mean", "lower", "upper"]
    for kind, table in tables.items():
        assert (table["lower"] <= table["mean"] + 1e-12).all() and (table["mean"] <= table["upper"] + 1e-12).all()
        np.testing.assert_allclose(wide(table).sum(axis=1), 1.0, atol=1e-10)
        factors = prob.factor_probabilities_table(states, kind, horizon=6)
        assert set(factors["factor"]) == {"us_engaged", "relations_workable"}
        f = wide(factors, label="factor", order=("us_engaged", "relations_workable"))
        m = wide(table)
        np.testing.assert_allclose(f[:, 0], m[:, 0] + m[:, 1], atol=1e-12)
        np.testing.assert_allclose(f[:, 1], m[:, 0] + m[:, 2], atol=1e-12)
        assert (factors["lower"] <= factors["mean"] + 1e-12).all()
    future = tables["forecast"]["period"].unique()
    assert pd.Timestamp(future[0]) == states.periods[-1] + pd.DateOffset(months=1)
    assert list(tables["forecast"]["horizon"].unique()) == list(range(1, 7))


def test_probabilities_sum_to_one_per_draw(states):
    np.testing.assert_allclose(np.exp(states.log_filtered).sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(states.log_smoothed).sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(prob._forecast_draws(states, 12, None).sum(-1), 1.0, atol=1e-12)


def test_filtered_uses_only_evidence_up_to_each_period(sim, states):
    panel, _, _, fit = sim
    cut = 100
    early = prob.compute_states(fit, panel=panel.isel(period=slice(0, cut)))
    np.testing.assert_allclose(early.log_filtered, states.log_filtered[:, :cut], atol=1e-10)
    # smoothing, by contrast, does look ahead: later evidence changes the reading of earlier periods
    change = np.abs(np.exp(early.log_smoothed) - np.exp(states.log_smoothed[:, :cut])).max()
    assert change > 1e-4


def test_labels_never_enter_reported_probabilities(sim, states):
    panel, _, _, fit = sim
    assert (panel["label"].values >= 0).any()
    unlabelled = panel.assign(label=panel["label"] * 0 - 1)
    other = prob.compute_states(fit, panel=unlabelled)
    np.testing.assert_array_equal(other.log_filtered, states.log_filtered)
    np.testing.assert_array_equal(other.log_smoothed, states.log_smoothed)


def test_forecast_one_step_is_filtered_times_transition(states):
    table = prob.forecast_probabilities(states, horizon=1)
    x_future = prob._future_x_std(states, prob._future_counts(states, 1, None))
    p = np.exp(transition_model(states.params, x_future).dense()[:, 0])  # (N, K, K)
    manual = np.einsum("ni,nij->nj", np.exp(states.log_filtered[:, -1]), p).mean(axis=0)
    np.testing.assert_allclose(wide(table)[0], manual, atol=1e-12)


def test_baseline_is_the_recent_average(sim, states):
    panel, _, _, _ = sim
    base = prob.baseline_drivers(states)
    for d in states.drivers:
        assert base[d] == pytest.approx(float(panel["x"].sel(driver=d).values[-12:].mean()))
    explicit = {d: dict.fromkeys(range(1, 13), v) for d, v in base.items()}
    a = prob.forecast_probabilities(states, 12)
    b = prob.forecast_probabilities(states, 12, drivers=explicit)
    pd.testing.assert_frame_equal(a, b)


def test_what_if_without_change_equals_baseline_exactly(states):
    base = prob.baseline_drivers(states)
    same = {"nk_nuclear_tests": {2: base["nk_nuclear_tests"]}}
    for change in ({}, same):
        table = prob.what_if(states, change, horizon=6)
        assert (table["difference"] == 0.0).all()
        assert (table["what_if"] == table["baseline"]).all()


def test_nuclear_test_moves_toward_us_engaged(sim, states):
    _, _, true, _ = sim
    assert true["driver_effect"][2, 0] > 0
    table = prob.what_if(states, {"nk_nuclear_tests": {2: 1}}, horizon=6)
    diff = wide(table, "difference")
    us_engaged = diff[:, 0] + diff[:, 1]
    lag = states.options.driver_lag
    # the test in period +2 shifts the transition into period +2+lag: nothing moves before it
    np.testing.assert_array_equal(diff[: 2 + lag - 1], 0.0)
    assert np.all(us_engaged[2 + lag - 1:] > 0.01)
    # period keys are the same as horizons
    period = (pd.Period(states.periods[-1], freq="M") + 2).strftime("%Y-%m")
    by_period = prob.what_if(states, {"nk_nuclear_tests": {period: 1}}, horizon=6)
    pd.testing.assert_frame_equal(table, by_period)


def test_what_if_median_and_direction_shares_describe_the_per_draw_change(states):
    change = {"nk_nuclear_tests": {2: 1}}
    table = prob.what_if(states, change, horizon=6)
    diff = prob._forecast_draws(states, 6, change) - prob._forecast_draws(states, 6, None)  # (draw, horizon, K)
    np.testing.assert_allclose(wide(table, "difference_median"), np.median(diff, axis=0), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(wide(table, "p_increase"), (diff > 0).mean(axis=0))
    np.testing.assert_array_equal(wide(table, "p_decrease"), (diff < 0).mean(axis=0))
    # nothing moves before the driver acts (the test is at horizon 2), so neither share counts a draw there;
    # afterwards the true effect (towards US engagement) makes most draws raise `trilateral`
    moves = 2 - 1 + states.options.driver_lag
    assert (wide(table, "p_increase")[:moves] == 0).all() and (wide(table, "p_decrease")[:moves] == 0).all()
    assert (wide(table, "p_increase")[moves:, 0] > 0.9).all()

    # weighted: the shares are weighted averages over the draws
    lw = np.random.default_rng(3).normal(scale=2.0, size=states.n_draws)
    weighted = prob.what_if(states, change, horizon=6, log_weights=lw)
    w = np.exp(lw - lw.max())
    np.testing.assert_allclose(wide(weighted, "p_increase"), np.average(diff > 0, axis=0, weights=w), atol=1e-12)
    np.testing.assert_allclose(wide(weighted, "p_decrease"), np.average(diff < 0, axis=0, weights=w), atol=1e-12)
    # all weight on one draw gives that draw's change and a share of 0 or 1
    k = 7
    lw = np.full(states.n_draws, -1e4)
    lw[k] = 0.0
    one = prob.what_if(states, change, horizon=6, log_weights=lw)
    np.testing.assert_allclose(wide(one, "difference_median"), diff[k], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(wide(one, "p_increase"), (diff[k] > 0).astype(float))
    np.testing.assert_array_equal(wide(one, "p_decrease"), (diff[k] < 0).astype(float))


def test_bad_future_drivers_are_reported(states):
    with pytest.raises(ConfigError, match="unknown driver 'nk_satellites'"):
        prob.what_if(states, {"nk_satellites": {1: 1}})
    with pytest.raises(ConfigError, match=r"not a period 1\.\.12"):
        prob.what_if(states, {"nk_nuclear_tests": {13: 1}})
    with pytest.raises(ConfigError, match=">= 0"):
        prob.forecast_probabilities(states, drivers={"nk_nuclear_tests": {1: -1}})
    with pytest.raises(ConfigError, match="kind"):
        prob.factor_probabilities_table(states, "posterior")


def test_uniform_log_weights_give_the_unweighted_result(states):
    uniform = np.full(states.n_draws, -3.7)
    for fn in (prob.filtered_probabilities, prob.smoothed_probabilities, prob.forecast_probabilities):
        a = fn(states)
        b = fn(states, log_weights=uniform)
        np.testing.assert_allclose(b[["mean", "lower", "upper"]].to_numpy(), a[["mean", "lower", "upper"]].to_numpy(),
                                   rtol=0, atol=1e-12)


def test_weights_reweight(states):
    rng = np.random.default_rng(0)
    lw = rng.normal(size=states.n_draws)
    table = prob.filtered_probabilities(states, log_weights=lw)
    w = np.exp(lw - lw.max())
    expect = np.average(np.exp(states.log_filtered), axis=0, weights=w)
    np.testing.assert_allclose(wide(table), expect, atol=1e-12)
    # all the weight on one draw: mean and interval collapse onto that draw
    one = np.full(states.n_draws, -np.inf)
    one[7] = 0.0
    single = prob.smoothed_probabilities(states, log_weights=one)
    np.testing.assert_allclose(wide(single), np.exp(states.log_smoothed[7]), atol=1e-12)
    np.testing.assert_allclose(wide(single, "lower"), np.exp(states.log_smoothed[7]), atol=1e-12)
    with pytest.raises(ConfigError, match="one entry per draw"):
        prob.filtered_probabilities(states, log_weights=np.zeros(3))


def test_summaries_match_numpy_quantile():
    rng = np.random.default_rng(1)
    values = rng.beta(2.0, 5.0, size=(501, 7, 4))
    mean, lower, upper = prob.summarise_draws(values)
    np.testing.assert_allclose(mean, values.mean(axis=0), atol=1e-14)
    np.testing.assert_allclose(lower, np.quantile(values, 0.05, axis=0), atol=1e-14)
    np.testing.assert_allclose(upper, np.quantile(values, 0.95, axis=0), atol=1e-14)


def test_weighted_quantiles_match_replication():
    """Integer weights act like repeated draws: weight 2 on a draw = the draw twice (up to interpolation)."""
    rng = np.random.default_rng(2)
    values = rng.normal(size=(400, 3))
    counts = rng.integers(1, 4, size=400)
    _, lower, upper = prob.summarise_draws(values, np.log(counts))
    repeated = np.repeat(values, counts, axis=0)
    # positions differ from the replicated sample's by at most one draw's weight: compare within one step
    spacing = np.abs(np.diff(np.sort(repeated, axis=0), axis=0)).max(axis=0)
    assert np.all(np.abs(lower - np.quantile(repeated, 0.05, axis=0)) <= spacing * 3)
    assert np.all(np.abs(upper - np.quantile(repeated, 0.95, axis=0)) <= spacing * 3)


def test_max_draws_and_weights_subset(sim, states):
    fit = sim[3]
    lw = np.arange(fit.n_draws, dtype=float) / fit.n_draws
    few = prob.compute_states(fit, max_draws=10, log_weights=lw)
    assert few.n_draws == 10 and few.draw_index[0] == 0 and few.draw_index[-1] == fit.n_draws - 1
    np.testing.assert_array_equal(few.log_weights, lw[few.draw_index])
    np.testing.assert_array_equal(few.log_filtered, states.log_filtered[few.draw_index])
    assert isinstance(prob.filtered_probabilities(fit), pd.DataFrame)  # a Fit is accepted directly


def test_predict_from_states_matches_hmm(states):
    x_future = prob._future_x_std(states, prob._future_counts(states, 3, None))
    trans = transition_model(states.params, x_future)
    dense = hmm.predict(states.log_filtered[:, -1], trans.dense())
    np.testing.assert_allclose(np.exp(dense), prob._forecast_draws(states, 3, None), atol=1e-12)


def test_forecast_from_filtered_is_the_forecast_of_the_states(sim, states):
    # the same draws, panel and weights through the public entry point give the same table as
    # forecast_probabilities (exact up to float rounding: the same code path, no sampling)
    fit = sim[3]
    rng = np.random.default_rng(7)
    lw = rng.normal(size=states.n_draws)
    surge = {states.drivers[0]: {1: 10.0, 2: 10.0}}
    for drivers, weights in ((None, None), (surge, lw)):
        expected = prob.forecast_probabilities(states, 6, drivers, log_weights=weights)
        got = prob.forecast_from_filtered(states.log_filtered[:, -1, :], states.params, fit.panel, fit.options, 6,
                                          drivers, log_weights=weights)
        pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-12, rtol=0)
    plain = prob.forecast_probabilities(states, 6, log_weights=lw)
    assert np.abs(expected["mean"] - plain["mean"]).max() > 1e-4  # the surge and weights are not a no-op
    with pytest.raises(ConfigError, match="one entry per draw"):
        prob.forecast_from_filtered(states.log_filtered[:, -1, :], states.params, fit.panel, fit.options, 6,
                                    log_weights=lw[:-1])


def test_scenario_table_is_the_filtered_table(states):
    expected = prob.filtered_probabilities(states)
    got = prob.scenario_table(np.exp(states.log_filtered), states.periods)
    pd.testing.assert_frame_equal(got, expected)
