"""Prior sets: packaged sets load, TOML and dict round trips, bad files give ConfigError naming file and key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forecast.errors import ConfigError
from forecast.priors import FAMILIES, PriorSet, default_prior_set, implied_duration, load_prior_set, packaged_prior_sets

PACKAGED = ("default", "flat", "paper", "sceptical", "wide_loadings", "tight_loadings")


def test_packaged_sets_exist_and_cover_every_family():
    assert set(PACKAGED) <= set(packaged_prior_sets())
    for name in PACKAGED:
        prior_set = load_prior_set(name)
        assert prior_set.name == name
        assert set(prior_set.priors) == set(FAMILIES)


@pytest.mark.parametrize("name", PACKAGED)
def test_toml_and_dict_round_trips(name):
    prior_set = load_prior_set(name)
    again = PriorSet.from_toml(prior_set.to_toml())
    assert again.to_dict() == prior_set.to_dict()
    via_json = PriorSet.from_dict(json.loads(json.dumps(prior_set.to_dict())))
    assert via_json.to_dict() == prior_set.to_dict()


def test_sets_differ_where_documented():
    default, flat, paper, sceptical = (load_prior_set(n) for n in ("default", "flat", "paper", "sceptical"))
    mu = {s.name: float(s["stickiness"].parameters["mu"]) for s in (default, flat, sceptical)}
    assert mu["flat"] < mu["default"] < mu["sceptical"]
    a = np.asarray(paper["init_prob"].parameters["a"])
    assert a.argmax() == 0 and a[0] > a[1:].max()  # trilateral most likely initially
    wide = float(load_prior_set("wide_loadings")["loading_group_scale"].parameters["beta"])
    tight = float(load_prior_set("tight_loadings")["loading_group_scale"].parameters["beta"])
    assert wide < tight  # Gamma rate: smaller rate, larger scales


def test_implied_duration_matches_the_transition_probability():
    rho = 4.5
    p_stay = np.exp(rho) / (np.exp(rho) + 3.0)
    assert implied_duration(rho) == pytest.approx(1.0 / (1.0 - p_stay))


def test_file_overrides_a_subset_and_keeps_the_rest(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[priors.stickiness]\ndist = "Normal"\nkwargs = { mu = 5.0, sigma = 0.5 }\n')
    mine = load_prior_set(path)
    assert mine.name == "mine"
    assert float(mine["stickiness"].parameters["mu"]) == 5.0
    assert mine.to_dict()["priors"]["nb_alpha"] == default_prior_set().to_dict()["priors"]["nb_alpha"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('name = "x"\n[priors.stickines]\ndist = "Normal"\n', "stickines"),
        ('name = "x"\n[priors.nb_alpha]\ndist = "Normal"\nkwargs = { mu = 1.0, sigma = 1.0 }\n', "nb_alpha"),
        ('name = "x"\n[priors.init_prob]\ndist = "Dirichlet"\nkwargs = { a = [1.0, 1.0] }\n', "init_prob"),
        ('name = "x"\n[priors.stickiness]\ndist = "Normal"\nkwargs = { mu = "4" }\n', "stickiness"),
        ('name = "x"\n[priors.stickiness]\ndist = "Nromal"\n', "stickiness"),
        ('name = "x"\n[priors.stickiness]\ndist = "Normal"\ndims = "scenario"\n', "stickiness"),
        ('name = \n', "not valid TOML"),
        ('[priors.stickiness]\ndist = "Normal"\n', "name"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_prior_set(path)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message


def test_unknown_name_lists_the_packaged_sets():
    with pytest.raises(ConfigError, match="sceptical"):
        load_prior_set("no_such_set")
