"""Where the sampler starts: a moment-based start and a multi-start search for the posterior mode.

Every chain of a fit starts from the same point, without jitter, so that all chains begin in the labelling the
marker rule gives (``docs/model.md``, "Loadings and identification"). That point must also be in the right
*basin*: the model's posterior can have several local modes that are not relabellings of each other (for
example the relations factor carried by the wrong signals), and NUTS chains that all start in a poor one agree
with each other there, so R-hat cannot notice. :func:`find_mode` therefore optimises the log posterior density
(on the sampler's unconstrained scale, Jacobians included) from the moment start of :func:`initial_values` and
from jittered copies of it, and returns the best optimum found.

On simulated panels the moment start alone led every chain into such a poor mode in up to a sixth of the
replications; there the optimum reached from the moment start lay 20 to over 300 units of log posterior density
below the best one found from 16 starts (``docs/calibration.md``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from forecast.inputs import ModelInputs
from forecast.priors import PriorSet

logger = logging.getLogger(__name__)

__all__ = ["ALTERNATIVE_WINDOW", "JITTER_SCALE", "competing_optima", "find_mode", "initial_values"]

#: Standard deviation of the normal jitter added, on the unconstrained scale, to the moment start for the
#: extra starts of :func:`find_mode` (1 moves a loading magnitude or a log scale by about a factor e).
JITTER_SCALE = 1.0
#: Iteration limit of each L-BFGS optimisation (a bundled-data optimisation converges in 100–300).
_MAX_ITER = 1000
#: Optima whose −log p is within this of the best are kept as competing modes (e³ ≈ 20 times lower density at
#: the peak: such a mode can still hold comparable mass if it is broader).
ALTERNATIVE_WINDOW = 3.0
#: Two optima are the same point when no unconstrained coordinate differs by more than this.
SAME_POINT = 0.05
#: Most competing optima kept.
MAX_ALTERNATIVES = 5


def initial_values(inputs: ModelInputs, priors: PriorSet) -> dict[str, np.ndarray]:
    """Deterministic starting values, labelled by the marker rule, shared by every chain.

    Count intercepts start at the log of each signal's mean rate per full period; level intercepts at 0 (the
    standardised mean); loadings with a known sign at half a standard unit in that sign, markers' own-factor
    loadings at 0.8 with cross-loadings 0 (ratio at the centre of its range), free loadings at 0; stickiness at
    its prior location (the prior's expected duration), drivers at 0, the initial distribution uniform.

    Parameters
    ----------
    inputs : ModelInputs
        Model inputs.
    priors : PriorSet
        The prior set (for the stickiness location).

    Returns
    -------
    dict of str to numpy.ndarray
        Values of the model's free variables on their constrained scale, keyed by name.
    """
    from forecast.model import centred_intercepts, loading_layout

    layout = loading_layout(inputs)
    out: dict[str, np.ndarray] = {}
    if inputs.count_signals:
        mask = inputs.count_mask
        exposure = np.where(mask, np.exp(inputs.log_exposure), 0.0)
        rate = (inputs.y_count * mask).sum(axis=0) + 0.5
        a = np.log(rate / np.maximum(exposure.sum(axis=0), 1.0))
        location, scale = float(a.mean()), float(max(a.std(), 0.5))
        centred = centred_intercepts(inputs)
        if centred.any():
            out["count_intercept_centred"] = a[centred]
        if not centred.all():
            out["count_intercept_std"] = (a[~centred] - location) / scale
        out["intercept_location"] = np.asarray(location)
        out["intercept_scale"] = np.asarray(scale)
        out["nb_alpha"] = np.full(len(inputs.count_signals), 5.0)
    if inputs.level_signals:
        out["level_intercept"] = np.zeros(len(inputs.level_signals))
        out["level_sigma"] = np.full(len(inputs.level_signals), 0.7)
    out["loading_scale"] = np.full(len(inputs.groups), 0.7)
    if layout.mag_signal.size:
        own = np.array([inputs.marker[s] != "" for s in layout.mag_signal])
        out["loading_magnitude"] = np.where(own, 0.8, 0.5)
    if layout.free_signal.size:
        out["loading_free"] = np.zeros(layout.free_signal.size)
    if layout.inter_signal.size:
        out["loading_interaction"] = np.zeros(layout.inter_signal.size)
    if layout.cross_signal.size:
        # unknown cross sign: ratio 0.5 gives cross-loading 0; known sign: a quarter of the own loading
        out["marker_ratio"] = np.where(layout.cross_shift < 0, 0.5, 0.25)
    mu = priors["stickiness"].parameters.get("mu", 3.0)
    out["stickiness"] = np.full(4, float(np.asarray(mu)))
    out["driver_effect"] = np.zeros((len(inputs.drivers), 2))
    out["init_prob"] = np.full(4, 0.25)
    return out


def competing_optima(found: list[tuple[float, np.ndarray]], best_x: np.ndarray,
                     best: float) -> list[dict[str, Any]]:
    """The optima other than the best that could hold comparable posterior mass.

    Parameters
    ----------
    found : list of (float, numpy.ndarray)
        Every optimisation's end: −log p and the point (flat, unconstrained).
    best_x : numpy.ndarray
        The best point (where the chains start).
    best : float
        Its −log p.

    Returns
    -------
    list of dict
        Up to :data:`MAX_ALTERNATIVES` entries ``{"neg_logp", "x"}``, best first: optima within
        :data:`ALTERNATIVE_WINDOW` of ``best`` that lie elsewhere (some coordinate differs by more than
        :data:`SAME_POINT` from the best point and from every alternative already kept). After sampling,
        :func:`forecast.fitting.unvisited_modes` checks whether the chains reached them.
    """
    out: list[dict[str, Any]] = []
    kept = [best_x]
    for value, x in sorted(found, key=lambda item: item[0]):
        if value - best > ALTERNATIVE_WINDOW or len(out) >= MAX_ALTERNATIVES:
            break
        if all(np.max(np.abs(x - other)) > SAME_POINT for other in kept):
            kept.append(x)
            out.append({"neg_logp": round(float(value), 3), "x": [round(float(v), 6) for v in x]})
    return out


def find_mode(
    model: Any, start: dict[str, np.ndarray], *, starts: int, seed: int, jitter: float = JITTER_SCALE
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Optimise the log posterior density from ``start`` and ``starts − 1`` jittered copies; return the best.

    Parameters
    ----------
    model : pymc.Model or forecast.density.Density
        The model of :func:`forecast.model.build_model`, or its density already compiled by
        :func:`forecast.density.compile_density` (as :func:`forecast.fitting.fit` passes it, to share it with
        the sampler).
    start : dict of str to numpy.ndarray
        Values of the free variables on their constrained scale (:func:`initial_values`).
    starts : int
        Number of optimisations: the moment start and ``starts − 1`` copies jittered with independent
        ``Normal(0, jitter)`` noise on the unconstrained scale. ``0`` returns ``start`` unchanged.
    seed : int
        Seed of the jitter (the same seed gives the same starts and the same result).
    jitter : float
        Standard deviation of the jitter.

    Returns
    -------
    values : dict of str to numpy.ndarray
        The best optimum's free variables on their constrained scale, keyed as ``start``.
    search : dict
        What the search found (stored in the fit file's ``sampler`` attribute): ``starts`` (optimisations run),
        ``best_neg_logp`` and ``moment_neg_logp`` (the smallest negative log posterior density reached, and the
        one reached from the moment start itself, on the unconstrained scale), ``best_start`` (0 is the moment
        start), ``modes`` (distinct optima, rounded to 0.1), ``failed`` (optimisations that ended at a
        non-finite density), ``alternatives`` (competing optima elsewhere, :func:`competing_optima`) and
        ``seconds``.

    Notes
    -----
    The density and its gradient are compiled once with PyTensor's JAX backend (JAX must be set to float64
    first, as :func:`forecast.fitting.fit` does) and minimised with SciPy's L-BFGS-B. An optimisation that
    fails (a non-finite density) is skipped; if all do, ``start`` is returned.
    """
    if starts < 0:
        raise ValueError(f"starts must be >= 0, got {starts}")
    if starts == 0:
        return dict(start), {"starts": 0}
    import jax
    import scipy.optimize

    from forecast.density import Density, compile_density

    began = time.perf_counter()
    density = model if isinstance(model, Density) else compile_density(model)
    neg_logp = density.neg_logp
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: neg_logp(*density.split(x))[0]))

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        return float(value), np.asarray(grad, dtype=float)

    x0 = density.ravel(density.to_unconstrained(start))
    rng = np.random.default_rng(seed)
    best_x, best, moment, best_start, optima, failed = x0, np.inf, np.nan, -1, [], 0
    found: list[tuple[float, np.ndarray]] = []
    for k in range(starts):
        x_start = x0 if k == 0 else x0 + jitter * rng.normal(size=x0.size)
        with np.errstate(all="ignore"):
            result = scipy.optimize.minimize(objective, x_start, jac=True, method="L-BFGS-B",
                                             options={"maxiter": _MAX_ITER})
        value = float(result.fun)
        if not np.isfinite(value):
            failed += 1
            continue
        optima.append(value)
        found.append((value, np.asarray(result.x, dtype=float)))
        if k == 0:
            moment = value
        if value < best:
            best_x, best, best_start = result.x, value, k
    values = dict(start)
    if np.isfinite(best):
        # one compiled call: run eagerly, each of the graph's operations would be compiled on its own (~1.5 s)
        outputs = jax.jit(lambda x: density.draw_values(*density.split(x)))(best_x)
        at_best = dict(zip(density.posterior_names, outputs, strict=True))
        for name in density.free_names:
            values[name] = np.asarray(at_best[name], dtype=float)
    search = {
        "starts": int(starts), "best_neg_logp": round(float(best), 3), "moment_neg_logp": round(float(moment), 3),
        "best_start": int(best_start), "modes": len({round(v, 1) for v in optima}), "failed": int(failed),
        "alternatives": competing_optima(found, best_x, best),
        "seconds": round(time.perf_counter() - began, 2),
    }
    logger.info("mode search: %d starts in %.1f s, best -log p %.2f (from the moment start %.2f), %d distinct "
                "optima%s", starts, search["seconds"], best, moment, search["modes"],
                f", {failed} failed" if failed else "")
    return values, search
