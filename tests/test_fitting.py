"""Fitting: the convergence gate on synthetic draws (fast) and small real fits on simulated panels (marked fit)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

from forecast.catalog import NO_LOADING
from forecast.fitting import check_convergence, label_switching_findings
from forecast.inputs import ModelOptions, build_inputs
from forecast.sampler_defaults import QUARTERLY_DRAWS, QUARTERLY_TARGET_ACCEPT
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


@pytest.mark.parametrize(("flag", "terminal", "expected"), [
    ([], False, False), ([], True, True), (["--progress"], False, True), (["--no-progress"], True, False)])
def test_fit_command_shows_progress_bars_on_a_terminal_unless_told(tiny_data_dir, monkeypatch, flag, terminal,
                                                                    expected):
    import forecast.fitting
    from forecast.cli import main

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(panel, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(forecast.fitting, "fit", fake_fit)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    with pytest.raises(SystemExit):
        main(["fit", "--data", str(tiny_data_dir), "--out", "unused.nc", *flag])
    assert seen["progress"] is expected


def test_fit_rejects_an_unknown_backend():
    from forecast.errors import ConfigError
    from forecast.fitting import fit

    panel, _, _ = simulate_panel(20, seed=0)
    with pytest.raises(ConfigError, match="backend"):
        fit(panel, seed=0, backend="stan")


def _failed(**changes):
    diag = {"passed": False, "max_rhat": 1.004, "min_ess_bulk": 900.0, "min_ess_tail": 800.0, "divergences": 0,
            "label_switching": False, "ess_threshold": 400.0}
    return {**diag, **changes}


SAMPLER = {"draws": 1000, "target_accept": 0.95, "starts": 16}


def test_gate_advice_is_empty_for_a_fit_that_passed():
    from forecast.fitting import gate_advice

    assert gate_advice({**_failed(), "passed": True}, SAMPLER) == []


def test_gate_advice_scales_the_draws_to_the_shortest_ess():
    from forecast.fitting import gate_advice

    # tail ESS 146 of 400 needed: 1000 · 400/146 · 1.2 = 3288 draws, rounded up to 3500
    advice = gate_advice(_failed(min_ess_bulk=291.0, min_ess_tail=146.0), SAMPLER)
    assert len(advice) == 1
    assert "ESS 146 against 400" in advice[0] and "--draws 3500" in advice[0]


def test_gate_advice_for_divergences_raises_target_accept():
    from forecast.fitting import gate_advice

    advice = gate_advice(_failed(divergences=7), SAMPLER)
    assert len(advice) == 1 and "7 divergent" in advice[0] and "--target-accept 0.975" in advice[0]


def test_gate_advice_for_disagreeing_chains_is_more_searches_not_more_draws():
    from forecast.fitting import gate_advice

    advice = gate_advice(_failed(max_rhat=1.31, label_switching=True), SAMPLER)
    assert len(advice) == 1
    assert "--starts 32" in advice[0] and "label switching" in advice[0] and "--draws" not in advice[0]


def test_gate_advice_for_a_slightly_high_rhat_is_longer_chains():
    from forecast.fitting import gate_advice

    # R-hat 1.02 with ESS to spare: half as many draws again, with a fifth to spare (1800, rounded up to 2000)
    advice = gate_advice(_failed(max_rhat=1.02), SAMPLER)
    assert len(advice) == 1 and "R-hat 1.020" in advice[0] and "--draws 2000" in advice[0]


def test_unvisited_modes_flags_a_competing_mode_far_from_the_draws():
    from forecast.fitting import unvisited_modes

    mean, sd = np.zeros(3), np.array([1.0, 0.1, 1.0])
    search = {"best_neg_logp": 507.7, "alternatives": [
        {"neg_logp": 508.45, "x": [0.5, 1.9, 0.0]},   # 19 sd away in the second coordinate
        {"neg_logp": 508.69, "x": [0.0, 0.8, 0.0]},   # 8 sd away
        {"neg_logp": 509.0, "x": [2.0, 0.3, -1.0]},   # 3 sd at most: in the sampled basin
    ]}
    findings = unvisited_modes(search, mean, sd, ["a", "b[0]", "c"])
    assert len(findings) == 1
    assert "2 other modes (-log p 508.45 to 508.69, against 507.70" in findings[0]
    assert "b[0] lies 19 posterior sd" in findings[0]
    near = {"best_neg_logp": 507.7, "alternatives": search["alternatives"][2:]}
    assert unvisited_modes(near, mean, sd, ["a", "b[0]", "c"]) == []
    assert unvisited_modes({"best_neg_logp": 1.0}, mean, sd, ["a", "b", "c"]) == []


def test_an_unvisited_mode_fails_the_gate_and_gets_its_own_advice():
    from forecast.fitting import gate_advice

    finding = "multimodal posterior: the mode search found another mode (...)"
    result = check_convergence(_posterior(np.random.default_rng(7)), _stats(), {"unvisited_modes": [finding]})
    assert not result["passed"] and result["multimodal"] and finding in result["failures"]
    advice = gate_advice(result, SAMPLER)
    assert len(advice) == 1 and "more than one mode" in advice[0] and "--seed" in advice[0]


def test_density_labels_follow_the_flat_layout():
    from forecast.density import Density

    unused = lambda *a: None  # noqa: E731
    density = Density(names=("mu", "beta", "gamma_log__"), free_names=("mu", "beta", "gamma"),
                      shapes=((), (2,), (2, 2)), neg_logp=unused, posterior_names=(), draw_values=unused,
                      to_unconstrained=unused)
    assert density.labels() == ["mu", "beta[0]", "beta[1]", *[f"gamma_log__[{i}]" for i in range(4)]]
    assert len(density.labels()) == density.size


@pytest.mark.fit
def test_a_free_relations_loading_on_force_posture_makes_two_quarterly_modes_and_the_gate_says_so():
    # With the US force-posture levels' relations loadings free (catalog sign "?", as before the bundled catalog
    # gave them "0"), the quarterly panel has two separated modes: in one, us_forces_korea loads on relations at
    # about +0.95 (the relations factor follows the troop trend), in the other at about -0.4 (-log p 507.70
    # against 508.45). With seed 1 the chains start in one and the search also finds the other; no chain
    # crosses, so R-hat cannot tell: the unvisited-mode check must. With the bundled signs ("0") the same seed
    # finds no such mode.
    from forecast.dataset import load_dataset
    from forecast.fitting import fit
    from forecast.panel import build_panel
    from forecast.paths import bundled_data_dir

    bundled = build_panel(load_dataset(bundled_data_dir()), "Q")
    posture = ["us_forces_korea", "us_forces_japan"]
    assert (bundled["direction_relations"].sel(signal=posture) == NO_LOADING).all()
    free = bundled.copy(deep=True)
    free["direction_relations"].loc[{"signal": posture}] = 0
    result = fit(free, seed=1, draws=1000, target_accept=0.95, progress=False)  # the settings of the finding
    assert result.attr("sampler")["mode_search"]["alternatives"]
    assert result.diagnostics["multimodal"] and not result.converged
    assert any(f.startswith("multimodal posterior") for f in result.diagnostics["failures"])
    # the bundled signs, with the quarterly defaults (1500 draws, target acceptance 0.97): one mode, gate passed
    result = fit(bundled, seed=1, progress=False)
    sampler = result.attr("sampler")
    assert (sampler["draws"], sampler["target_accept"]) == (QUARTERLY_DRAWS, QUARTERLY_TARGET_ACCEPT)
    assert not result.diagnostics["multimodal"] and result.converged, result.diagnostics["failures"]


def test_fit_summary_names_competing_optima_and_what_to_try():
    from forecast.cli.fit import format_diagnostics

    search = {"starts": 16, "modes": 5, "best_neg_logp": 507.7, "moment_neg_logp": 508.45,
              "alternatives": [{"neg_logp": 508.45, "x": [0.0]}, {"neg_logp": 509.0, "x": [1.0]}]}
    text = format_diagnostics(_failed(min_ess_tail=146.0, failures=["ESS tail 146 on x"]),
                              {**SAMPLER, "backend": "numpyro", "chains": 4, "tune": 500, "mode_search": search})
    assert "(5 distinct optima, 2 competing elsewhere)" in text
    assert "convergence gate: FAILED" in text and "  - ESS tail 146 on x" in text
    assert text.index("what to try:") > text.index("ESS tail 146 on x") and "--draws 3500" in text
