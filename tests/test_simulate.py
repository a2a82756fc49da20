"""forecast.simulate: layout of the simulated panel and agreement of the draws with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forecast.emissions import log_initial, params_from_posterior, transition_model
from forecast.fitfile import load_fit, save_fit
from forecast.hmm import forward
from forecast.inputs import build_inputs, estimate_standardisation
from forecast.scenarios import EFFECT_MATRIX
from forecast.simulate import (
    DEFAULT_CATALOG,
    default_params,
    known_parameter_fit,
    params_to_posterior,
    simulate_panel,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def test_same_seed_same_panel_and_other_seed_differs():
    a, sa, _ = simulate_panel(60, seed=3)
    b, sb, _ = simulate_panel(60, seed=3)
    c, _, _ = simulate_panel(60, seed=4)
    assert a.identical(b) and np.array_equal(sa, sb)
    assert not a["y"].equals(c["y"])


@pytest.mark.skipif(not (DATA / "catalog.toml").exists(), reason="bundled data not present")
def test_layout_matches_build_panel():
    from forecast.dataset import load_dataset
    from forecast.panel import build_panel

    real = build_panel(load_dataset(DATA), "M")
    sim, _, _ = simulate_panel(24, seed=0)
    assert set(sim.data_vars) == set(real.data_vars)
    assert set(sim.coords) == set(real.coords)
    for name in [*real.data_vars, *real.coords]:
        assert sim[name].dims == real[name].dims, name
        assert sim[name].dtype.kind == real[name].dtype.kind, name
    assert set(real.attrs) <= set(sim.attrs)
    assert list(sim["scenario"].values) == list(real["scenario"].values)


def test_coverage_labels_and_missing_levels():
    panel, states, _ = simulate_panel(
        50, seed=5, coverage={"trilateral_exercises": (10.5, 40.0), "nk_icbm_launches": (20.0, 50.0)},
        level_missing=0.3, label_stretches=[(5, 15), (30, 33)], label_confidence=0.8,
    )
    exp = panel["exposure"].sel(signal="trilateral_exercises").values
    assert np.all(exp[:10] == 0) and exp[10] == 0.5 and np.all(exp[11:40] == 1) and np.all(exp[40:] == 0)
    y = panel["y"].sel(signal="trilateral_exercises").values
    obs = panel["observed"].sel(signal="trilateral_exercises").values
    assert np.all(np.isnan(y[~obs])) and np.all(np.isfinite(y[obs])) and obs.sum() == 30
    assert np.all(np.isnan(panel["x"].sel(driver="nk_icbm_launches").values[:20]))
    lv = panel["observed"].sel(signal="usfk_personnel").values
    assert 0.5 < lv.mean() < 0.9  # 30% missing: 35 expected present, sd ≈ 3.2
    label = panel["label"].values
    labelled = np.r_[5:15, 30:33]
    assert np.array_equal(label[labelled], states[labelled])
    assert np.all(label[np.setdiff1d(np.arange(50), labelled)] == -1)
    assert np.allclose(panel["label_confidence"].values[labelled], 0.8)


def test_transitions_follow_the_model():
    """Stays along a long path match the model's stay probabilities (binomial sum, 4-sigma band)."""
    panel, states, params = simulate_panel(6000, seed=11, start="1700-01-01")  # 500 years fit datetime64[ns]
    inputs = build_inputs(panel, estimate_standardisation(panel))
    log_p = transition_model({k: v[None] for k, v in params.items()}, inputs.x_std).dense()[0]
    p_stay = np.exp(log_p[np.arange(1, 6000), states[:-1], states[:-1]])
    stays = (states[1:] == states[:-1]).sum()
    assert abs(stays - p_stay.sum()) < 4.0 * np.sqrt((p_stay * (1 - p_stay)).sum())
    # default durations are 2–4 years: a 6000-month path switches about 200 times
    assert 100 < (states[1:] != states[:-1]).sum() < 400


