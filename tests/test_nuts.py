"""The NumPyro NUTS run of forecast.nuts against pm.sample's, and the compiled density it shares with the search."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.fitting import _numpyro_groups, _prepare_jax
from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation
from forecast.model import build_model
from forecast.priors import default_prior_set
from forecast.simulate import simulate_panel
from forecast.start import initial_values

SETTINGS = {"draws": 20, "tune": 30, "chains": 2, "target_accept": 0.9}


@pytest.fixture(scope="module")
def tiny():
    """A 24-month simulated panel, its model and the moment start."""
    _prepare_jax(SETTINGS["chains"])
    panel, _, _ = simulate_panel(24, seed=3)
    options = estimate_standardisation(panel, ModelOptions())
    inputs = build_inputs(panel, options)
    priors = default_prior_set()
    return build_model(inputs, priors, options), initial_values(inputs, priors)


@pytest.fixture(scope="module")
def both(tiny):
    """The same short run through forecast.nuts and through pm.sample(nuts_sampler="numpyro")."""
    import pymc as pm

    from forecast.density import compile_density
    from forecast.nuts import sample_nuts

    model, start = tiny
    run = sample_nuts(compile_density(model), start, seed=5, **SETTINGS)
    idata = pm.sample(nuts_sampler="numpyro", initvals=start, random_seed=5, progressbar=False,
                      compute_convergence_checks=False, model=model,
                      nuts={"chain_method": run.chain_method, "jitter": False, "dense_mass": False}, **SETTINGS)
    return run, idata


#: Tolerance between forecast.nuts's draws and pm.sample's, in posterior standard deviations of each variable.
#: The two evaluate the same density, but forecast.nuts differentiates it with respect to one flat vector, and XLA
#: may then round a transcendental function's gradient differently in the last bit (1e-16 at the start of this
#: run). Leapfrog steps amplify such differences: after the 50 iterations here they reach about 3e-4 sd. A
#: different random key, start, kernel or setting moves the draws by about one sd (checked below with another
#: seed).
_DRAW_TOL = 1e-2


def test_sample_nuts_draws_what_pm_sample_draws(both, tiny):
    # same kernel, keys, start and density: the draws must agree up to floating-point rounding, and every tree the
    # same size, so a fit's seed keeps meaning what it meant when fits ran through pm.sample
    from forecast.density import compile_density
    from forecast.nuts import sample_nuts

    run, idata = both
    model, start = tiny
    reference = idata["posterior"].to_dataset()
    posterior, stats, _ = _numpyro_groups(run, model, SETTINGS["tune"])
    assert set(posterior.data_vars) == set(reference.data_vars)
    for name in reference.data_vars:
        assert posterior[name].dims == reference[name].dims, name
        sd = float(np.std(reference[name].values))
        np.testing.assert_allclose(posterior[name].values, reference[name].values, rtol=0,
                                   atol=_DRAW_TOL * sd + 1e-12, err_msg=name)
        for dim in reference[name].dims:
            np.testing.assert_array_equal(posterior[dim].values, reference[dim].values)
    reference_stats = idata["sample_stats"].to_dataset()
    for name in ("diverging", "n_steps", "tree_depth"):
        np.testing.assert_array_equal(stats[name].values, reference_stats[name].values, err_msg=name)
    for name in ("step_size", "lp", "energy", "acceptance_rate"):
        np.testing.assert_allclose(stats[name].values, reference_stats[name].values, rtol=1e-3, err_msg=name)
    assert posterior.attrs["tuning_steps"] == SETTINGS["tune"] and posterior.attrs["sampling_time"] > 0
    # the tolerance separates: another seed's draws are far outside it
    other = sample_nuts(compile_density(model), start, **{**SETTINGS, "seed": 6})
    for name in ("intercept_location", "stickiness"):
        sd = float(np.std(reference[name].values))
        assert np.median(np.abs(other.values[name] - reference[name].values)) > 10 * _DRAW_TOL * sd, name


def test_log_prior_of_the_draws_equals_pymcs(both, tiny):
    import pymc as pm

    run, _ = both
    model, _ = tiny
    posterior, _, log_prior = _numpyro_groups(run, model, SETTINGS["tune"])
    tree = pm.stats.compute_log_prior(xr.DataTree.from_dict({"posterior": posterior}), model=model,
                                      extend_inferencedata=False, progressbar=False)
    reference = tree.to_dataset() if isinstance(tree, xr.DataTree) else tree
    assert set(log_prior.data_vars) == {*reference.data_vars, "total"}
    total = 0.0
    for name, da in reference.data_vars.items():
        summed = da.sum(dim=[d for d in da.dims if d not in ("chain", "draw")]).values
        np.testing.assert_allclose(log_prior[name].values, summed, rtol=0, atol=1e-10, err_msg=name)
        total = total + summed
    np.testing.assert_allclose(log_prior["total"].values, total, rtol=0, atol=1e-9)


def test_density_splits_and_ravels_the_value_variables(tiny):
    from forecast.density import compile_density

    model, start = tiny
    density = compile_density(model)
    values = density.to_unconstrained(start)
    assert [np.shape(v) for v in values] == list(density.shapes)
    x = density.ravel(values)
    assert x.shape == (density.size,)
    for a, b in zip(density.split(x), values, strict=True):
        np.testing.assert_array_equal(a, b)
    # the constrained values come back from the unconstrained ones
    at = dict(zip(density.posterior_names, density.draw_values(*values), strict=True))
    for name in density.free_names:
        np.testing.assert_allclose(at[name], start[name], rtol=1e-12, atol=1e-12, err_msg=name)
    # −log p is PyMC's own log density at the same point
    point = dict(zip(density.names, values, strict=True))
    assert float(density.neg_logp(*values)[0]) == pytest.approx(-float(model.compile_logp()(point)), abs=1e-9)


def test_one_chain_runs_vectorised_with_a_chain_dimension(tiny):
    from forecast.density import compile_density
    from forecast.nuts import sample_nuts

    model, start = tiny
    run = sample_nuts(compile_density(model), start, draws=5, tune=5, chains=1, target_accept=0.8, seed=1)
    assert run.chain_method == "vectorized"
    assert run.values["init_prob"].shape == (1, 5, 4)
    assert run.stats["diverging"].shape == (1, 5)
