"""forecast.hmm against brute-force enumeration of every state path on tiny chains."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from forecast import hmm

K = 4
TOL = 1e-10


def random_chain(rng: np.random.Generator, n_periods: int, batch: tuple[int, ...] = ()):
    """Random normalised initial/transition distributions and arbitrary log evidence."""
    log_init = np.log(rng.dirichlet(np.ones(K), size=batch))
    log_trans = np.log(rng.dirichlet(np.ones(K), size=(*batch, n_periods, K)))
    log_obs = rng.normal(scale=2.0, size=(*batch, n_periods, K))
    return log_init, log_trans, log_obs


def path_log_joint(log_init, log_trans, log_obs, upto: int) -> tuple[np.ndarray, np.ndarray]:
    """All state paths of length ``upto + 1`` and log p(s_0..s_upto, y_0..y_upto) for each (no batch dims)."""
    paths = np.array(list(itertools.product(range(K), repeat=upto + 1)))
    lj = log_init[paths[:, 0]] + log_obs[0, paths[:, 0]]
    for t in range(1, upto + 1):
        lj = lj + log_trans[t, paths[:, t - 1], paths[:, t]] + log_obs[t, paths[:, t]]
    return paths, lj


def brute_force(log_init, log_trans, log_obs):
    """Filtered, smoothed (log) and log-likelihood increments by enumerating every path."""
    n_periods = log_obs.shape[0]
    filtered = np.empty((n_periods, K))
    log_evidence = np.empty(n_periods)
    for t in range(n_periods):
        paths, lj = path_log_joint(log_init, log_trans, log_obs, t)
        log_evidence[t] = logsumexp(lj)
        for k in range(K):
            filtered[t, k] = logsumexp(lj[paths[:, t] == k]) - log_evidence[t]
    paths, lj = path_log_joint(log_init, log_trans, log_obs, n_periods - 1)
    smoothed = np.array(
        [[logsumexp(lj[paths[:, t] == k]) - log_evidence[-1] for k in range(K)] for t in range(n_periods)]
    )
    increments = np.diff(np.concatenate([[0.0], log_evidence]))
    return filtered, smoothed, increments


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("n_periods", [1, 2, 5, 6])
def test_forward_and_smooth_match_enumeration(seed, n_periods):
    rng = np.random.default_rng(seed)
    log_init, log_trans, log_obs = random_chain(rng, n_periods, batch=(3,))
    log_filtered, inc = hmm.forward(log_init, log_trans, log_obs)
    log_smoothed = hmm.smooth(log_init, log_trans, log_obs)
    for b in range(3):
        f, s, i = brute_force(log_init[b], log_trans[b], log_obs[b])
        np.testing.assert_allclose(log_filtered[b], f, atol=TOL, rtol=0)
        np.testing.assert_allclose(log_smoothed[b], s, atol=TOL, rtol=0)
        np.testing.assert_allclose(inc[b], i, atol=TOL, rtol=0)
        np.testing.assert_allclose(inc[b].sum(), logsumexp(path_log_joint(
            log_init[b], log_trans[b], log_obs[b], n_periods - 1)[1]), atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_predict_matches_enumeration(seed):
    """Predictions are the marginals of an extended chain whose future periods carry no evidence."""
    rng = np.random.default_rng(seed)
    n_obs, horizon = 3, 3
    log_init, log_trans, log_obs = random_chain(rng, n_obs + horizon, batch=(2,))
    log_obs[:, n_obs:] = 0.0
    log_filtered, _ = hmm.forward(log_init[:, :], log_trans[:, :n_obs], log_obs[:, :n_obs])
    log_pred = hmm.predict(log_filtered[:, -1], log_trans[:, n_obs:])
    assert log_pred.shape == (2, horizon, K)
    for b in range(2):
        _, smoothed, _ = brute_force(log_init[b], log_trans[b], log_obs[b])
        np.testing.assert_allclose(log_pred[b], smoothed[n_obs:], atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_minus_infinity_entries(seed):
    """Hard labels and impossible transitions give exact answers and never NaN."""
    rng = np.random.default_rng(seed)
    n_periods = 6
    log_init, log_trans, log_obs = random_chain(rng, n_periods)
    log_trans[:, 0, 3] = -np.inf  # state 0 can never move to state 3
    log_trans[:, 0, :] -= logsumexp(log_trans[:, 0, :], axis=-1, keepdims=True)
    log_obs[2, [0, 1, 3]] = -np.inf  # hard label: period 2 is state 2
    log_obs[4, 1] = -np.inf
    log_init[0] = -np.inf
    log_filtered, inc = hmm.forward(log_init, log_trans, log_obs)
    log_smoothed = hmm.smooth(log_init, log_trans, log_obs)
    for arr in (log_filtered, inc, log_smoothed):
        assert not np.isnan(arr).any()
    f, s, i = brute_force(log_init, log_trans, log_obs)
    np.testing.assert_allclose(np.exp(log_filtered), np.exp(f), atol=TOL, rtol=0)
    np.testing.assert_allclose(np.exp(log_smoothed), np.exp(s), atol=TOL, rtol=0)
    np.testing.assert_allclose(inc, i, atol=TOL, rtol=0)
    assert np.all(np.exp(log_smoothed[2]) == np.array([0.0, 0.0, 1.0, 0.0]))


def test_impossible_evidence_gives_minus_infinity_not_nan():
    rng = np.random.default_rng(5)
    log_init, log_trans, log_obs = random_chain(rng, 4)
    log_obs[1] = -np.inf
    log_filtered, inc = hmm.forward(log_init, log_trans, log_obs)
    assert inc[1] == -np.inf
    assert np.isfinite(inc[[0, 2, 3]]).all()
    assert not np.isnan(log_filtered).any()
    assert not np.isnan(hmm.smooth(log_init, log_trans, log_obs)).any()


def test_forward_step_continues_forward():
    rng = np.random.default_rng(7)
    log_init, log_trans, log_obs = random_chain(rng, 5, batch=(4, 2))
    lf, inc = hmm.forward(log_init, log_trans, log_obs)
    lf4, _ = hmm.forward(log_init, log_trans[..., :4, :, :], log_obs[..., :4, :])
    step_f, step_inc = hmm.forward_step(lf4[..., -1, :], log_trans[..., 4, :, :], log_obs[..., 4, :])
    np.testing.assert_allclose(step_f, lf[..., 4, :], atol=TOL, rtol=0)
    np.testing.assert_allclose(step_inc, inc[..., 4], atol=TOL, rtol=0)


def test_batch_dimensions_broadcast():
    """Shared transitions (no batch axis) broadcast against per-draw evidence."""
    rng = np.random.default_rng(8)
    log_init, log_trans, _ = random_chain(rng, 5)
    log_obs = rng.normal(size=(3, 5, K))
    lf, inc = hmm.forward(log_init, log_trans, log_obs)
    assert lf.shape == (3, 5, K) and inc.shape == (3, 5)
    for b in range(3):
        lf_b, inc_b = hmm.forward(log_init, log_trans, log_obs[b])
        np.testing.assert_allclose(lf[b], lf_b, atol=TOL, rtol=0)
        np.testing.assert_allclose(inc[b], inc_b, atol=TOL, rtol=0)
    assert hmm.smooth(log_init, log_trans, log_obs).shape == (3, 5, K)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="inconsistent shapes"):
        hmm.forward(np.zeros(K), np.zeros((5, K, K)), np.zeros((4, K)))


def test_underflowing_transitions_are_redone_exactly():
    """Unnormalised, tiny transition rows underflow in linear space; the log-space rescue keeps them exact."""
    rng = np.random.default_rng(30)
    log_init, log_trans, log_obs = random_chain(rng, 5)
    log_obs[2, 1:] = -np.inf  # hard label: state 0 in period 2
    log_trans[3, 0, :] = -700.0  # leaving state 0 in period 3 has probability ~1e-304 per target
    log_filtered, inc = hmm.forward(log_init, log_trans, log_obs)
    f, _s, i = brute_force(log_init, log_trans, log_obs)
    np.testing.assert_allclose(log_filtered, f, atol=1e-9, rtol=0)
    np.testing.assert_allclose(inc, i, atol=1e-9, rtol=0)


def test_evidence_unreachable_by_transitions_is_ignored():
    rng = np.random.default_rng(31)
    log_init, log_trans, log_obs = random_chain(rng, 5, batch=(2,))
    log_trans[0, 3, :, 2] = -np.inf  # draw 0: state 2 cannot be entered in period 3 ...
    log_obs[0, 3, [0, 1, 3]] = -np.inf  # ... but the evidence says state 2
    log_filtered, inc, log_smoothed = hmm.forward_backward(log_init, log_trans, log_obs)
    assert inc[0, 3] == -np.inf
    assert not np.isnan(log_filtered).any() and not np.isnan(log_smoothed).any()
    np.testing.assert_allclose(np.exp(log_filtered).sum(-1), 1.0, atol=1e-12)
    _f, s, i = brute_force(log_init[1], log_trans[1], log_obs[1])  # the other draw is unaffected
    np.testing.assert_allclose(log_smoothed[1], s, atol=TOL, rtol=0)
    np.testing.assert_allclose(inc[1], i, atol=TOL, rtol=0)


def test_time_major_memory_layout_gives_same_result():
    rng = np.random.default_rng(32)
    log_init, log_trans, log_obs = random_chain(rng, 6, batch=(5,))
    tm_trans = np.moveaxis(np.ascontiguousarray(np.moveaxis(log_trans, 1, 0)), 0, 1)
    tm_obs = np.moveaxis(np.ascontiguousarray(np.moveaxis(log_obs, 1, 0)), 0, 1)
    for a, b in zip(hmm.forward_backward(log_init, log_trans, log_obs),
                    hmm.forward_backward(log_init, tm_trans, tm_obs), strict=True):
        np.testing.assert_array_equal(a, b)


def sticky_chain(rng, n_periods, batch=(3,)):
    logits = rng.normal(scale=1.5, size=(*batch, n_periods, K))
    stickiness = rng.normal(1.0, 2.0, size=(*batch, K))  # some negative: states that tend to be left
    return hmm.StickyTransitions(logits=logits, stickiness=stickiness)


@pytest.mark.parametrize("seed", [40, 41, 42])
def test_sticky_transitions_match_dense_and_enumeration(seed):
    rng = np.random.default_rng(seed)
    n_periods = 5
    trans = sticky_chain(rng, n_periods)
    dense = trans.dense()
    # dense form: log_softmax of the logits with stickiness on the diagonal
    logits = trans.logits[..., None, :] + np.eye(K) * trans.stickiness[:, None, None, :]
    np.testing.assert_allclose(dense, logits - logsumexp(logits, axis=-1, keepdims=True), atol=1e-12)
    log_init = np.log(rng.dirichlet(np.ones(K), size=3))
    log_obs = rng.normal(scale=2.0, size=(3, n_periods, K))
    lf, inc, ls = hmm.forward_backward(log_init, trans, log_obs)
    for b in range(3):
        f, s, i = brute_force(log_init[b], dense[b], log_obs[b])
        np.testing.assert_allclose(lf[b], f, atol=TOL, rtol=0)
        np.testing.assert_allclose(ls[b], s, atol=TOL, rtol=0)
        np.testing.assert_allclose(inc[b], i, atol=TOL, rtol=0)
    np.testing.assert_allclose(hmm.predict(lf[:, -1], trans), hmm.predict(lf[:, -1], dense), atol=TOL, rtol=0)


def test_sticky_transitions_with_hard_labels():
    rng = np.random.default_rng(43)
    trans = sticky_chain(rng, 6, batch=())
    log_init = np.log(rng.dirichlet(np.ones(K)))
    log_obs = rng.normal(size=(6, K))
    log_obs[3, [0, 2, 3]] = -np.inf
    lf, inc, ls = hmm.forward_backward(log_init, trans, log_obs)
    f, s, i = brute_force(log_init, trans.dense(), log_obs)
    np.testing.assert_allclose(np.exp(lf), np.exp(f), atol=TOL, rtol=0)
    np.testing.assert_allclose(np.exp(ls), np.exp(s), atol=TOL, rtol=0)
    np.testing.assert_allclose(inc, i, atol=TOL, rtol=0)


def test_sticky_transitions_broadcast_against_extra_batch_axes():
    """Evidence with an extra leading axis (e.g. with and without labels) shares the draws' transitions."""
    rng = np.random.default_rng(44)
    trans = sticky_chain(rng, 5, batch=(3,))
    log_init = np.log(rng.dirichlet(np.ones(K), size=3))
    log_obs = rng.normal(size=(2, 3, 5, K))
    lf, inc, ls = hmm.forward_backward(log_init, trans, log_obs)
    assert lf.shape == (2, 3, 5, K) and inc.shape == (2, 3, 5)
    for a in range(2):
        lf_a, inc_a, ls_a = hmm.forward_backward(log_init, trans, log_obs[a])
        np.testing.assert_allclose(lf[a], lf_a, atol=TOL, rtol=0)
        np.testing.assert_allclose(inc[a], inc_a, atol=TOL, rtol=0)
        np.testing.assert_allclose(ls[a], ls_a, atol=TOL, rtol=0)
