import numpy as np
import pytest

from forecast.scenarios import (
    EFFECT_MATRIX,
    FACTOR_RELATIONS,
    FACTOR_US,
    SCENARIOS,
    factor_probabilities,
    scenario_index,
)


def test_scenario_ids_are_the_public_contract():
    assert SCENARIOS == ("trilateral", "bilateral_alliances", "direct_bilateral", "multilateral")


def test_factor_coding_is_the_2x2_of_design():
    # trilateral: engaged & workable; bilateral_alliances: engaged & strained; direct: retrenching & workable
    assert FACTOR_US.tolist() == [1, 1, -1, -1]
    assert FACTOR_RELATIONS.tolist() == [1, -1, 1, -1]
    assert EFFECT_MATRIX[:, 2].tolist() == [1, -1, -1, 1]
    # the four rows are distinct, so the coding identifies every scenario
    assert len({tuple(r) for r in EFFECT_MATRIX}) == 4


def test_factor_probabilities_sum_the_right_scenarios():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(5, 3))
    f = factor_probabilities(p)
    np.testing.assert_allclose(f["us_engaged"], p[..., 0] + p[..., 1])
    np.testing.assert_allclose(f["relations_workable"], p[..., 0] + p[..., 2])


def test_scenario_index_names_the_valid_ids_on_error():
    assert scenario_index("multilateral") == 3
    with pytest.raises(KeyError, match="trilateral, bilateral_alliances"):
        scenario_index("trilateral_plus")
