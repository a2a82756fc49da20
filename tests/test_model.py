"""The PyMC model: its log-density equals the NumPy forward filter's likelihood plus the prior; names and dims."""

from __future__ import annotations

import numpy as np
import pytest

from forecast import emissions, hmm
from forecast.catalog import NO_LOADING
from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation
from forecast.model import build_model, loading_layout
from forecast.priors import default_prior_set
from forecast.scenarios import EFFECTS, FACTORS, SCENARIOS
from forecast.simulate import simulate_panel


def _inputs(use_labels: bool, n_periods: int = 40, seed: int = 2):
    panel, _, _ = simulate_panel(n_periods, seed=seed, label_stretches=[(3, 9), (20, 25)], level_missing=0.2,
                                 coverage={"trilateral_exercises": (5.5, 40.0)})
    options = estimate_standardisation(panel, ModelOptions(use_labels=use_labels))
    return build_inputs(panel, options), options


def _values_at(model, point):
    names = [v.name for v in model.unobserved_value_vars]
    fn = model.compile_fn(model.unobserved_value_vars, inputs=model.value_vars, on_unused_input="ignore")
    return dict(zip(names, fn(point), strict=True))


@pytest.mark.parametrize("use_labels", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_log_density_is_numpy_likelihood_plus_prior(use_labels, seed):
    _check_log_density(*_inputs(use_labels), use_labels, seed)


def test_log_density_is_numpy_likelihood_plus_prior_with_absent_loadings():
    _check_log_density(*_inputs_with_absent_loadings(), False, 0)


def _check_log_density(inputs, options, use_labels: bool, seed: int) -> None:
    model = build_model(inputs, default_prior_set(), options)
    rng = np.random.default_rng(seed)
    point = {k: v + 0.4 * rng.normal(size=np.shape(v)) for k, v in model.initial_point(0).items()}
    values = _values_at(model, point)
    params = {k: np.asarray(values[k])[None] for k in emissions.PARAMETER_DIMS}
    log_obs = emissions.log_emission(params, inputs)
    if use_labels:
        log_obs = log_obs + inputs.label_log_evidence()
    _, inc = hmm.forward(emissions.log_initial(params), emissions.log_transitions(params, inputs), log_obs)
    total = model.compile_logp(jacobian=False)(point)
    prior = model.compile_logp(vars=model.free_RVs, jacobian=False)(point)
    assert total - prior == pytest.approx(inc.sum(), abs=1e-8, rel=0)
    assert np.isfinite(prior) and prior != 0.0


def test_labels_change_the_density():
    with_labels, opt_l = _inputs(True)
    without, opt_n = _inputs(False)
    ml = build_model(with_labels, default_prior_set(), opt_l)
    mn = build_model(without, default_prior_set(), opt_n)
    point = ml.initial_point(0)
    assert ml.compile_logp()(point) != pytest.approx(mn.compile_logp()(point))


def test_names_dims_and_coords_follow_the_contract():
    inputs, options = _inputs(True)
    model = build_model(inputs, default_prior_set(), options)
    for name, dims in emissions.PARAMETER_DIMS.items():
        assert name in model.named_vars, name
        assert tuple(model.named_vars_to_dims[name]) == dims
    assert list(model.coords["scenario"]) == list(SCENARIOS)
    assert list(model.coords["effect"]) == list(EFFECTS)
    assert list(model.coords["factor"]) == list(FACTORS)
    assert list(model.coords["signal"]) == list(inputs.signals)
    assert list(model.coords["count_signal"]) == list(inputs.count_signals)
    assert list(model.coords["level_signal"]) == list(inputs.level_signals)
    assert list(model.coords["driver"]) == list(inputs.drivers)
    assert len(model.coords["period"]) == inputs.n_periods


def _random_loadings(inputs, options, n: int, seed: int):
    """The model's (signal, effect) loading matrix at ``n`` random points around its initial point."""
    model = build_model(inputs, default_prior_set(), options)
    fn = model.compile_fn(model["loading"], inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(seed)
    base = model.initial_point(0)
    for _ in range(n):
        yield fn({k: v + 2.0 * rng.normal(size=np.shape(v)) for k, v in base.items()})


def _cells(layout) -> list[tuple[int, int]]:
    """The (signal, effect) cells the layout makes a variable of, one entry per variable (a cell twice is a bug)."""
    return [(int(s), int(e)) for s, e in (
        list(zip(layout.mag_signal, layout.mag_effect, strict=True))
        + list(zip(layout.free_signal, layout.free_effect, strict=True))
        + [(s, 2) for s in layout.inter_signal]
        + list(zip(layout.cross_signal, layout.cross_effect, strict=True)))]


def test_signs_and_marker_dominance_hold_for_any_parameter_values():
    inputs, options = _inputs(False)
    for loading in _random_loadings(inputs, options, 50, seed=3):
        for s in range(len(inputs.signals)):
            for f in range(2):
                d = inputs.direction[s, f]
                if d != 0 and inputs.marker[s] in ("", FACTORS[f]):
                    assert np.sign(loading[s, f]) in (0, d)
            if inputs.marker[s]:
                own = FACTORS.index(inputs.marker[s])
                assert np.all(np.abs(np.delete(loading[s], own)) < abs(loading[s, own]))


def test_layout_puts_every_loading_somewhere_once():
    inputs, _ = _inputs(False)
    layout = loading_layout(inputs)
    cells = _cells(layout)
    levels = set(inputs.level_index.tolist())
    assert levels, "the test panel should have level signals"
    # level signals have no u·r interaction term, and the simulated ones no relations loading (sign "0"): both
    # are structural zeros
    absent = {(s, f) for s in range(len(inputs.signals)) for f in range(2) if inputs.direction[s, f] == NO_LOADING}
    assert absent == {(s, 1) for s in levels}
    assert sorted(cells) == [(s, e) for s in range(len(inputs.signals)) for e in range(3)
                             if not (s in levels and e == 2) and (s, e) not in absent]


#: (signal, factor) cells with the catalog sign "0" in :func:`_inputs_with_absent_loadings`: an ordinary count
#: signal and the US marker's cross-loading, besides the level signals' relations loadings (the simulated catalog
#: gives those "0").
_ABSENT = (("history_disputes", "us"), ("trilateral_meetings", "relations"), ("usfk_personnel", "relations"),
           ("usfj_personnel", "relations"))


def _inputs_with_absent_loadings():
    panel, _, _ = simulate_panel(40, seed=2, level_missing=0.2)
    for signal, factor in _ABSENT:
        panel[f"direction_{factor}"].loc[{"signal": signal}] = NO_LOADING
    options = estimate_standardisation(panel, ModelOptions())
    return build_inputs(panel, options), options


def test_sign_zero_removes_the_loading_and_its_interaction():
    inputs, options = _inputs_with_absent_loadings()
    cells = _cells(loading_layout(inputs))
    assert len(cells) == len(set(cells))
    cells = set(cells)
    absent = {(inputs.signals.index(sig), FACTORS.index(f)) for sig, f in _ABSENT}
    count_absent = {s for s, _ in absent if s not in set(inputs.level_index.tolist())}
    assert not cells & absent
    assert not cells & {(s, 2) for s in count_absent}  # no factor, no interaction with it
    # every other loading is still a variable
    levels = set(inputs.level_index.tolist())
    expected = {(s, e) for s in range(len(inputs.signals)) for e in range(3) if not (s in levels and e == 2)}
    assert cells == expected - absent - {(s, 2) for s in count_absent}
    # and the model's loading is exactly 0 there for any parameter values
    for loading in _random_loadings(inputs, options, 10, seed=4):
        for s, f in absent | {(s, 2) for s in count_absent}:
            assert loading[s, f] == 0.0
        assert np.count_nonzero(loading) == len(cells)


def test_intercepts_are_centred_where_many_events_pin_them(monkeypatch):
    import forecast.model as model_module
    from forecast.model import centred_intercepts

    inputs, options = _inputs(False)
    events = (inputs.y_count * inputs.count_mask).sum(axis=0)
    np.testing.assert_array_equal(centred_intercepts(inputs), events >= model_module.CENTRED_MIN_EVENTS)
    # a threshold between the signals' event counts: both parameterisations in one model
    threshold = float(np.sort(events)[len(events) // 2])
    monkeypatch.setattr(model_module, "CENTRED_MIN_EVENTS", threshold)
    centred = centred_intercepts(inputs)
    assert centred.any() and not centred.all()
    np.testing.assert_array_equal(centred, events >= threshold)
    model = build_model(inputs, default_prior_set(), options)
    assert {"count_intercept_centred", "count_intercept_std"} <= set(model.named_vars)
    # the parameterisation does not change the model: log density = NumPy likelihood + prior, as above
    rng = np.random.default_rng(7)
    point = {k: v + 0.4 * rng.normal(size=np.shape(v)) for k, v in model.initial_point(0).items()}
    values = _values_at(model, point)
    params = {k: np.asarray(values[k])[None] for k in emissions.PARAMETER_DIMS}
    _, inc = hmm.forward(emissions.log_initial(params), emissions.log_transitions(params, inputs),
                         emissions.log_emission(params, inputs))
    total = model.compile_logp(jacobian=False)(point)
    prior = model.compile_logp(vars=model.free_RVs, jacobian=False)(point)
    assert total - prior == pytest.approx(inc.sum(), abs=1e-8, rel=0)
    # and the prior of the count intercepts is Normal(μ_a, σ_a) in both forms: compare with scipy
    from scipy.stats import norm

    a = np.asarray(values["count_intercept"])
    mu, sd = float(values["intercept_location"]), float(values["intercept_scale"])
    z = (a[~centred] - mu) / sd
    by_var = model.compile_fn([model.logp(vars=[model[n]], jacobian=False, sum=True)
                               for n in ("count_intercept_centred", "count_intercept_std")],
                              inputs=model.value_vars, on_unused_input="ignore")(point)
    assert by_var[0] == pytest.approx(norm.logpdf(a[centred], mu, sd).sum(), abs=1e-10)
    assert by_var[1] == pytest.approx(norm.logpdf(z).sum(), abs=1e-10)


def test_loading_magnitudes_are_sampled_in_probit_coordinates():
    from scipy.stats import halfnorm, norm

    inputs, options = _inputs(False)
    model = build_model(inputs, default_prior_set(), options)
    rv = model["loading_magnitude"]
    value = model.rvs_to_values[rv]
    assert value.name == "loading_magnitude_probit__"
    rng = np.random.default_rng(3)
    point = {k: v + 0.4 * rng.normal(size=np.shape(v)) for k, v in model.initial_point(0).items()}
    y = point[value.name]
    # the magnitude is the HalfNormal(1) quantile of Φ(y) ...
    np.testing.assert_allclose(_values_at(model, point)["loading_magnitude"], halfnorm.isf(norm.sf(y)), rtol=1e-12)
    # ... and the density gains the Jacobian log φ(y) − log 2φ(x), nothing else
    x = halfnorm.isf(norm.sf(y))
    with_jacobian = model.compile_logp(vars=[rv], jacobian=True)(point)
    without = model.compile_logp(vars=[rv], jacobian=False)(point)
    assert with_jacobian - without == pytest.approx((norm.logpdf(y) - halfnorm.logpdf(x)).sum(), abs=1e-10)


@pytest.mark.parametrize("y", [-30.0, -8.0, -4.3, -1.0, 0.0, 1e-9, 0.7, 3.0, 12.0, 30.0])
def test_the_probit_coordinate_of_a_halfnormal_1_is_standard_normal(y):
    # the defining property: under HalfNormal(1) the coordinate y is N(0, 1), so its log density (Jacobian
    # included) is log φ(y) exactly, in both tails; and forward inverts backward
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt
    from scipy.stats import norm

    from forecast.model import HalfNormalProbit

    with pm.Model() as model:
        pm.HalfNormal("m", sigma=1.0, default_transform=HalfNormalProbit())
    assert model.compile_logp()({"m_probit__": y}) == pytest.approx(norm.logpdf(y), rel=1e-12, abs=1e-12)
    v = pt.dscalar("v")
    transform = HalfNormalProbit()
    backward = pytensor.function([v], transform.backward(v))
    round_trip = pytensor.function([v], transform.forward(transform.backward(v)))
    gradient = pytensor.function([v], pytensor.grad(transform.backward(v), v))
    x = float(backward(y))
    assert x > 0.0
    assert round_trip(y) == pytest.approx(y, rel=1e-9, abs=1e-9)
    # dx/dy = φ(y) / 2φ(x), finite on both sides of the branch point
    assert np.isfinite(gradient(y))
    assert np.log(gradient(y)) == pytest.approx(norm.logpdf(y) - np.log(2.0) - norm.logpdf(x), abs=1e-9)


@pytest.mark.parametrize("n_periods", [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 31, 33, 144])
def test_tree_likelihood_equals_the_forward_filter_for_any_number_of_periods(n_periods):
    # the tree multiplies pairs and carries an odd one out at each level: every T must give the same total
    import pytensor.tensor as pt

    from forecast.model import forward_loglik

    rng = np.random.default_rng(n_periods)
    init = rng.dirichlet(np.ones(4))
    trans = rng.dirichlet(np.ones(4), size=(n_periods, 4))
    log_obs = rng.normal(-3.0, 2.0, size=(n_periods, 4)) - 40.0 * (np.arange(n_periods) % 3 == 0)[:, None]
    total = forward_loglik(pt.as_tensor(init), pt.as_tensor(trans), pt.as_tensor(log_obs)).eval()
    _, inc = hmm.forward(np.log(init), np.log(trans), log_obs)
    assert float(total) == pytest.approx(inc.sum(), abs=1e-9 * n_periods, rel=0)
