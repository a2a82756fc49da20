#!/usr/bin/env python
"""Time one value-and-gradient of the model's log-density, as the sampler evaluates it.

Run from the repository root::

    .venv/bin/python benchmarks/bench_gradient.py                # bundled data, monthly and quarterly
    .venv/bin/python benchmarks/bench_gradient.py --freq M --evaluations 5000

The model of ``forecast.model.build_model`` (bundled data, default prior set) is turned into a JAX function
with PyMC's ``get_jaxified_logp``, and ``jax.value_and_grad`` of it is evaluated ``--evaluations`` times inside
one compiled ``jax.lax.fori_loop`` (each evaluation at a point that depends on the previous value, so nothing
can be hoisted out of the loop), on one XLA device in float64 as ``forecast.fit`` samples. The best of
``--repeat`` runs is reported per evaluation. A fit costs about (leapfrog steps) × this.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def time_gradient(freq: str, evaluations: int, repeat: int, data: Path) -> float:
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
    value_and_grad = jax.value_and_grad(get_jaxified_logp(model))
    start = model.initial_point()
    x0 = [np.asarray(start[v.name]) for v in model.value_vars]

    def body(_, carry):
        xs, acc = carry
        value, _ = value_and_grad([x + 1e-12 * acc for x in xs])
        return xs, acc + value

    loop = jax.jit(lambda xs: jax.lax.fori_loop(0, evaluations, body, (xs, 0.0))[1])
    loop(x0).block_until_ready()  # compile
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        loop(x0).block_until_ready()
        best = min(best, time.perf_counter() - started)
    print(f"{freq}: {panel.sizes['period']} periods, {best / evaluations * 1e3:.4f} ms per value-and-gradient "
          f"(best of {repeat} x {evaluations} evaluations)")
    return best / evaluations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freq", default="M,Q", help="comma-separated frequencies (M, Q)")
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    args = parser.parse_args(argv)
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    import jax

    jax.config.update("jax_enable_x64", True)
    for freq in args.freq.split(","):
        time_gradient(freq.strip(), args.evaluations, args.repeat, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
