"""The scenario model in PyMC: a hidden-Markov model with the scenarios summed out by the forward algorithm.

:func:`build_model` turns :class:`~forecast.inputs.ModelInputs` and a :class:`~forecast.priors.PriorSet` into a
:class:`pymc.Model`; it never samples (:mod:`forecast.fitting` does). The equations are in ``docs/model.md``;
the posterior variable names and dims are the fit file's contract (``docs/architecture.md``):
``intercept``, ``loading``, ``nb_alpha``, ``level_sigma``, ``stickiness``, ``driver_effect``, ``init_prob``.

Identification (the four scenarios are a 2×2 of two factors, so every relabelling of the states is a signed swap
of the loadings):

* a loading with a known expected sign is ``d·|β|`` with ``|β| ~ HalfNormal(τ_group)``; an unknown sign gives
  ``β ~ Normal(0, τ_group)``; no loading (catalog sign ``"0"``) is a constant 0, and so is that signal's
  interaction loading; interaction loadings of ordinary signals are free but shrunk;
* each factor's *marker* signal has its own-factor loading ``d·|β|`` and its cross-loadings (other factor and
  interaction) equal to ``|β|`` times a ratio in (−1, 1) (or (0, 1) when the cross sign is known) built from a
  Beta variable, so the marker's own loading always dominates: no relabelling maps the model onto itself.

Speed: the scenario-independent parts of the emission densities are computed once per period, the
scenario-dependent part as matrix products over signals, and the forward recursion runs in linear space with
as a balanced tree of batched 4×4 matrix products (no sequential loop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

from forecast.catalog import NO_LOADING
from forecast.inputs import ModelInputs, ModelOptions
from forecast.priors import PriorSet
from forecast.scenarios import EFFECT_MATRIX, EFFECTS, FACTOR_MATRIX, FACTORS, N_SCENARIOS, SCENARIOS

logger = logging.getLogger(__name__)

__all__ = [
    "CENTRED_MIN_EVENTS",
    "LABEL_EVIDENCE_FLOOR",
    "HalfNormalProbit",
    "LoadingLayout",
    "build_model",
    "centred_intercepts",
    "loading_layout",
]

#: Label evidence below this (a hard label's log 0) is clipped, so that densities stay finite in gradients;
#: ``exp(-1e4)`` is exactly 0 in float64, so the likelihood is unchanged.
LABEL_EVIDENCE_FLOOR = -1.0e4
_LOG_2PI = float(np.log(2.0 * np.pi))
_LOG_2 = float(np.log(2.0))
_SQRT2 = float(np.sqrt(2.0))
#: Count signals with at least this many events in the panel have their intercepts sampled centred (the data pin
#: them: a log rate from n events has a standard error of about 1/√n, at most 0.32 here, well below σ_a ≈ 1).
CENTRED_MIN_EVENTS = 10


class HalfNormalProbit(Transform):
    """Sampling coordinate ``y = Φ⁻¹(F(x))`` of a positive ``x``, with F the CDF of HalfNormal(1).

    ``x = Q(Φ(y))`` (Q the HalfNormal(1) quantile) maps a standard normal ``y`` to a HalfNormal(1) ``x``: a
    probit-type transform. The loading magnitudes are sampled in it (``loading_magnitude_probit__``).

    * For large ``x`` it is nearly linear (``x ≈ y + 0.69/y``), as softplus⁻¹ is, so a magnitude the data pin away
      from 0 stays a straight ridge with the intercepts.
    * Towards 0 its tail is Gaussian: ``x`` is about 10⁻⁵ at ``y ≈ −4.3``, where softplus⁻¹ and log put it at
      −11.5. A magnitude the data cannot tell from 0 therefore no longer draws the sampler into a long
      exponential tail (on the quarterly panel the slowest parameter's tail reached −10.8 in softplus
      coordinates).

    The posterior is unchanged: only the sampler's coordinate differs.
    """

    name = "probit"
    ndim_supp = 0

    def backward(self, value, *inputs):
        """The magnitude ``x = Q(Φ(y))`` of the sampling coordinate ``value``."""
        # y ≤ 0: √2·erfinv(Φ(y)); y > 0: √2·erfcinv(Φ(−y)); each is accurate in its own tail, and each branch is
        # evaluated on its own half-line only, so neither has an infinite gradient where the other is used
        neg, pos = pt.minimum(value, 0.0), pt.maximum(value, 0.0)
        low = _SQRT2 * pt.erfinv(0.5 * pt.erfc(-neg / _SQRT2))
        high = _SQRT2 * pt.erfcinv(0.5 * pt.erfc(pos / _SQRT2))
        return pt.switch(value > 0.0, high, low)

    def forward(self, value, *inputs):
        """The sampling coordinate ``y = Φ⁻¹(F(x))`` of the magnitude ``value``."""
        # Φ⁻¹(erf(x/√2)) = −√2·erfcinv(2·erf(x/√2)) for small x; √2·erfcinv(2·erfc(x/√2)) for large x
        small, large = pt.minimum(value, 1.0), pt.maximum(value, 1.0)
        low = -_SQRT2 * pt.erfcinv(2.0 * pt.erf(small / _SQRT2))
        high = _SQRT2 * pt.erfcinv(2.0 * pt.erfc(large / _SQRT2))
        return pt.switch(value > 1.0, high, low)

    def log_jac_det(self, value, *inputs):
        """``log dx/dy`` at the sampling coordinate ``value``."""
        # dx/dy = φ(y) / (2φ(x))
        x = self.backward(value)
        return 0.5 * (x * x - value * value) - _LOG_2


@dataclass(frozen=True)
class LoadingLayout:
    """Where each entry of the (signal, effect) loading matrix comes from.

    Attributes
    ----------
    mag_signal, mag_effect, mag_sign : numpy.ndarray
        Entries ``d·|β|``: loadings with a known sign and markers' own-factor loadings.
    free_signal, free_effect : numpy.ndarray
        Entries ``β ~ Normal(0, τ_group)``: factor loadings of unknown sign (non-markers).
    inter_signal : numpy.ndarray
        Signals whose interaction loading is free but shrunk (non-markers).
    cross_signal, cross_effect, cross_owner, cross_scale, cross_shift : numpy.ndarray
        Markers' cross-loadings ``|β_owner| · (scale·r + shift)`` with ``r ~ Beta`` and ``cross_owner`` the
        position in the magnitude vector of the marker's own loading; (scale, shift) = (d, 0) for a known cross
        sign d, (2, −1) for an unknown one.
    mag_labels, free_labels, inter_labels, cross_labels : tuple of str
        ``"signal:effect"`` coordinate labels of the auxiliary variables.
    """

    mag_signal: np.ndarray
    mag_effect: np.ndarray
    mag_sign: np.ndarray
    free_signal: np.ndarray
    free_effect: np.ndarray
    inter_signal: np.ndarray
    cross_signal: np.ndarray
    cross_effect: np.ndarray
    cross_owner: np.ndarray
    cross_scale: np.ndarray
    cross_shift: np.ndarray
    mag_labels: tuple[str, ...]
    free_labels: tuple[str, ...]
    inter_labels: tuple[str, ...]
    cross_labels: tuple[str, ...]

    def assemble(self, n_signals: int, magnitude, free, interaction, ratio, xp=np):
        """Assemble the (signal, effect) loading matrix from the auxiliary values (NumPy or PyTensor)."""
        if xp is np:
            out = np.zeros((n_signals, len(EFFECTS)))
            out[self.mag_signal, self.mag_effect] = self.mag_sign * magnitude
            out[self.free_signal, self.free_effect] = free
            out[self.inter_signal, 2] = interaction
            out[self.cross_signal, self.cross_effect] = (
                magnitude[self.cross_owner] * (self.cross_scale * ratio + self.cross_shift)
            )
            return out
        out = pt.zeros((n_signals, len(EFFECTS)))
        if self.mag_signal.size:
            out = pt.set_subtensor(out[self.mag_signal, self.mag_effect], self.mag_sign * magnitude)
        if self.free_signal.size:
            out = pt.set_subtensor(out[self.free_signal, self.free_effect], free)
        if self.inter_signal.size:
            out = pt.set_subtensor(out[self.inter_signal, 2], interaction)
        if self.cross_signal.size:
            out = pt.set_subtensor(
                out[self.cross_signal, self.cross_effect],
                magnitude[self.cross_owner] * (self.cross_scale * ratio + self.cross_shift),
            )
        return out


def loading_layout(inputs: ModelInputs) -> LoadingLayout:
    """Work out how each loading is parameterised from the catalog's signs and markers.

    Parameters
    ----------
    inputs : ModelInputs
        Model inputs (``direction`` and ``marker`` per signal).

    Returns
    -------
    LoadingLayout
        Index arrays for :meth:`LoadingLayout.assemble`.
    """
    mag: list[tuple[int, int, float]] = []
    free: list[tuple[int, int]] = []
    inter: list[int] = []
    cross: list[tuple[int, int, str, float, float]] = []  # signal, effect, owner key, scale, shift
    owner_pos: dict[str, int] = {}
    levels = set(np.asarray(inputs.level_index).tolist())
    for s, name in enumerate(inputs.signals):
        marker = inputs.marker[s]
        # level signals load additively on the two factors (no u·r term), and a signal that one factor does not
        # move (catalog sign "0") cannot be moved by that factor's interaction either
        absent = [int(inputs.direction[s, f]) == NO_LOADING for f in range(len(FACTORS))]
        interacts = s not in levels and not any(absent)
        own = FACTORS.index(marker) if marker in FACTORS else None
        for f in range(len(FACTORS)):
            d = int(inputs.direction[s, f])
            if absent[f]:
                continue  # fixed at 0: no variable
            if own is not None and f == own:
                owner_pos[name] = len(mag)
                mag.append((s, f, float(d) if d != 0 else 1.0))
            elif own is not None:
                cross.append((s, f, name, float(d), 0.0) if d != 0 else (s, f, name, 2.0, -1.0))
            elif d != 0:
                mag.append((s, f, float(d)))
            else:
                free.append((s, f))
        if not interacts:
            continue
        if own is not None:
            cross.append((s, 2, name, 2.0, -1.0))
        else:
            inter.append(s)
    sig = inputs.signals
    eff = EFFECTS
    return LoadingLayout(
        mag_signal=np.array([m[0] for m in mag], dtype=int),
        mag_effect=np.array([m[1] for m in mag], dtype=int),
        mag_sign=np.array([m[2] for m in mag], dtype=float),
        free_signal=np.array([f[0] for f in free], dtype=int),
        free_effect=np.array([f[1] for f in free], dtype=int),
        inter_signal=np.array(inter, dtype=int),
        cross_signal=np.array([c[0] for c in cross], dtype=int),
        cross_effect=np.array([c[1] for c in cross], dtype=int),
        cross_owner=np.array([owner_pos[c[2]] for c in cross], dtype=int),
        cross_scale=np.array([c[3] for c in cross], dtype=float),
        cross_shift=np.array([c[4] for c in cross], dtype=float),
        mag_labels=tuple(f"{sig[m[0]]}:{eff[m[1]]}" for m in mag),
        free_labels=tuple(f"{sig[f[0]]}:{eff[f[1]]}" for f in free),
        inter_labels=tuple(f"{sig[s]}:interaction" for s in inter),
        cross_labels=tuple(f"{sig[c[0]]}:{eff[c[1]]}" for c in cross),
    )


def model_coords(inputs: ModelInputs) -> dict[str, list]:
    """Coordinates of every named dimension of the model."""
    layout = loading_layout(inputs)
    centred = centred_intercepts(inputs)
    return {
        "scenario": list(SCENARIOS),
        "signal": list(inputs.signals),
        "count_signal": list(inputs.count_signals),
        "level_signal": list(inputs.level_signals),
        "effect": list(EFFECTS),
        "driver": list(inputs.drivers),
        "factor": list(FACTORS),
        "period": list(inputs.periods),
        "group": list(inputs.groups),
        "loading_magnitude_entry": list(layout.mag_labels),
        "loading_free_entry": list(layout.free_labels),
        "loading_interaction_entry": list(layout.inter_labels),
        "marker_ratio_entry": list(layout.cross_labels),
        "centred_count_signal": [s for s, c in zip(inputs.count_signals, centred, strict=True) if c],
        "noncentred_count_signal": [s for s, c in zip(inputs.count_signals, centred, strict=True) if not c],
    }


def centred_intercepts(inputs: ModelInputs) -> np.ndarray:
    """Which count signals' intercepts are sampled centred: those informed by at least :data:`CENTRED_MIN_EVENTS`.

    The choice changes how the sampler sees the posterior, not the posterior itself (``a_k ~ Normal(μ_a, σ_a)``
    either way). An intercept pinned by its events is best sampled as itself (centred): sampled as
    ``μ_a + σ_a z_k`` instead, the data fix ``μ_a + σ_a z_k`` for every k at once and ``μ_a`` and the ``z_k`` form a
    narrow ridge that limits the step size (on the bundled data, whose count signals have 23 to 62 events, it
    was the stiffest direction of the posterior). One informed by almost no events (a signal that barely fires
    in a short panel) is tied more to the hierarchy than to the data, and in the centred form it and σ_a form a
    funnel, so it is sampled non-centred.

    Returns
    -------
    numpy.ndarray
        (C,) bool, True where the intercept is centred.
    """
    events = (inputs.y_count * inputs.count_mask).sum(axis=0)
    return np.asarray(events >= CENTRED_MIN_EVENTS, dtype=bool)


def _variable(priors: PriorSet, family: str, name: str, dims: tuple[str, ...] | str | None):
    prior = priors[family].deepcopy()
    if dims:
        prior.dims = dims
    return prior.create_variable(name)


def build_model(inputs: ModelInputs, priors: PriorSet, options: ModelOptions) -> pm.Model:
    """Build the PyMC model of ``inputs`` under ``priors`` (never samples).

    Parameters
    ----------
    inputs : ModelInputs
        Arrays from :func:`forecast.inputs.build_inputs`.
    priors : PriorSet
        One prior per family (:data:`forecast.priors.FAMILIES`).
    options : ModelOptions
        ``use_labels`` adds the analyst labels as soft evidence.

    Returns
    -------
    pymc.Model
        Free variables: the contract variables ``nb_alpha``, ``level_sigma``, ``stickiness``,
        ``driver_effect``, ``init_prob`` and auxiliaries (``intercept_location``, ``intercept_scale``,
        ``count_intercept_centred`` and/or ``count_intercept_std`` (:func:`centred_intercepts`),
        ``level_intercept``, ``loading_scale``, ``loading_magnitude``, ``loading_free``,
        ``loading_interaction``, ``marker_ratio``); deterministics ``intercept``, ``count_intercept`` and
        ``loading``; potential
        ``loglik`` (the marginal log-likelihood of the signals, plus the label evidence when used).
    """
    layout = loading_layout(inputs)
    coords = model_coords(inputs)
    n_sig, n_cnt, n_lvl = len(inputs.signals), len(inputs.count_signals), len(inputs.level_signals)
    group_of = inputs.signal_group
    with pm.Model(coords=coords) as model:
        # intercepts: count signals pooled, centred where many events pin them and non-centred where few do
        # (centred_intercepts); levels standardised
        parts = pt.zeros(n_sig)
        if n_cnt:
            mu_a = _variable(priors, "intercept_location", "intercept_location", None)
            sd_a = _variable(priors, "intercept_scale", "intercept_scale", None)
            centred = centred_intercepts(inputs)
            a_count = pt.zeros(n_cnt)
            if centred.any():
                a_c = pm.Normal("count_intercept_centred", mu=mu_a, sigma=sd_a, dims="centred_count_signal")
                a_count = pt.set_subtensor(a_count[np.flatnonzero(centred)], a_c)
            if not centred.all():
                z = pm.Normal("count_intercept_std", mu=0.0, sigma=1.0, dims="noncentred_count_signal")
                a_count = pt.set_subtensor(a_count[np.flatnonzero(~centred)], mu_a + sd_a * z)
            a_count = pm.Deterministic("count_intercept", a_count, dims="count_signal")
            parts = pt.set_subtensor(parts[inputs.count_index], a_count)
        if n_lvl:
            a_level = _variable(priors, "level_intercept", "level_intercept", "level_signal")
            parts = pt.set_subtensor(parts[inputs.level_index], a_level)
        intercept = pm.Deterministic("intercept", parts, dims="signal")

        # loadings: signs from the catalog, pooled scales per group, markers dominate their cross-loadings
        tau = _variable(priors, "loading_group_scale", "loading_scale", "group")
        magnitude = free = interaction = ratio = None
        if layout.mag_signal.size:
            # sampled in the HalfNormalProbit coordinate, not log|β|: a magnitude the data pin away from 0 is then
            # nearly linear in it, so the ridge "intercept + loadings fixed by a rare signal's events" is straight
            # rather than curved, and one the data cannot tell from 0 has a Gaussian tail, not a long exponential
            # one (docs/model.md, "Fitting"); the posterior is unchanged
            magnitude = pm.HalfNormal("loading_magnitude", sigma=tau[group_of[layout.mag_signal]],
                                      dims="loading_magnitude_entry", default_transform=HalfNormalProbit())
        if layout.free_signal.size:
            free = pm.Normal("loading_free", mu=0.0, sigma=tau[group_of[layout.free_signal]],
                             dims="loading_free_entry")
        if layout.inter_signal.size:
            interaction = _variable(priors, "interaction_loading", "loading_interaction",
                                    "loading_interaction_entry")
        if layout.cross_signal.size:
            ratio = _variable(priors, "marker_ratio", "marker_ratio", "marker_ratio_entry")
        loading = pm.Deterministic(
            "loading", layout.assemble(n_sig, magnitude, free, interaction, ratio, xp=pt), dims=("signal", "effect")
        )

        nb_alpha = _variable(priors, "nb_alpha", "nb_alpha", "count_signal") if n_cnt else None
        level_sigma = _variable(priors, "level_sigma", "level_sigma", "level_signal") if n_lvl else None
        stickiness = _variable(priors, "stickiness", "stickiness", "scenario")
        driver_effect = _variable(priors, "driver_effect", "driver_effect", ("driver", "factor"))
        init_prob = _variable(priors, "init_prob", "init_prob", "scenario")

        log_obs = emission_logp(inputs, intercept, loading, nb_alpha, level_sigma)
        if options.use_labels:
            log_obs = log_obs + np.maximum(inputs.label_log_evidence(), LABEL_EVIDENCE_FLOOR)
        trans = transition_matrices(inputs.x_std, stickiness, driver_effect)
        pm.Potential("loglik", forward_loglik(init_prob, trans, log_obs))
    logger.debug("built model: %d periods, %d signals, %d drivers, %d free variables", inputs.n_periods, n_sig,
                 len(inputs.drivers), len(model.free_RVs))
    return model


def count_value_table(inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (count signal, value) pairs of full-exposure cells and which periods have each.

    Counts are small integers, so a count signal with full exposure takes a handful of distinct values over all
    periods; its log density under each scenario depends only on the pair (signal, value).

    Returns
    -------
    onehot : numpy.ndarray
        (T, J) 1 where period t has the pair j (full exposure, observed), else 0.
    pair_signal : numpy.ndarray
        (J,) position of the pair's signal among the count signals.
    pair_value : numpy.ndarray
        (J,) the count.
    """
    full = inputs.full_exposure
    columns, signal_of, value_of = [], [], []
    for c in range(len(inputs.count_signals)):
        for v in np.unique(inputs.y_count[full[:, c], c]):
            columns.append(full[:, c] & (inputs.y_count[:, c] == v))
            signal_of.append(c)
            value_of.append(float(v))
    onehot = np.stack(columns, axis=1).astype(float) if columns else np.zeros((inputs.n_periods, 0))
    return onehot, np.asarray(signal_of, dtype=int), np.asarray(value_of, dtype=float)


