"""NumPyro's NUTS on a compiled model density: the default sampler of :func:`forecast.fitting.fit`.

This is what ``pm.sample(nuts_sampler="numpyro")`` does (the same kernel, settings, random keys and initial
points, so the same seed gives the same draws), run on the :class:`forecast.density.Density` that the mode search
has already converted. Going through ``pm.sample`` instead would convert the model's graph to JAX twice more
(for the sampler and for the post-processing) and assign PyMC step methods that are never used: 2.5–3 s of
every fit outside the sampling itself, whatever its length.

After sampling, every draw is mapped to the posterior variables (free variables on their constrained scale and
deterministics, as ``pm.sample`` stores them) and their log prior densities in one vectorised JAX call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecast.density import Density

logger = logging.getLogger(__name__)

__all__ = ["NutsDraws", "sample_nuts", "sampler_seed"]

#: NumPyro's per-draw statistics, under the names ``pm.sample`` gives them in ``sample_stats``.
_STAT_NAMES = {
    "diverging": "diverging",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "energy": "energy",
    "potential_energy": "lp",
    "adapt_state.step_size": "step_size",
}


@dataclass(frozen=True)
class NutsDraws:
    """The output of :func:`sample_nuts`.

    Attributes
    ----------
    values : dict of str to numpy.ndarray
        ``Density.posterior_names`` → array of shape (chain, draw, ...).
    stats : dict of str to numpy.ndarray
        Per-draw sampler statistics (chain, draw): ``diverging``, ``n_steps``, ``tree_depth``,
        ``acceptance_rate``, ``energy``, ``lp`` (the potential energy, −log p, as PyMC names it) and
        ``step_size``.
    sampling_time : float
        Seconds in NumPyro's ``MCMC.run`` until the draws were ready, its compilation included (as
        ``pm.sample`` records ``sampling_time``).
    chain_method : str
        ``"parallel"`` (one JAX device per chain) or ``"vectorized"``.
    unconstrained_mean, unconstrained_sd : numpy.ndarray
        Mean and standard deviation of every unconstrained coordinate over all draws (the layout of
        ``Density.split``), to tell whether another posterior mode was visited.
    """

    values: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    sampling_time: float
    chain_method: str
    unconstrained_mean: np.ndarray
    unconstrained_sd: np.ndarray


def sampler_seed(seed: int) -> int:
    """The seed of the sampler's JAX random keys for a fit's ``seed``.

    ``pm.sample`` spawns one NumPy generator per chain from ``seed`` and gives its JAX samplers the first one's
    integer draw in [0, 2³⁰); the same derivation here keeps every fit's draws what they were when fits ran
    through ``pm.sample``.

    Parameters
    ----------
    seed : int
        The fit's seed.

    Returns
    -------
    int
        The seed of ``jax.random.PRNGKey``.
    """
    return int(np.random.default_rng(seed).spawn(1)[0].integers(2**30))


def sample_nuts(
    density: Density,
    start: dict[str, np.ndarray],
    *,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    seed: int,
    progress: bool = False,
) -> NutsDraws:
    """Sample with NumPyro's NUTS (diagonal mass matrix) from one start shared by every chain.

    Parameters
    ----------
    density : Density
        The model's compiled density (:func:`forecast.density.compile_density`).
    start : dict of str to numpy.ndarray
        Constrained values of the free variables, keyed by name; every chain starts there, without jitter.
    draws, tune, chains : int
        Kept draws and warm-up iterations per chain, and the number of chains.
    target_accept : float
        Target acceptance probability of the step-size adaptation.
    seed : int
        The fit's seed (the random keys' seed is :func:`sampler_seed` of it).
    progress : bool
        Show NumPyro's progress bar.

    Returns
    -------
    NutsDraws
        Posterior values, sampler statistics and timing.

    Notes
    -----
    Chains run in parallel, one per JAX host device, when there are enough devices (``forecast.fitting``
    asks for one per chain before JAX starts); otherwise NumPyro draws them vectorised on one device. The mass
    matrix is diagonal: a dense one is first estimated from 25 warm-up draws of about 40 parameters, and the
    near-singular estimate made the warm-up cost more leapfrog steps than the draws (``docs/model.md``).
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    chain_method = "parallel" if len(jax.devices("cpu")) >= chains > 1 else "vectorized"
    neg_logp, split = density.neg_logp, density.split

    # one flat vector rather than a list of the model's 14 value variables: NumPyro's leapfrog and tree
    # bookkeeping then runs one operation per step where it ran one per variable (about 10 % of the sampling
    # time); the draws are the same, since NumPyro flattens the momentum itself
    def potential(x: Any) -> Any:
        return neg_logp(*split(x))[0]

    kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept, adapt_step_size=True,
                  adapt_mass_matrix=True, dense_mass=False)
    mcmc = MCMC(kernel, num_warmup=tune, num_samples=draws, num_chains=chains, postprocess_fn=None,
                chain_method=chain_method, progress_bar=progress)
    first = density.ravel(density.to_unconstrained(start))
    init = np.repeat(first[None], chains, axis=0) if chains > 1 else first
    key = jax.random.PRNGKey(sampler_seed(seed))
    keys = jax.random.split(key, chains) if chains > 1 else key
    t0 = time.perf_counter()
    mcmc.run(keys, init_params=init, extra_fields=tuple(_STAT_NAMES))
    raw = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(raw)
    sampling_time = time.perf_counter() - t0
    stats = {}
    for field, value in mcmc.get_extra_fields(group_by_chain=True).items():
        if field in _STAT_NAMES:
            stats[_STAT_NAMES[field]] = np.asarray(value)
    stats["tree_depth"] = np.log2(stats["n_steps"]).astype(int) + 1
    logger.info("NUTS sampled %d chains × %d draws (+%d warm-up) in %.1f s (%s chains)", chains, draws, tune,
                sampling_time, chain_method)

    draw_values = density.draw_values
    per_draw = jax.jit(jax.vmap(jax.vmap(lambda x: draw_values(*split(x)))))
    out = per_draw(raw)  # grouped by chain: (chain, draw, size) also for one chain
    values = {name: np.asarray(v) for name, v in zip(density.posterior_names, out, strict=True)}
    flat = np.asarray(raw).reshape(-1, density.size)
    return NutsDraws(values=values, stats=stats, sampling_time=sampling_time, chain_method=chain_method,
                     unconstrained_mean=flat.mean(axis=0), unconstrained_sd=flat.std(axis=0))
