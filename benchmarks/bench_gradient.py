#!/usr/bin/env python
"""Time one value-and-gradient of the model's log-density, as the sampler evaluates it.

Run from the repository root::

    .venv/bin/python benchmarks/bench_gradient.py                # bundled data, monthly and quarterly
    .venv/bin/python benchmarks/bench_gradient.py --freq M --evaluations 5000

The model of ``forecast.model.build_model`` (bundled data, default prior set) is turned into a JAX function
with PyMC's ``get_jaxified_logp``, and ``jax.value_and_grad`` of it is evaluated ``--evaluations`` times inside
one compiled ``jax.lax.fori_loop``, on one XLA device in float64 as ``forecast.fit`` samples. Each evaluation is
at a point that depends on the previous value and gradient, so nothing can be hoisted out of the loop and
neither output can be dropped: a loop that used only the value would let XLA remove the whole gradient
computation as dead code and time the value alone (which is also reported, for comparison). The best of
``--repeat`` runs is reported per evaluation.

A fit costs about (leapfrog steps) × (the cost of one NUTS step), and a NUTS step adds NumPyro's tree building
and U-turn checks to its gradient. To show how much, one NumPyro NUTS chain (diagonal mass matrix, target
acceptance 0.95, as ``forecast.fit``) is run on the model's density as ``forecast.nuts`` samples it (one flat
vector) and on a standard normal of the same dimension (whose gradient costs almost nothing, leaving NumPyro's
own tree building and U-turn checks): after ``--nuts-warmup`` adaptation steps, ``--nuts-draws`` further
transitions run in one compiled loop, and their time over their
leapfrog steps is the cost per step (:func:`time_nuts_step`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def time_gradient(freq: str, evaluations: int, repeat: int, data: Path, nuts_warmup: int = 500,
                  nuts_draws: int = 1000) -> float:
    """Best seconds per value-and-gradient evaluation for the bundled model at frequency ``freq``."""
    import jax
    import numpy as np
    from pymc.sampling.jax import get_jaxified_logp

    from forecast.dataset import load_dataset
    from forecast.inputs import ModelOptions, build_inputs, estimate_standardisation
    from forecast.model import build_model
    from forecast.panel import build_panel
    from forecast.priors import default_prior_set

    panel = build_panel(load_dataset(data), freq=freq)
    options = estimate_standardisation(panel, ModelOptions())
    model = build_model(build_inputs(panel, options), default_prior_set(), options)
    logp = get_jaxified_logp(model)
    value_and_grad = jax.value_and_grad(logp)
    start = model.initial_point()
    x0 = [np.asarray(start[v.name]) for v in model.value_vars]

    def body(_, carry):
        xs, acc = carry
        value, grads = value_and_grad([x + 1e-12 * acc for x in xs])
        # the gradient feeds the carry: otherwise XLA drops it as dead code and only the value is timed
        return xs, acc + value + 1e-12 * sum(g.sum() for g in grads)

    def value_body(_, carry):
        xs, acc = carry
        return xs, acc + logp([x + 1e-12 * acc for x in xs])

    best = best_seconds(jax.jit(lambda xs: jax.lax.fori_loop(0, evaluations, body, (xs, 0.0))[1]), x0, repeat)
    value_only = best_seconds(jax.jit(lambda xs: jax.lax.fori_loop(0, evaluations, value_body, (xs, 0.0))[1]),
                              x0, repeat)
    print(f"{freq}: {panel.sizes['period']} periods, {best / evaluations * 1e3:.4f} ms per value-and-gradient, "
          f"{value_only / evaluations * 1e3:.4f} ms per value alone (best of {repeat} x {evaluations} evaluations)")
    if nuts_draws:
        from forecast.density import compile_density

        # the potential forecast.nuts samples: the compiled density on one flat vector
        density = compile_density(model)
        flat = density.ravel(x0)

        def potential(x):
            return density.neg_logp(*density.split(x))[0]

        model_step = time_nuts_step(potential, flat, nuts_warmup, nuts_draws)
        null_step = time_nuts_step(lambda x: 0.5 * jax.numpy.sum(x * x), np.zeros_like(flat), nuts_warmup,
                                   nuts_draws)
        print(f"{freq}: {model_step * 1e3:.4f} ms per NUTS leapfrog step on the model's density; "
              f"{null_step * 1e3:.4f} ms on a standard normal of the same dimension ({flat.size})")
    return best / evaluations


def best_seconds(loop, argument, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of the compiled ``loop(argument)`` (after one call to compile it)."""
    import jax

    jax.block_until_ready(loop(argument))  # compile
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        jax.block_until_ready(loop(argument))
        best = min(best, time.perf_counter() - started)
    return best


def time_nuts_step(potential, init, warmup: int, draws: int) -> float:
    """Seconds per leapfrog step of one NumPyro NUTS chain on ``potential``, after adaptation.

    ``MCMC.run`` adapts the step size and mass matrix; its kernel's transition is then run ``draws`` times inside
    one compiled ``jax.lax.fori_loop`` (compiled once, timed on later calls, best of three), counting leapfrog
    steps as it goes.
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(potential_fn=potential, target_accept_prob=0.95)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=10, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), init_params=init)  # adapts step size and mass matrix
    adapted = mcmc.last_state

    def body(_, carry):
        state, steps = carry
        state = kernel.sample(state, (), {})
        return state, steps + state.num_steps

    loop = jax.jit(lambda state: jax.lax.fori_loop(0, draws, body, (state, 0)))
    _, steps = loop(adapted)  # the same state and key every call: the same transitions and leapfrog steps
    return best_seconds(loop, adapted, 3) / float(steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freq", default="M,Q", help="comma-separated frequencies (M, Q)")
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--nuts-warmup", type=int, default=500, help="adaptation steps before a NUTS step is timed")
    parser.add_argument("--nuts-draws", type=int, default=1000,
                        help="draws over which a NUTS step is timed (0: skip the NUTS timing)")
    args = parser.parse_args(argv)
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    import jax

    jax.config.update("jax_enable_x64", True)
    for freq in args.freq.split(","):
        time_gradient(freq.strip(), args.evaluations, args.repeat, args.data, args.nuts_warmup,
                      args.nuts_draws)
    return 0


if __name__ == "__main__":
    sys.exit(main())