def _nb_logpmf(y, log_mu, nb_alpha, log_alpha):
    """Negative-binomial log pmf (mean exp(log_mu), dispersion nb_alpha), broadcasting."""
    log_denominator = pt.logaddexp(log_mu, log_alpha)
    return (pt.gammaln(y + nb_alpha) - pt.gammaln(nb_alpha) - _gammaln(np.asarray(y) + 1.0)
            + nb_alpha * (log_alpha - log_denominator) + y * (log_mu - log_denominator))


def emission_logp(inputs: ModelInputs, intercept, loading, nb_alpha, level_sigma):
    """(T, 4) log density of each period's signals under each scenario (masked cells contribute 0).

    Count cells with full exposure are scored by table look-up: the log density of each distinct
    (signal, value) pair under each scenario is computed once (a (J, 4) table, J a few per signal) and spread
    over the periods by one product with a constant (T, J) indicator matrix. The rare cells with partial
    exposure are scored one by one. Level signals: scenario-independent terms once per period, the
    scenario-dependent part as matrix products of period weights (T, k) with (k, 4) tables.
    """
    eta = intercept[:, None] + pt.dot(loading, EFFECT_MATRIX.T)  # (S, K)
    total = pt.zeros((inputs.n_periods, N_SCENARIOS))
    if inputs.count_signals:
        eta_c = eta[inputs.count_index]  # (C, K)
        log_alpha = pt.log(nb_alpha)
        onehot, pair_signal, pair_value = count_value_table(inputs)
        if pair_signal.size:
            table = _nb_logpmf(pair_value[:, None], eta_c[pair_signal], nb_alpha[pair_signal][:, None],
                               log_alpha[pair_signal][:, None])  # (J, K)
            total = total + pt.dot(onehot, table)
        partial = inputs.count_mask & ~inputs.full_exposure
        if partial.any():
            rows, cols = np.nonzero(partial)
            log_mu = inputs.log_exposure[rows, cols][:, None] + eta_c[cols]  # (P, K)
            cell = _nb_logpmf(inputs.y_count[rows, cols][:, None], log_mu, nb_alpha[cols][:, None],
                              log_alpha[cols][:, None])
            spread = np.zeros((inputs.n_periods, rows.size))
            spread[rows, np.arange(rows.size)] = 1.0
            total = total + pt.dot(spread, cell)
    if inputs.level_signals:
        mask = inputs.level_mask.astype(float)
        z = inputs.z_level * mask
        m = eta[inputs.level_index]  # (L, K)
        prec = 1.0 / level_sigma**2
        independent = (
            -pt.dot(mask, pt.log(level_sigma)) - 0.5 * pt.dot(z * z, prec) - 0.5 * _LOG_2PI * mask.sum(axis=1)
        )
        dependent = pt.dot(z, m * prec[:, None]) - 0.5 * pt.dot(mask, m * m * prec[:, None])
        total = total + independent[:, None] + dependent
    return total


