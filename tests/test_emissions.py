"""forecast.emissions against scipy.stats and direct evaluation of the model's equations."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import log_softmax, logsumexp

from forecast import emissions
from forecast.errors import ConfigError
from forecast.inputs import ModelInputs
from forecast.scenarios import EFFECT_MATRIX, EFFECTS, FACTOR_MATRIX, FACTORS, SCENARIOS

K = 4


def make_inputs(rng, n_periods=7, n_count=3, n_level=2, n_driver=2, max_count=12) -> ModelInputs:
    signals = tuple(f"c{i}" for i in range(n_count)) + tuple(f"l{i}" for i in range(n_level))
    count_mask = rng.random((n_periods, n_count)) > 0.2
    exposure = np.where(rng.random((n_periods, n_count)) > 0.7, rng.uniform(0.1, 1.0, (n_periods, n_count)), 1.0)
    level_mask = rng.random((n_periods, n_level)) > 0.2
    return ModelInputs(
        periods=np.arange(n_periods).astype("datetime64[M]").astype("datetime64[ns]"),
        signals=signals,
        count_signals=signals[:n_count],
        level_signals=signals[n_count:],
        drivers=tuple(f"d{i}" for i in range(n_driver)),
        groups=("g",),
        count_index=np.arange(n_count),
        level_index=np.arange(n_count, n_count + n_level),
        signal_group=np.zeros(len(signals), dtype=int),
        direction=np.ones((len(signals), 2), dtype=int),
        marker=("",) * len(signals),
        y_count=np.where(count_mask, rng.integers(0, max_count, (n_periods, n_count)), 0).astype(float),
        log_exposure=np.where(count_mask, np.log(exposure), 0.0),
        count_mask=count_mask,
        z_level=np.where(level_mask, rng.normal(size=(n_periods, n_level)), 0.0),
        level_mask=level_mask,
        x_std=rng.normal(size=(n_periods, n_driver)),
        label=np.full(n_periods, -1),
        label_confidence=np.full(n_periods, np.nan),
    )


def make_params(rng, inputs: ModelInputs, n_draws=5) -> dict[str, np.ndarray]:
    s, c, lv, d = len(inputs.signals), len(inputs.count_signals), len(inputs.level_signals), len(inputs.drivers)
    return {
        "intercept": rng.normal(0.5, 1.0, (n_draws, s)),
        "loading": rng.normal(0.0, 0.7, (n_draws, s, 3)),
        "nb_alpha": rng.gamma(2.0, 2.0, (n_draws, c)),
        "level_sigma": rng.gamma(4.0, 0.2, (n_draws, lv)),
        "stickiness": rng.normal(3.0, 1.0, (n_draws, K)),
        "driver_effect": rng.normal(0.0, 0.5, (n_draws, d, 2)),
        "init_prob": rng.dirichlet(np.ones(K), n_draws),
    }


def direct_emission(params, inputs) -> np.ndarray:
    """Sum of scipy log densities, cell by cell."""
    n = params["intercept"].shape[0]
    out = np.zeros((n, inputs.n_periods, K))
    for i in range(n):
        for t in range(inputs.n_periods):
            for s in range(K):
                for j, sig in enumerate(inputs.count_index):
                    if not inputs.count_mask[t, j]:
                        continue
                    eta = params["intercept"][i, sig] + params["loading"][i, sig] @ EFFECT_MATRIX[s]
                    mu = np.exp(inputs.log_exposure[t, j] + eta)
                    phi = params["nb_alpha"][i, j]
                    out[i, t, s] += stats.nbinom.logpmf(inputs.y_count[t, j], n=phi, p=phi / (phi + mu))
                for j, sig in enumerate(inputs.level_index):
                    if not inputs.level_mask[t, j]:
                        continue
                    mean = params["intercept"][i, sig] + params["loading"][i, sig] @ EFFECT_MATRIX[s]
                    out[i, t, s] += stats.norm.logpdf(inputs.z_level[t, j], mean, params["level_sigma"][i, j])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_density_helpers_match_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 50, 200).astype(float)
    mu = rng.gamma(2.0, 3.0, 200)
    alpha = rng.gamma(1.5, 2.0, 200)
    np.testing.assert_allclose(
        emissions.nbinom_logpmf(y, mu, alpha), stats.nbinom.logpmf(y, n=alpha, p=alpha / (alpha + mu)),
        rtol=1e-10, atol=1e-10,
    )
    z, m, s = rng.normal(size=200), rng.normal(size=200), rng.gamma(2.0, 1.0, 200)
    np.testing.assert_allclose(emissions.normal_logpdf(z, m, s), stats.norm.logpdf(z, m, s), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_count", [12, 5000])  # few distinct counts (one-hot path) and many (direct path)
def test_log_emission_matches_scipy(seed, max_count):
    rng = np.random.default_rng(seed)
    inputs = make_inputs(rng, n_periods=40 if max_count > 300 else 7, max_count=max_count)
    params = make_params(rng, inputs)
    got = emissions.log_emission(params, inputs)
    assert got.shape == (5, inputs.n_periods, K)
    np.testing.assert_allclose(got, direct_emission(params, inputs), rtol=1e-10, atol=1e-8)


def test_masked_cells_contribute_nothing():
    rng = np.random.default_rng(3)
    inputs = make_inputs(rng)
    params = make_params(rng, inputs)
    base = emissions.log_emission(params, inputs)
    # change the values behind masks: nothing may move
    y = inputs.y_count.copy()
    y[~inputs.count_mask] = 99.0
    z = inputs.z_level.copy()
    z[~inputs.level_mask] = 42.0
    from dataclasses import replace

    changed = emissions.log_emission(params, replace(inputs, y_count=y, z_level=z))
    np.testing.assert_array_equal(base, changed)
    none = replace(inputs, count_mask=np.zeros_like(inputs.count_mask), level_mask=np.zeros_like(inputs.level_mask))
    assert np.all(emissions.log_emission(params, none) == 0.0)


def direct_transitions(params, x) -> np.ndarray:
    n = params["stickiness"].shape[0]
    out = np.zeros((n, x.shape[0], K, K))
    for i in range(n):
        for t in range(x.shape[0]):
            shift = x[t] @ (params["driver_effect"][i] @ FACTOR_MATRIX.T)
            logits = np.diag(params["stickiness"][i]) + shift[None, :]
            out[i, t] = log_softmax(logits, axis=1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transitions_are_log_softmax_rows(seed):
    rng = np.random.default_rng(seed)
    inputs = make_inputs(rng)
    params = make_params(rng, inputs)
    params["stickiness"][0, 1] = -3.0  # a scenario that tends to be left, not kept
    lt = emissions.log_transitions(params, inputs)
    assert lt.shape == (5, inputs.n_periods, K, K)
    np.testing.assert_allclose(logsumexp(lt, axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(lt, direct_transitions(params, inputs.x_std), rtol=1e-12, atol=1e-12)
    per_draw_x = np.broadcast_to(inputs.x_std, (5, *inputs.x_std.shape))
    np.testing.assert_allclose(emissions.log_transitions_from_x(params, per_draw_x), lt, rtol=1e-12, atol=1e-12)


def test_extreme_logits_stay_finite():
    rng = np.random.default_rng(4)
    inputs = make_inputs(rng)
    params = make_params(rng, inputs)
    params["stickiness"][:] = 400.0
    lt = emissions.log_transitions_from_x(params, 50.0 * inputs.x_std)
    assert np.isfinite(lt).all()
    np.testing.assert_allclose(logsumexp(lt, axis=-1), 0.0, atol=1e-12)


def test_positive_driver_effect_raises_moves_into_us_engaged():
    rng = np.random.default_rng(5)
    inputs = make_inputs(rng, n_driver=1)
    params = make_params(rng, inputs)
    params["driver_effect"][:, 0, :] = [0.8, 0.0]  # γ_us > 0, no effect on relations
    calm = emissions.log_transitions_from_x(params, np.zeros((1, 1)))
    surge = emissions.log_transitions_from_x(params, np.full((1, 1), 2.0))
    us_engaged = FACTOR_MATRIX[:, 0] > 0
    p_calm = np.exp(calm)[..., us_engaged].sum(-1)
    p_surge = np.exp(surge)[..., us_engaged].sum(-1)
    assert np.all(p_surge > p_calm)  # from every scenario, in every draw


def test_log_initial_normalises():
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.5, 0.0]])
    got = emissions.log_initial({"init_prob": p})
    np.testing.assert_allclose(np.exp(got), p)


def posterior_for(rng, inputs, chains=2, draws=3, shuffle=False) -> xr.Dataset:
    signals = list(inputs.signals)
    drivers = list(inputs.drivers)
    if shuffle:
        signals = signals[::-1]
        drivers = drivers[::-1]
    count = [s for s in signals if s in inputs.count_signals]
    level = [s for s in signals if s in inputs.level_signals]
    coords = {"chain": range(chains), "draw": range(draws), "signal": signals, "count_signal": count,
              "level_signal": level, "driver": drivers, "effect": list(EFFECTS), "factor": list(FACTORS),
              "scenario": list(SCENARIOS)}
    dims = {name: ("chain", "draw", *d) for name, d in emissions.PARAMETER_DIMS.items()}

    def shape(name):
        return tuple(len(coords[d]) for d in dims[name])

    data = {name: (dims[name], rng.normal(size=shape(name))) for name in dims}
    return xr.Dataset(data, coords=coords)


def test_params_from_posterior_flattens_and_aligns():
    rng = np.random.default_rng(6)
    inputs = make_inputs(rng)
    post = posterior_for(rng, inputs, shuffle=True)
    params = emissions.params_from_posterior(post, inputs)
    assert params["intercept"].shape == (6, len(inputs.signals))
    assert params["loading"].shape == (6, len(inputs.signals), 3)
    assert params["driver_effect"].shape == (6, len(inputs.drivers), 2)
    # chain-major flattening, names aligned to the inputs' order
    expect = post["loading"].sel(signal=list(inputs.signals)).values.reshape(6, -1, 3)
    np.testing.assert_array_equal(params["loading"], expect)
    np.testing.assert_array_equal(params["intercept"][4], post["intercept"].sel(chain=1, draw=1,
                                                                                 signal=list(inputs.signals)))
    sub = emissions.take_draws(params, np.array([0, 5]))
    assert all(v.shape[0] == 2 for v in sub.values())


def test_params_from_posterior_reports_mismatches():
    rng = np.random.default_rng(7)
    inputs = make_inputs(rng)
    post = posterior_for(rng, inputs)
    with pytest.raises(ConfigError, match="stickiness"):
        emissions.params_from_posterior(post.drop_vars("stickiness"))
    other = post.assign_coords(driver=["x0", "x1"])
    with pytest.raises(ConfigError, match="refit"):
        emissions.params_from_posterior(other, inputs)
