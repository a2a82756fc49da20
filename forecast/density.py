"""The model's log density, and what a draw means, as JAX functions compiled once per fit.

A fit needs the model's log posterior density three times: to search for the posterior mode
(:mod:`forecast.start`), to sample (:mod:`forecast.nuts`), and, after sampling, to turn each draw on the
sampler's unconstrained scale into the posterior variables and their log prior densities. Each PyMC→JAX
conversion rewrites the whole PyTensor graph (about 0.6 s for this model), and ``pm.sample`` would do it again
for its own sampler and post-processing. :func:`compile_density` does it once per output and the result is
shared.

Every function here takes the free variables on the unconstrained scale as a list of arrays in
``Density.names`` order (the order of ``model.value_vars``), as PyMC's own JAX samplers do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Density", "compile_density"]


@dataclass(frozen=True)
class Density:
    """JAX functions of one model's free variables on the unconstrained (sampler) scale.

    Attributes
    ----------
    names : tuple of str
        Names of the value variables (``model.value_vars``), in argument order.
    free_names : tuple of str
        Names of the free variables (``model.free_RVs``) in the same order, on their constrained scale.
    shapes : tuple of tuple of int
        Their shapes.
    neg_logp : callable
        ``neg_logp(*values) -> [−log p]``: the negative log posterior density, Jacobians included (PyTensor's
        JAX function; not jitted).
    posterior_names : tuple of str
        Names of the posterior variables :attr:`draw_values` returns: the free variables on their constrained
        scale and the model's deterministics (as ``pm.sample`` stores them), then one ``log_prior:NAME`` per free
        variable.
    draw_values : callable
        ``draw_values(*values) -> list`` of arrays in :attr:`posterior_names` order (not jitted).
    to_unconstrained : callable
        ``to_unconstrained(values) -> list``: the value variables for constrained values of the free variables
        keyed by name (those not given take the model's initial point).
    """

    names: tuple[str, ...]
    free_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    neg_logp: Callable[..., Any]
    posterior_names: tuple[str, ...]
    draw_values: Callable[..., Any]
    to_unconstrained: Callable[[dict[str, np.ndarray]], list[np.ndarray]]

    @property
    def size(self) -> int:
        """Number of unconstrained scalars."""
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def split(self, x: Any) -> list[Any]:
        """The flat vector ``x`` (NumPy or JAX) as one array per value variable."""
        out, lo = [], 0
        for shape in self.shapes:
            hi = lo + int(np.prod(shape))
            out.append(x[lo:hi].reshape(shape))
            lo = hi
        return out

    def labels(self) -> list[str]:
        """A name for every scalar of the flat vector (``name``, or ``name[i]`` in flat order), as in :meth:`split`."""
        out: list[str] = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            out += [f"{name}[{i}]" for i in range(int(np.prod(shape)))] if shape else [name]
        return out

    def ravel(self, values: list[np.ndarray]) -> np.ndarray:
        """One flat float vector from one array per value variable (the inverse of :meth:`split`)."""
        return np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in values])


def compile_density(model: Any) -> Density:
    """Convert ``model``'s log density and post-processing to JAX functions (once).

    JAX's float64 mode must be on before this is called (:func:`forecast.fitting.fit` turns it on).

    Parameters
    ----------
    model : pymc.Model
        The model of :func:`forecast.model.build_model`.

    Returns
    -------
    Density
        The functions, sharing one conversion of each graph.
    """
    from pymc.initial_point import make_initial_point_fn
    from pymc.sampling.jax import get_jaxified_graph
    from pymc.util import get_default_varnames

    value_vars = list(model.value_vars)
    names = tuple(v.name for v in value_vars)
    reference = make_initial_point_fn(model=model, jitter_rvs=set(), return_transformed=True)(0)
    shapes = tuple(tuple(int(d) for d in np.shape(reference[n])) for n in names)

    neg_logp = get_jaxified_graph(inputs=value_vars, outputs=[-model.logp()])

    # what pm.sample stores: free variables on their constrained scale and deterministics, transformed values not
    kept = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    free = list(model.free_RVs)
    log_prior_terms = model.logp(vars=free, jacobian=False, sum=False)
    draw_values = get_jaxified_graph(inputs=value_vars, outputs=[*kept, *log_prior_terms])
    posterior_names = tuple([v.name for v in kept] + [f"log_prior:{rv.name}" for rv in free])

    def to_unconstrained(values: dict[str, np.ndarray]) -> list[np.ndarray]:
        point = make_initial_point_fn(model=model, overrides=values, jitter_rvs=set(),
                                      return_transformed=True)(0)
        return [np.asarray(point[n], dtype=float) for n in names]

    return Density(names=names, free_names=tuple(rv.name for rv in free), shapes=shapes, neg_logp=neg_logp,
                   posterior_names=posterior_names, draw_values=draw_values, to_unconstrained=to_unconstrained)