def transition_matrices(x_std: np.ndarray, stickiness, driver_effect):
    """(T, 4, 4) transition matrices ``softmax_j(ρ_i [i = j] + x̃_t · (γ_us u_j + γ_rel r_j))`` in closed form.

    With ``e_tj = exp(g_tj − max_j g_tj)`` the row normaliser is ``Z_ti = Σ_j e_tj + e_ti (e^ρ_i − 1)``, so the
    matrices need only (T, 4) exponentials and no (T, 4, 4) log-sum-exp.
    """
    shift = pt.dot(driver_effect, FACTOR_MATRIX.T)  # (D, K)
    if x_std.shape[1]:
        g = pt.dot(np.asarray(x_std, dtype=float), shift)
        e = pt.exp(g - pt.max(g, axis=1, keepdims=True))  # (T, K), largest entry 1 per period
    else:
        e = pt.ones((x_std.shape[0], N_SCENARIOS))
    stay = e * pt.expm1(stickiness)[None, :]  # (T, K): extra weight of staying in state i
    normaliser = pt.sum(e, axis=1, keepdims=True) + stay  # (T, K) = Z_ti
    eye = np.eye(N_SCENARIOS)
    return (e[:, None, :] + stay[:, :, None] * eye[None]) / normaliser[:, :, None]


