"""The four scenarios and their 2×2 factor coding.

The scenario ids are the public contract of the toolkit: they are the names used in the API, on the command
line, in JSON and in data files.
"""

from __future__ import annotations

import numpy as np

#: Scenario ids, in the order used by every array with a ``scenario`` dimension.
SCENARIOS: tuple[str, ...] = ("trilateral", "bilateral_alliances", "direct_bilateral", "multilateral")

#: Human-readable scenario names.
SCENARIO_NAMES: dict[str, str] = {
    "trilateral": "US–ROK–Japan trilateral security cooperation",
    "bilateral_alliances": "Loose cooperation under the separate US bilateral alliances",
    "direct_bilateral": "Direct ROK–Japan bilateral security cooperation",
    "multilateral": "Cooperation through regional multilateral frameworks",
}

#: Factor names: US East Asia policy engaged (+1) or retrenching (−1); ROK–Japan relations workable (+1) or
#: strained (−1).
FACTORS: tuple[str, ...] = ("us", "relations")

#: Loading effects of a signal: the two factors and their interaction.
EFFECTS: tuple[str, ...] = ("us", "relations", "interaction")

#: u(s): +1 where US policy is engaged.
FACTOR_US = np.array([1.0, 1.0, -1.0, -1.0])
#: r(s): +1 where ROK–Japan relations are workable.
FACTOR_RELATIONS = np.array([1.0, -1.0, 1.0, -1.0])

#: Design matrix (scenario, effect): u(s), r(s), u(s)·r(s).
EFFECT_MATRIX = np.stack([FACTOR_US, FACTOR_RELATIONS, FACTOR_US * FACTOR_RELATIONS], axis=1)
#: Design matrix (scenario, factor): u(s), r(s).
FACTOR_MATRIX = EFFECT_MATRIX[:, :2]

N_SCENARIOS = len(SCENARIOS)

#: One colour per scenario, in :data:`SCENARIOS` order (colour-blind safe, Okabe–Ito), for every figure.
SCENARIO_COLOURS: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")


def scenario_index(scenario_id: str) -> int:
    """Return the position of a scenario id in :data:`SCENARIOS`.

    Parameters
    ----------
    scenario_id : str
        One of the four public scenario ids.

    Returns
    -------
    int
        Index into :data:`SCENARIOS`.

    Raises
    ------
    KeyError
        If ``scenario_id`` is not a scenario id; the message lists the valid ids.

    """
    try:
        return SCENARIOS.index(scenario_id)
    except ValueError:
        raise KeyError(f"unknown scenario {scenario_id!r}; expected one of {', '.join(SCENARIOS)}") from None


def factor_probabilities(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Factor probabilities from scenario probabilities.

    Parameters
    ----------
    probs : numpy.ndarray
        Scenario probabilities with the scenario axis last, in :data:`SCENARIOS` order.

    Returns
    -------
    dict of str to numpy.ndarray
        ``us_engaged`` = P(trilateral) + P(bilateral_alliances) and
        ``relations_workable`` = P(trilateral) + P(direct_bilateral), each with the scenario axis removed.

    """
    probs = np.asarray(probs)
    return {
        "us_engaged": probs[..., 0] + probs[..., 1],
        "relations_workable": probs[..., 0] + probs[..., 2],
    }
