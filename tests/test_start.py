"""Where the sampler starts: the marker-labelled moment start and the multi-start posterior-mode search."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forecast import emissions, hmm
from forecast.fitting import _prepare_jax
from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation
from forecast.model import build_model
from forecast.priors import default_prior_set
from forecast.simulate import DEFAULT_CATALOG, simulate_panel
from forecast.start import find_mode, initial_values

# A parameter draw from the default prior (simulation-based calibration, replication 4 of seed 7) whose
# simulated panel has a poor local mode next to the moment start: optimising from the moment start alone ends
# about 20 log-density units below the mode around the true parameters. It was drawn when the simulated level
# signals' relations loadings were free (sign "?"), as they are in HARD_CATALOG.
HARD_CASE = {
    "intercept": [-1.007, -0.517, 2.515, -0.424, -0.046, -0.244],
    "loading": [[0.193, 0.327, -0.175], [0.802, 0.149, 0.061], [0.984, 0.888, -0.026], [-0.002, -0.051, -0.308],
                [1.583, 0.276, 0.0], [2.37, 1.816, 0.0]],
    "nb_alpha": [23.316, 7.512, 3.922, 2.931],
    "level_sigma": [0.493, 1.383],
    "stickiness": [5.197, 5.263, 4.828, 4.068],
    "driver_effect": [[-0.772, 0.653], [0.53, 0.732], [0.247, 0.236]],
    "init_prob": [0.246, 0.251, 0.159, 0.345],
}


HARD_CATALOG = tuple(dataclasses.replace(i, direction_relations=0) if i.kind == "level" and i.role == "signal"
                     else i for i in DEFAULT_CATALOG)


def _model(panel):
    options = estimate_standardisation(panel, ModelOptions(use_labels=False))
    inputs = build_inputs(panel, options)
    priors = default_prior_set()
    return build_model(inputs, priors, options), inputs, priors


def _point(model, values):
    """Free variables on their constrained scale -> the model's value variables (unconstrained)."""
    point = {}
    for rv in model.free_RVs:
        transform = model.rvs_to_transforms.get(rv)
        value = np.asarray(values[rv.name], dtype=float)
        point[model.rvs_to_values[rv].name] = value if transform is None else transform.forward(
            value, *rv.owner.inputs).eval()
    return point


def _log_posterior(model, values):
    return float(model.compile_logp()(_point(model, values)))


def _params(model, values):
    """The emission/transition parameters (one draw) at the free variables' ``values``."""
    names = list(emissions.PARAMETER_DIMS)
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")
    return {n: np.asarray(v)[None] for n, v in zip(names, fn(_point(model, values)), strict=True)}


def test_initial_values_respect_the_marker_rule():
    panel, _, _ = simulate_panel(60, seed=1)
    inputs = build_inputs(panel, estimate_standardisation(panel, ModelOptions()))
    start = initial_values(inputs, default_prior_set())
    from forecast.model import loading_layout

    layout = loading_layout(inputs)
    loading = layout.assemble(len(inputs.signals), start["loading_magnitude"], start.get("loading_free"),
                              start.get("loading_interaction"), start["marker_ratio"])
    for s, marker in enumerate(inputs.marker):
        if marker:
            own = ("us", "relations").index(marker)
            assert loading[s, own] > 0
            assert np.all(np.abs(np.delete(loading[s], own)) < loading[s, own])
    assert start["init_prob"].sum() == pytest.approx(1.0)


def test_no_search_returns_the_moment_start_unchanged():
    panel, _, _ = simulate_panel(30, seed=2)
    model, inputs, priors = _model(panel)
    start = initial_values(inputs, priors)
    values, search = find_mode(model, start, starts=0, seed=1)
    assert search == {"starts": 0}
    assert values.keys() == start.keys()
    assert all(np.array_equal(values[k], start[k]) for k in start)
    with pytest.raises(ValueError, match="starts must be >= 0"):
        find_mode(model, start, starts=-1, seed=1)


def test_search_raises_the_density_keeps_the_variables_and_repeats_with_its_seed():
    _prepare_jax(1)
    panel, _, _ = simulate_panel(60, seed=3)
    model, inputs, priors = _model(panel)
    start = initial_values(inputs, priors)
    values, search = find_mode(model, start, starts=3, seed=5)
    assert values.keys() == start.keys()
    assert all(np.shape(values[k]) == np.shape(start[k]) and np.all(np.isfinite(values[k])) for k in start)
    assert _log_posterior(model, values) > _log_posterior(model, start) + 1.0
    # the reported optimum is the density at the returned values (unconstrained scale, Jacobians included)
    assert search["best_neg_logp"] == pytest.approx(-_log_posterior(model, values), abs=1e-3)
    assert search["best_neg_logp"] <= search["moment_neg_logp"]
    again, search_again = find_mode(model, start, starts=3, seed=5)
    assert all(np.array_equal(again[k], values[k]) for k in values)
    assert search_again["best_neg_logp"] == search["best_neg_logp"]


def test_search_escapes_the_poor_mode_next_to_the_moment_start():
    _prepare_jax(1)
    panel, _, truth = simulate_panel(120, seed=7004, params={k: np.asarray(v) for k, v in HARD_CASE.items()},
                                     catalog=HARD_CATALOG)
    model, inputs, priors = _model(panel)
    values, search = find_mode(model, initial_values(inputs, priors), starts=16, seed=7004)
    assert search["best_neg_logp"] < search["moment_neg_logp"] - 5.0, search
    assert search["modes"] > 1

    def loglik(params):
        _, inc = hmm.forward(emissions.log_initial(params), emissions.transition_model(params, inputs.x_std),
                             emissions.log_emission(params, inputs))
        return float(inc.sum())

    true = {k: np.asarray(v)[None] for k, v in truth.items()}
    # the best mode explains the data at least about as well as the true parameters do; the moment start's
    # optimum does not
    assert loglik(_params(model, values)) > loglik(true) - 5.0


def test_competing_optima_keeps_distinct_points_within_the_window():
    from forecast.start import ALTERNATIVE_WINDOW, competing_optima

    best_x = np.zeros(3)
    found = [
        (100.0, best_x.copy()),                       # the best itself
        (100.2, np.array([0.01, 0.0, -0.02])),        # the same point, a little off: not a competitor
        (100.5, np.array([0.0, 1.0, 0.0])),           # elsewhere, within the window
        (100.6, np.array([0.0, 1.03, 0.0])),          # the same point as the previous one
        (101.0, np.array([2.0, 0.0, 0.0])),           # elsewhere
        (100.0 + ALTERNATIVE_WINDOW + 0.1, np.array([5.0, 5.0, 5.0])),  # outside the window
    ]
    out = competing_optima(found, best_x, 100.0)
    assert [a["neg_logp"] for a in out] == [100.5, 101.0]
    assert out[0]["x"] == [0.0, 1.0, 0.0]