def test_signals_follow_the_emissions():
    """Count means per scenario and standardised level residuals agree with the returned parameters."""
    panel, states, params = simulate_panel(3000, seed=12, states=np.repeat(np.arange(4), 750))
    inputs = build_inputs(panel, estimate_standardisation(panel))
    mean = params["intercept"][None, :] + EFFECT_MATRIX[states] @ params["loading"].T  # (T, S)
    for c, sig in enumerate(inputs.count_index):
        phi = params["nb_alpha"][c]
        for s in range(4):
            rows = states == s
            mu = np.exp(mean[rows, sig])
            y = inputs.y_count[rows, c]
            se = np.sqrt((mu + mu**2 / phi).sum()) / rows.sum()  # standard error of the sample mean
            assert abs(y.mean() - mu.mean()) < 4.5 * se
    for lv, sig in enumerate(inputs.level_index):
        ok = inputs.level_mask[:, lv]
        resid = (inputs.z_level[ok, lv] - mean[ok, sig]) / params["level_sigma"][lv]
        assert abs(resid.mean()) < 4.5 / np.sqrt(ok.sum())
        assert abs(resid.std() - 1.0) < 4.5 / np.sqrt(2 * ok.sum())


def test_param_overrides_and_unknown_names():
    _, _, params = simulate_panel(30, seed=1, params={"nb_alpha": [1.0, 2.0, 3.0, 4.0]})
    assert np.array_equal(params["nb_alpha"], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(KeyError, match="unknown parameter"):
        simulate_panel(30, seed=1, params={"stickyness": np.ones(4)})
    defaults = default_params(DEFAULT_CATALOG)
    assert defaults["loading"].shape == (6, 3) and defaults["driver_effect"].shape == (3, 2)


def test_known_parameter_fit_round_trips(tmp_path):
    panel, _, params = simulate_panel(48, seed=2, label_stretches=1)
    fit = known_parameter_fit(panel, params, chains=2, draws=5, jitter=0.05, seed=9)
    assert fit.n_draws == 10 and fit.converged
    loaded = load_fit(save_fit(fit, tmp_path / "fit.nc"))
    inputs = build_inputs(loaded.panel, loaded.options)
    flat = params_from_posterior(loaded.posterior, inputs)
    from forecast.emissions import log_emission

    _, inc = forward(log_initial(flat), transition_model(flat, inputs.x_std), log_emission(flat, inputs))
    np.testing.assert_allclose(loaded.log_likelihood["y"].values.reshape(10, -1), inc, rtol=1e-12)
    post = params_to_posterior(params, panel, chains=1, draws=3)
    assert np.allclose(post["stickiness"].values, params["stickiness"])


def test_panel_params_follow_the_catalog_signs_and_the_panel_rates():
    from forecast.catalog import NO_LOADING
    from forecast.simulate import panel_params

    panel, _, _ = simulate_panel(60, seed=4)
    direction = panel["direction_relations"].values.copy()
    direction[0], direction[1] = NO_LOADING, 0  # no effect; unknown sign
    panel["direction_relations"] = (panel["direction_relations"].dims, direction)
    params = panel_params(panel)
    kinds = np.array(panel["kind"].values.tolist())
    assert params["loading"].shape == (panel.sizes["signal"], 3)
    np.testing.assert_array_equal(params["loading"][:, 2], 0.0)
    assert params["loading"][0, 1] == 0.0 and params["loading"][1, 1] == 0.1
    known = np.isin(panel["direction_us"].values, (-1, 1))
    np.testing.assert_allclose(params["loading"][known, 0], 0.6 * panel["direction_us"].values[known])
    counts = kinds == "count"
    rate = np.nanmean(panel["y"].values[:, counts], axis=0)
    np.testing.assert_allclose(params["intercept"][counts], np.log(rate + 0.05))
    np.testing.assert_array_equal(params["intercept"][~counts], 0.0)
    assert params["nb_alpha"].shape == (counts.sum(),) and params["level_sigma"].shape == ((~counts).sum(),)
    assert params["driver_effect"].shape == (panel.sizes["driver"], 2)
