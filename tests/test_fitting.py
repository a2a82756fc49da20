"""Fitting: the convergence gate on synthetic draws (fast) and small real fits on simulated panels (marked fit)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from forecast.fitting import check_convergence, label_switching_findings
from forecast.inputs import ModelOptions, build_inputs
from forecast.scenarios import EFFECTS, SCENARIOS
from forecast.simulate import simulate_panel

SIGNALS = ["a", "b", "c"]


def _posterior(rng, chains=4, draws=1000, loading=None, ar=0.0, shift=0.0):
    """Independent Normal draws (ESS ≈ chains × draws) unless ``ar`` (AR(1) autocorrelation) or ``shift``."""
    def series(*shape):
        x = rng.normal(size=(chains, draws, *shape))
        if ar:
            for t in range(1, draws):
                x[:, t] = ar * x[:, t - 1] + np.sqrt(1 - ar**2) * x[:, t]
        return x

    load = np.array([[0.8, 0.3, 0.1], [0.2, -0.9, 0.0], [0.5, 0.5, 0.2]]) if loading is None else loading
    loading_draws = load[None, None] + 0.05 * series(len(SIGNALS), 3)
    stick = 4.0 + 0.3 * series(4)
    stick[0] += shift
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "signal": SIGNALS, "effect": list(EFFECTS),
              "scenario": list(SCENARIOS)}
    return xr.Dataset({"loading": (("chain", "draw", "signal", "effect"), loading_draws),
                       "stickiness": (("chain", "draw", "scenario"), stick)}, coords=coords)


def _stats(chains=4, draws=1000, divergent=0):
    div = np.zeros((chains, draws), dtype=bool)
    div.flat[:divergent] = True
    return xr.Dataset({"diverging": (("chain", "draw"), div)})


def test_gate_passes_on_good_draws():
    # independent draws: R-hat within ~0.003 of 1 and ESS near 4000, far from the thresholds
    result = check_convergence(_posterior(np.random.default_rng(0)), _stats())
    assert result["passed"], result["failures"]
    assert result["max_rhat"] < 1.01 and result["min_ess_bulk"] > 2000
    assert not result["label_switching"] and result["divergences"] == 0


def test_gate_fails_on_rhat_and_names_the_quantity():
    result = check_convergence(_posterior(np.random.default_rng(1), shift=1.0), _stats())
    assert not result["passed"]
    assert any(f.startswith("R-hat") and "stickiness[" in f for f in result["failures"]), result["failures"]


def test_gate_fails_on_low_ess():
    # AR(1) with 0.98: ESS ≈ 4000 · 0.02 / 1.98 ≈ 40, far below 400
    result = check_convergence(_posterior(np.random.default_rng(2), ar=0.98), _stats())
    assert not result["passed"]
    assert any(f.startswith("ESS bulk") for f in result["failures"])
    assert result["min_ess_bulk"] < 400


def test_gate_fails_on_divergences():
    result = check_convergence(_posterior(np.random.default_rng(3)), _stats(divergent=14))
    assert not result["passed"]
    assert "14 divergences" in result["failures"]


def test_gate_detects_a_relabelled_chain():
    post = _posterior(np.random.default_rng(4))
    post["loading"][1] = -post["loading"][1]  # chain 1 with the factors' signs flipped
    findings = label_switching_findings(post)
    assert findings and "chains 0 and 1" in findings[0]
    result = check_convergence(post, _stats())
    assert result["label_switching"] and not result["passed"]


def test_gate_detects_chains_telling_different_histories():
    post = _posterior(np.random.default_rng(5))
    probs = np.eye(4)[np.tile(np.repeat([0, 1, 2, 3], 25), (4, 1))] * 0.9 + 0.025  # (chain, T, K), rows sum to 1
    assert not label_switching_findings(post, probs)
    probs[2] = np.roll(probs[2], 1, axis=-1)  # chain 2 labels every period differently
    result = check_convergence(post, _stats(), {"chain_smoothed": probs})
    assert result["label_switching"]
    assert any("chains 0 and 2" in f for f in result["failures"])


def test_near_even_periods_whose_mode_flips_are_not_label_switching():
    # two scenarios near 50/50 for a third of the periods: the chains' modes differ there by Monte Carlo error
    # alone, but their distributions are 0.04 apart, far below the 0.5 that relabelled chains would show
    post = _posterior(np.random.default_rng(6))
    probs = np.tile(np.array([0.85, 0.05, 0.05, 0.05]), (4, 90, 1))
    probs[:, :30] = [0.49, 0.47, 0.02, 0.02]
    probs[1, :30] = [0.45, 0.51, 0.02, 0.02]
    assert (probs[0].argmax(-1) != probs[1].argmax(-1)).mean() > 0.3
    assert not label_switching_findings(post, probs)


@pytest.mark.fit
def test_recovery_and_gate_on_a_simulated_panel():
    from forecast import emissions, hmm
    from forecast.fitting import fit

    panel, states, truth = simulate_panel(300, seed=11, label_stretches=2)
    result = fit(panel, seed=3, chains=4, progress=False)  # the default sampler settings, as users fit
    assert result.converged, result.diagnostics["failures"]
    assert result.diagnostics["divergences"] == 0 and not result.diagnostics["label_switching"]

    inputs = build_inputs(panel, ModelOptions.from_dict({**result.options.to_dict(), "use_labels": False}))
    params = emissions.params_from_posterior(result.posterior, inputs)
    sub = emissions.take_draws(params, slice(None, None, 10))
    log_sm = hmm.smooth(emissions.log_initial(sub), emissions.transition_model(sub, inputs.x_std),
                        emissions.log_emission(sub, inputs))
    modal = np.exp(log_sm).mean(axis=0).argmax(axis=1)
    assert np.mean(modal == states) >= 0.9

    # coverage of 90% intervals over the scalar parameters with a unique truth: the count signals' intercepts
    # and loadings, stickiness, driver effects (level parameters are re-expressed by the simulator and included
    # too). With n ≈ 40 nearly independent checks at 90%, the number inside is Binomial(40, 0.9): mean 36, sd
    # 1.9; requiring ≥ 75% (≥ 30 of 40) fails by chance with probability < 0.1%.
    inside = []
    for name in ("intercept", "loading", "stickiness", "driver_effect"):
        draws = params[name].reshape(params[name].shape[0], -1)
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        estimated = hi > lo  # structural zeros (level signals' interaction loadings) are not estimates
        inside += list(((truth[name].ravel() >= lo) & (truth[name].ravel() <= hi))[estimated])
    assert np.mean(inside) >= 0.75, np.mean(inside)


def test_fit_command_rejects_an_unknown_prior_set_with_exit_2(capsys):
    from forecast.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fit", "--priors", "no_such_set", "--out", "unused.nc"])
    assert info.value.code == 2
    assert "unknown prior set" in capsys.readouterr().err


def test_fit_rejects_an_unknown_backend():
    from forecast.errors import ConfigError
    from forecast.fitting import fit

    panel, _, _ = simulate_panel(20, seed=0)
    with pytest.raises(ConfigError, match="backend"):
        fit(panel, seed=0, backend="stan")
