"""Shared set-up for the tests of the fit file's stored last filtered states (update and attribution)."""

from __future__ import annotations

from typing import Any


def labelled_known_fit(n_periods: int, *, seed: int, label_stretches: list[tuple[int, int]],
                       fit_seed: int) -> dict[str, Any]:
    """A labelled simulated panel and a known-parameter fit of its first 120 periods that used the labels.

    The label-conditioned and the evidence-only filtered states of such a fit differ, which the tests need.
    Returns ``panel`` (all periods), ``old`` (the first 120) and ``fit``.
    """
    from forecast.inputs import ModelOptions, estimate_standardisation
    from forecast.simulate import known_parameter_fit, simulate_panel

    panel, _, truth = simulate_panel(n_periods, seed=seed, label_stretches=label_stretches, label_confidence=0.8)
    old = panel.isel(period=slice(0, 120))
    old.attrs = dict(panel.attrs)
    options = estimate_standardisation(old, ModelOptions(use_labels=True))
    fit = known_parameter_fit(old, truth, chains=2, draws=300, jitter=0.1, seed=fit_seed, options=options)
    return {"panel": panel, "old": old, "fit": fit}


def without_stored_state(fit: Any) -> Any:
    """The same fit as an older fit file has it: no ``filtered_state`` group."""
    from forecast.fitfile import Fit

    tree = fit.tree.copy()
    del tree["filtered_state"]
    return Fit(tree=tree)
