"""Pure-array hidden-Markov computations on log-probabilities: filter, smoother, forecasts, one new period.

Every function takes leading batch dimensions (posterior draws, typically) and broadcasts them against each
other, so one call handles all draws at once; the only Python loop is over time. Arrays follow the conventions
of ``docs/architecture.md``:

- ``log_init`` (..., K): log initial distribution of the first period's state;
- ``log_trans`` (..., T, K, K): ``log_trans[..., t, i, j] = log P(s_t = j | s_{t-1} = i)``; index t = 0 is
  ignored (the first period uses ``log_init``);
- ``log_obs`` (..., T, K): log density of period t's evidence under each state.

The recursions run in linear space with per-period scaling (the classic scaled forward–backward algorithm):
each period's evidence is exponentiated after subtracting its maximum over states, the filtered distribution
is renormalised every period and the scale factors give the log-likelihood increments, so results equal the
log-space recursions to rounding error (tested to 1e-10 against enumeration of all paths). ``log_trans`` holds
log-probabilities (each row a distribution, as :func:`forecast.emissions.log_transitions` makes them); any
period where the linear-space total underflows (rows far from normalised, or hard labels colliding with
near-impossible transitions) is redone exactly in log space for the affected batch entries.

``-inf`` entries (impossible transitions, hard labels, evidence impossible under a state) are handled without
producing NaN. If the evidence of a period is impossible under every reachable state, that period's
log-likelihood increment is ``-inf`` and its evidence is ignored (filtered = predicted) by the filter and the
smoother alike, so the other periods stay finite.

Speed: the loop over periods touches one period's slice of every draw; arrays whose memory is time-major
(``np.moveaxis`` views of (T, N, ...) arrays, which :mod:`forecast.emissions` returns) are about twice as fast
as draw-major ones, and :class:`StickyTransitions` (the model's transition family, unexpanded) propagates in O(K)
per period and draw. 4,000 draws × 430 periods × 4 states filter and smooth in about 0.45 s in one call on
this project's two-core reference machine.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "StickyTransitions", "forward", "forward_backward", "forward_step", "predict", "single_threaded_blas", "smooth",
]

#: Totals below this are treated as underflow and redone exactly in log space.
_TINY = 1e-280
_BIG = 1e300


_BLAS_CONTROLLER = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS single-threaded inside the block.

    The recursions make thousands of small matrix products; OpenBLAS threads only add synchronisation to them,
    and on a busy two-core machine they made the filter several times slower. Uses ``threadpoolctl`` when it
    is installed and does nothing otherwise.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency of the scientific stack
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController()
    if not _BLAS_CONTROLLER:
        yield
        return
    with _BLAS_CONTROLLER.limit(limits=1, user_api="blas"):
        yield


def _finite_max(a: np.ndarray, axis: int) -> np.ndarray:
    """Maximum along ``axis`` (kept), with ``-inf`` (all entries impossible) replaced by 0."""
    m = np.max(a, axis=axis, keepdims=True)
    return np.where(np.isfinite(m), m, 0.0)


def _propagate(log_p: np.ndarray, log_trans: np.ndarray) -> np.ndarray:
    """``log sum_i exp(log_p[..., i] + log_trans[..., i, j])`` for every j, shape (..., K)."""
    a = log_p[..., :, None] + log_trans
    m = _finite_max(a, axis=-2)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m).sum(axis=-2)) + m[..., 0, :]


def _normalise(log_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalise unnormalised log weights over the last axis; return (log_normalised, log_total)."""
    m = _finite_max(log_u, axis=-1)
    with np.errstate(divide="ignore"):
        log_total = np.log(np.exp(log_u - m).sum(axis=-1)) + m[..., 0]
    ok = np.isfinite(log_total)
    safe_total = np.where(ok, log_total, 0.0)
    return log_u - safe_total[..., None], log_total