def forward_loglik(init_prob, trans, log_obs, renormalise_every: int = 2):
    """Total log-likelihood ``log p(y_1..T)`` of the hidden-Markov model, without a sequential loop.

    ``p(y_1..T) = π' D_0 M_1 M_2 ⋯ M_{T−1} 1`` with ``D_t = diag(exp(log_obs_t))`` and ``M_t = A_t D_t``. The
    T − 1 matrices are multiplied as a balanced tree: at each of ⌈log₂ T⌉ levels neighbouring pairs are
    multiplied in one batched matrix product and an odd one out is carried to the next level as it is (padding
    to a power of two instead would cost up to twice the products: 256 slots for a quarterly panel's 143
    matrices); every ``renormalise_every`` levels
    each product is divided by its largest entry, whose log is accumulated (all entries are non-negative, so
    nothing cancels; between renormalisations entries stay far from float64 underflow). The scales are constants
    in the gradient, which is exact because the result does not depend on them. This is the forward algorithm
    reassociated; compared with a ``scan`` over periods its gradient is several times cheaper to evaluate.

    Parameters
    ----------
    init_prob : TensorVariable
        (K,) initial distribution.
    trans : TensorVariable
        (T, K, K) transition matrices (rows sum to 1); row 0 unused.
    log_obs : TensorVariable
        (T, K) log observation densities.
    renormalise_every : int
        Levels of the tree between rescalings.

    Returns
    -------
    TensorVariable
        Scalar total log-likelihood.
    """
    from pytensor.gradient import disconnected_grad

    n_periods = int(log_obs.type.shape[0]) if log_obs.type.shape[0] is not None else None
    if n_periods is None:
        raise ValueError("forward_loglik needs a static number of periods")
    shift = disconnected_grad(pt.max(log_obs, axis=1))  # keeps exp() in range; the result does not depend on it
    obs = pt.exp(log_obs - shift[:, None])
    v = init_prob * obs[0]
    total = pt.sum(shift)
    if n_periods > 1:
        k = N_SCENARIOS
        n = n_periods - 1
        mats = trans[1:] * obs[1:, None, :]  # (T-1, K, K): M_t = A_t D_t
        size = n
        level = 0
        while size > 1:
            half = size // 2
            pairs = mats[: 2 * half].reshape((half, 2, k, k))
            products = pt.sum(pairs[:, 0, :, :, None] * pairs[:, 1, None, :, :], axis=2)  # fuses better than matmul
            # an odd one out is carried up unmultiplied, in its place at the end (no padding with identities)
            mats = pt.concatenate([products, mats[2 * half:]], axis=0) if size % 2 else products
            size = half + size % 2
            level += 1
            if level % renormalise_every == 0 or size == 1:
                scale = disconnected_grad(pt.max(mats, axis=(1, 2)))
                mats = mats / scale[:, None, None]
                total = total + pt.sum(pt.log(scale))
        v = pt.dot(v, mats[0])
    return total + pt.log(pt.sum(v))


def _gammaln(x: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(x)