def _condition(log_pred: np.ndarray, log_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bayes' rule for one period: (log_filtered, log-likelihood increment)."""
    log_filtered, log_inc = _normalise(log_pred + log_obs)
    impossible = ~np.isfinite(log_inc)
    if np.any(impossible):
        log_filtered = np.where(impossible[..., None], log_pred, log_filtered)
    return log_filtered, log_inc


def _last_max(a: np.ndarray) -> np.ndarray:
    """Maximum over the (short) last axis, as a chain of element-wise maxima (much faster than ``max``)."""
    return functools.reduce(np.maximum, [a[..., k] for k in range(a.shape[-1])])


def _last_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the (short) last axis as a matrix-vector product (much faster than ``sum``)."""
    return a @ np.ones(a.shape[-1])


class _Evidence:
    """Evidence exponentiated once for both passes: ``exp(log_obs − m)`` and m, time-major (T, ..., K)."""

    def __init__(self, log_obs: np.ndarray):
        self.exp, self.shift = _exp_obs(np.moveaxis(log_obs, -2, 0))


def _exp_obs(log_obs_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(exp(log_obs_t - m), m)``, m the per-entry maximum over states (finite even where all are ``-inf``)."""
    m = np.maximum(_last_max(log_obs_t), -_BIG)
    return np.exp(log_obs_t - m[..., None]), m


@dataclass(frozen=True)
class StickyTransitions:
    """Transition matrices ``log P(s_t = j | s_{t-1} = i) = log_softmax_j(ρ_i [i = j] + g_tj)``, unexpanded.

    This is the model's transition family (:func:`forecast.emissions.transition_model` builds it). Passing it
    instead of the dense (..., T, K, K) array lets the filter and smoother propagate in O(K) per period and
    draw instead of O(K²), without ever materialising the matrices.

    Parameters
    ----------
    logits : numpy.ndarray
        (..., T, K) g: the log-odds shift of entering each state in each period (row 0 unused).
    stickiness : numpy.ndarray
        (..., K) ρ: the extra log-odds of staying in each state.
    """

    logits: np.ndarray
    stickiness: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the equivalent dense array (..., T, K, K)."""
        batch = np.broadcast_shapes(self.logits.shape[:-2], self.stickiness.shape[:-1])
        n_periods, k = self.logits.shape[-2:]
        return (*batch, n_periods, k, k)

    def log_normaliser(self) -> np.ndarray:
        """(..., T, K) ``log Z_i = log(sum_{j≠i} exp(g_j) + exp(g_i + ρ_i))``, computed without overflow."""
        return np.moveaxis(self._log_normaliser_time_major(), 0, -2)

    def _log_normaliser_time_major(self) -> np.ndarray:
        g = np.moveaxis(self.logits, -2, 0)  # (T, ..., K): stickiness broadcasts without a stride mismatch
        own = g + self.stickiness
        g_max = _last_max(g)[..., None]
        row_max = np.maximum(g_max, own)
        e = np.exp(g - g_max)
        others = np.maximum(_last_sum(e)[..., None] - e, 0.0)
        with np.errstate(divide="ignore"):
            return row_max + np.log(others * np.exp(g_max - row_max) + np.exp(own - row_max))

    def dense(self) -> np.ndarray:
        """The (..., T, K, K) log transition matrices."""
        log_z = self.log_normaliser()
        out = self.logits[..., None, :] - log_z[..., :, None]
        diag = np.arange(self.logits.shape[-1])
        out[..., diag, diag] += self.stickiness[..., None, :]
        return out


class _DenseOps:
    """Per-period propagation with dense (..., T, K, K) log transition matrices."""

    def __init__(self, log_trans: np.ndarray):
        self.log_trans = log_trans
        self.shape = log_trans.shape

    def forward(self, t: int, p: np.ndarray) -> np.ndarray:
        return np.einsum("...i,...ij->...j", p, np.exp(self.log_trans[..., t, :, :]))

    def backward(self, t: int, v: np.ndarray) -> np.ndarray:
        return np.einsum("...ij,...j->...i", np.exp(self.log_trans[..., t, :, :]), v)

    def log_matrix(self, t: int) -> np.ndarray:
        return self.log_trans[..., t, :, :]


class _StickyOps:
    """Per-period propagation with :class:`StickyTransitions` in O(K).

    With ``a_j = exp(g_j − c)``, ``w_i = exp(c − log Z_i)`` and ``d_i = exp(g_i + ρ_i − log Z_i)``, the matrix
    is ``A_ij = w_i a_j`` off the diagonal and ``d_i`` on it, so ``(p A)_j = a_j sum_{i≠j} p_i w_i + p_j d_j``
    and ``(A v)_i = w_i sum_{j≠i} a_j v_j + d_i v_i``.
    """

    def __init__(self, trans: StickyTransitions):
        self.trans = trans
        self.shape = trans.shape
        self._log_z: np.ndarray | None = None
        g = np.moveaxis(trans.logits, -2, 0)  # (T, ..., K), time-major memory when emissions made it
        rho = np.asarray(trans.stickiness, dtype=float)
        if g.size and max(-g.min(), g.max()) < 300.0 and rho.max(initial=0.0) < 300.0:
            # c = 0 and Z_i = sum_{j≠i} a_j + a_i exp(ρ_i): one exp over the big array, no logs
            self.a = np.exp(g)
            self.w = np.multiply(self.a, np.expm1(rho))
            self.w += _last_sum(self.a)[..., None]
            np.reciprocal(self.w, out=self.w)
            self.d = self.a * np.exp(rho)
            self.d *= self.w
        else:  # extreme logits: shift by the largest logit of each row and work through log Z
            log_z = trans._log_normaliser_time_major()
            c = _last_max(g)[..., None]
            self.a = np.exp(g - c)
            self.w = np.exp(c - log_z)
            self.d = np.exp(g + rho - log_z)
            self._log_z = log_z

    @property
    def log_z(self) -> np.ndarray:
        if self._log_z is None:
            self._log_z = self.trans._log_normaliser_time_major()
        return self._log_z

    def forward(self, t: int, p: np.ndarray) -> np.ndarray:
        q = p * self.w[t]
        excl = np.maximum(_last_sum(q)[..., None] - q, 0.0)
        return self.a[t] * excl + p * self.d[t]

    def backward(self, t: int, v: np.ndarray) -> np.ndarray:
        r = self.a[t] * v
        excl = np.maximum(_last_sum(r)[..., None] - r, 0.0)
        return self.w[t] * excl + self.d[t] * v

    def log_matrix(self, t: int) -> np.ndarray:
        g = self.trans.logits[..., t, :]
        out = g[..., None, :] - self.log_z[t][..., :, None]
        diag = np.arange(g.shape[-1])
        out[..., diag, diag] += self.trans.stickiness
        return out


def _ops(log_trans: np.ndarray | StickyTransitions) -> _DenseOps | _StickyOps:
    if isinstance(log_trans, StickyTransitions):
        return _StickyOps(log_trans)
    return _DenseOps(np.asarray(log_trans, dtype=float))


def _forward_linear(
    log_init: np.ndarray, ops: _DenseOps | _StickyOps, log_obs: np.ndarray, evidence: _Evidence
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled forward recursion in linear space.

    Returns filtered probabilities (T, ..., K) time-major, log-likelihood increments (T, ...) and a mask
    (T, ...) of periods whose evidence was impossible and therefore ignored.
    """
    n_periods, k = log_obs.shape[-2:]
    batch = np.broadcast_shapes(log_init.shape[:-1], ops.shape[:-3], log_obs.shape[:-2])
    filtered = np.empty((n_periods, *batch, k))  # time-major: each period's slice is contiguous
    scale = np.empty((n_periods, *batch))  # linear-space normaliser of each period
    shifts = np.zeros((n_periods, *batch))  # log shifts of the predicted distribution (t = 0, rescued steps)
    ignored = np.zeros((n_periods, *batch), dtype=bool)
    for t in range(n_periods):
        if t == 0:
            pred, shift = _exp_obs(log_init)
            shifts[0] = shift
        else:
            # log_trans holds log-probabilities: exp needs no shift; underflow is caught below
            pred = ops.forward(t, filtered[t - 1])
        u = pred * evidence.exp[t]
        total = _last_sum(u)
        if not total.min() > _TINY:
            u, total, shifts[t], ignored[t] = _rescue(t, total, u, shifts[t], evidence.shift[t], filtered,
                                                      log_init, ops, log_obs, batch)
        np.divide(u, total[..., None], out=filtered[t])
        scale[t] = total
    with np.errstate(divide="ignore"):
        loglik_inc = np.log(scale, out=scale)
    loglik_inc += shifts
    loglik_inc += np.broadcast_to(evidence.shift, loglik_inc.shape)
    loglik_inc[ignored] = -np.inf
    return filtered, loglik_inc, ignored


def _rescue(t, total, u, shift, obs_shift, filtered, log_init, ops, log_obs, batch):
    """Exact log-space step for the batch entries whose linear-space total underflowed.

    Evidence impossible under every reachable state is ignored (filtered = predicted) and flagged.
    """
    k = log_obs.shape[-1]
    u = np.broadcast_to(u, (*batch, k)).copy()
    total = np.broadcast_to(total, batch).copy()
    shift = np.broadcast_to(shift, batch).copy()
    obs_shift = np.broadcast_to(obs_shift, batch)
    bad = ~(total > _TINY)
    with np.errstate(divide="ignore"):
        if t == 0:
            log_pred = np.broadcast_to(log_init, (*batch, k))[bad]
        else:
            log_prev = np.log(filtered[t - 1][bad])
            log_pred = _propagate(log_prev, np.broadcast_to(ops.log_matrix(t), (*batch, k, k))[bad])
    obs_t = np.broadcast_to(log_obs[..., t, :], (*batch, k))[bad]
    log_post, log_inc = _normalise(log_pred + obs_t)
    impossible = ~np.isfinite(log_inc)
    log_pred_norm, _ = _normalise(log_pred)
    log_post = np.where(impossible[..., None], log_pred_norm, log_post)
    u[bad] = np.exp(log_post)
    total[bad] = 1.0
    shift[bad] = np.where(impossible, 0.0, log_inc) - obs_shift[bad]
    ignored = np.zeros(batch, dtype=bool)
    ignored[bad] = impossible
    return u, total, shift, ignored


def _backward_linear(
    filtered: np.ndarray, ops: _DenseOps | _StickyOps, evidence: _Evidence, ignored: np.ndarray
) -> np.ndarray:
    """Scaled backward recursion; returns smoothed probabilities (T, ..., K), time-major."""
    n_periods = filtered.shape[0]
    smoothed = np.empty_like(filtered)  # holds the scaled backward messages, then the smoothed probabilities
    smoothed[-1] = 1.0
    any_ignored = ignored.any()
    for t in range(n_periods - 1, 0, -1):
        obs = evidence.exp[t]
        if any_ignored:
            obs = np.where(ignored[t][..., None], 1.0, obs)
        beta = ops.backward(t, obs * smoothed[t])
        norm = _last_sum(beta)[..., None]
        if not norm.min() > _TINY:  # degenerate inputs: forget the evidence after t for those entries
            ok = norm > _TINY
            beta = np.where(ok, beta, 1.0)
            norm = np.where(ok, norm, beta.shape[-1])
        np.divide(beta, norm, out=smoothed[t - 1])
    smoothed *= filtered
    total = _last_sum(smoothed)[..., None]
    if not total.min() > _TINY:
        ok = np.broadcast_to(total > _TINY, smoothed.shape)
        smoothed[~ok] = filtered[~ok]
        total = np.where(total > _TINY, total, 1.0)
    smoothed /= total
    return smoothed


def forward(
    log_init: np.ndarray, log_trans: np.ndarray, log_obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forward filter: the state distribution of each period given the evidence up to that period.

    Parameters
    ----------
    log_init : numpy.ndarray
        (..., K) log initial state distribution.
    log_trans : numpy.ndarray or StickyTransitions
        (..., T, K, K) log transition matrices; row t is the transition into period t (t = 0 unused). A
        :class:`StickyTransitions` stands for its dense form and is much faster.
    log_obs : numpy.ndarray
        (..., T, K) log evidence per period and state.

    Returns
    -------
    log_filtered : numpy.ndarray
        (..., T, K) ``log P(s_t = k | y_1..t)``, normalised per period.
    loglik_inc : numpy.ndarray
        (..., T) ``log p(y_t | y_1..t-1)``; its sum over t is the log-likelihood.

    Examples
    --------
    >>> import numpy as np
    >>> log_init = np.log(np.full(2, 0.5))
    >>> log_trans = np.log(np.tile(np.array([[0.9, 0.1], [0.2, 0.8]]), (3, 1, 1)))
    >>> log_obs = np.log(np.array([[0.5, 0.1], [0.5, 0.1], [0.1, 0.5]]))
    >>> lf, inc = forward(log_init, log_trans, log_obs)
    >>> bool(np.allclose(np.exp(lf).sum(-1), 1.0))
    True
    """
    with single_threaded_blas():
        log_init, ops, log_obs = _as_arrays(log_init, log_trans, log_obs)
        filtered, loglik_inc, _ = _forward_linear(log_init, ops, log_obs, _Evidence(log_obs))
    return _time_last(_log(filtered), 2), _time_last(loglik_inc, 1)


def forward_backward(
    log_init: np.ndarray, log_trans: np.ndarray, log_obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filter and smoother in one pass over shared work (what the probability code uses).

    Parameters
    ----------
    log_init, log_trans, log_obs : numpy.ndarray
        As for :func:`forward`.

    Returns
    -------
    log_filtered : numpy.ndarray
        (..., T, K) as from :func:`forward`.
    loglik_inc : numpy.ndarray
        (..., T) as from :func:`forward`.
    log_smoothed : numpy.ndarray
        (..., T, K) as from :func:`smooth`.
    """
    with single_threaded_blas():
        log_init, ops, log_obs = _as_arrays(log_init, log_trans, log_obs)
        evidence = _Evidence(log_obs)
        filtered, loglik_inc, ignored = _forward_linear(log_init, ops, log_obs, evidence)
        smoothed = _backward_linear(filtered, ops, evidence, ignored)
    return _time_last(_log(filtered), 2), _time_last(loglik_inc, 1), _time_last(_log(smoothed), 2)


def smooth(log_init: np.ndarray, log_trans: np.ndarray, log_obs: np.ndarray) -> np.ndarray:
    """Forward–backward smoother: the state distribution of each period given all the evidence.

    Parameters
    ----------
    log_init : numpy.ndarray
        (..., K) log initial state distribution.
    log_trans : numpy.ndarray or StickyTransitions
        (..., T, K, K) log transition matrices (row t = transition into period t).
    log_obs : numpy.ndarray
        (..., T, K) log evidence.

    Returns
    -------
    numpy.ndarray
        (..., T, K) ``log P(s_t = k | y_1..T)``, normalised per period.

    See Also
    --------
    forward_backward : filtered and smoothed distributions and increments from one call.
    """
    return forward_backward(log_init, log_trans, log_obs)[2]


def predict(log_filtered_last: np.ndarray, log_trans_future: np.ndarray) -> np.ndarray:
    """State distributions 1..H periods ahead of the last filtered period.

    Parameters
    ----------
    log_filtered_last : numpy.ndarray
        (..., K) log filtered distribution of the last observed period.
    log_trans_future : numpy.ndarray or StickyTransitions
        (..., H, K, K) log transition matrices into the future periods: index h is the transition into period
        ``last + h + 1``.

    Returns
    -------
    numpy.ndarray
        (..., H, K) ``log P(s_{last+h+1} = k | y_1..last)``.
    """
    log_p = np.asarray(log_filtered_last, dtype=float)
    ops = _ops(log_trans_future)
    if ops.shape[-1] != log_p.shape[-1] or ops.shape[-2] != log_p.shape[-1]:
        raise ValueError(f"log_trans_future {ops.shape} does not match {log_p.shape[-1]} states")
    horizon = ops.shape[-3]
    batch = np.broadcast_shapes(log_p.shape[:-1], ops.shape[:-3])
    out = np.empty((*batch, horizon, log_p.shape[-1]))
    for h in range(horizon):
        log_p = _propagate(log_p, ops.log_matrix(h))
        log_p, _ = _normalise(log_p)  # exact already; removes rounding drift over long horizons
        out[..., h, :] = log_p
    return out


def forward_step(
    log_filtered_prev: np.ndarray, log_trans: np.ndarray, log_obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One step of the forward filter: add one new period to a filtered history.

    Parameters
    ----------
    log_filtered_prev : numpy.ndarray
        (..., K) log filtered distribution of the previous period.
    log_trans : numpy.ndarray
        (..., K, K) log transition matrix into the new period.
    log_obs : numpy.ndarray
        (..., K) log evidence of the new period.

    Returns
    -------
    log_filtered : numpy.ndarray
        (..., K) log filtered distribution of the new period.
    loglik_inc : numpy.ndarray
        (...) ``log p(y_new | y_1..prev)``.
    """
    log_pred = _propagate(np.asarray(log_filtered_prev, dtype=float), np.asarray(log_trans, dtype=float))
    return _condition(log_pred, np.asarray(log_obs, dtype=float))


def _check_shapes(log_init: np.ndarray, trans_shape: tuple[int, ...], log_obs: np.ndarray) -> None:
    if log_obs.ndim < 2 or len(trans_shape) < 3 or log_init.ndim < 1:
        raise ValueError("expected log_init (..., K), log_trans (..., T, K, K) and log_obs (..., T, K)")
    n_periods, k = log_obs.shape[-2:]
    if log_init.shape[-1] != k or tuple(trans_shape[-3:]) != (n_periods, k, k):
        raise ValueError(
            f"inconsistent shapes: log_init {log_init.shape}, log_trans {trans_shape}, log_obs {log_obs.shape}"
        )


def _as_arrays(log_init, log_trans, log_obs):
    log_init = np.asarray(log_init, dtype=float)
    log_obs = np.asarray(log_obs, dtype=float)
    ops = _ops(log_trans)
    _check_shapes(log_init, ops.shape, log_obs)
    return log_init, ops, log_obs


def _log(p: np.ndarray) -> np.ndarray:
    """Natural log in place (the probabilities are not needed afterwards)."""
    with np.errstate(divide="ignore"):
        return np.log(p, out=p)


def _time_last(a: np.ndarray, n_trailing: int) -> np.ndarray:
    """View a time-major array (T, ..., trailing) as (..., T, trailing)."""
    return np.moveaxis(a, 0, a.ndim - n_trailing)
