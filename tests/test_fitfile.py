"""The fit file: every part survives a round trip, writes are atomic, damaged or foreign files are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast import __version__
from forecast.errors import FitFileError, UserInputError
from forecast.fitfile import FIT_FORMAT, REQUIRED_ATTRS, REQUIRED_GROUPS, Fit, library_versions, load_fit, save_fit
from forecast.inputs import ModelOptions
from forecast.scenarios import N_SCENARIOS

PACKAGE = Path(__file__).resolve().parents[1] / "forecast"

# Non-ASCII on purpose: catalog text and ids are user strings and must survive byte for byte.
CATALOG_TEXT = '# 한일 안보협력 — 日韓安全保障協力\n[[indicator]]\nid = "trilateral_drills"\nrole = "signal"\n'
SIGNALS = ["trilateral_drills", "gsomia_status", "summit_한일"]
DRIVERS = ["nk_missile_launches", "nk_nuclear_tests"]
SCENARIO_IDS = ["engaged_workable", "engaged_strained", "disengaged_workable", "disengaged_strained"]


def _panel(rng: np.random.Generator, n_periods: int = 7) -> xr.Dataset:
    """A panel shaped like ``build_panel``'s, with bool, string, int8 and datetime coordinates."""
    periods = pd.date_range("2019-01-01", periods=n_periods, freq="MS").values.astype("datetime64[ns]")
    s, d = len(SIGNALS), len(DRIVERS)
    y = rng.poisson(2.0, (n_periods, s)).astype(float)
    y[1, 1] = np.nan
    observed = np.isfinite(y) & (rng.random((n_periods, s)) > 0.2)
    label = np.full(n_periods, -1, dtype=np.int8)
    label[[2, 5]] = [0, 3]
    confidence = np.full(n_periods, np.nan)
    confidence[[2, 5]] = [0.8, 0.6]
    return xr.Dataset(
        {
            "y": (("period", "signal"), y),
            "exposure": (("period", "signal"), rng.uniform(0.0, 1.0, (n_periods, s))),
            "observed": (("period", "signal"), observed),
            "x": (("period", "driver"), rng.poisson(1.0, (n_periods, d)).astype(float)),
            "x_exposure": (("period", "driver"), np.ones((n_periods, d))),
            "label": (("period",), label),
            "label_confidence": (("period",), confidence),
        },
        coords={
            "period": periods,
            "signal": SIGNALS,
            "driver": DRIVERS,
            "scenario": SCENARIO_IDS,
            "kind": ("signal", ["count", "level", "count"]),
            "group": ("signal", ["military", "institutions", "diplomacy"]),
            "direction_us": ("signal", np.array([1, 0, 1], dtype=np.int8)),
            "direction_relations": ("signal", np.array([1, 1, -1], dtype=np.int8)),
            "marker": ("signal", ["us", "", "relations"]),
            "transform": ("signal", ["", "log", ""]),
            "is_marker": ("signal", np.array([True, False, True])),
        },
        attrs={"freq": "M", "observed_through": "2019-07-31", "data_sha256": "d" * 64},
    )


def _draws(rng: np.random.Generator, n_chains: int = 2, n_draws: int = 5) -> dict[str, xr.Dataset]:
    cd = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    shape = (n_chains, n_draws)
    posterior = xr.Dataset(
        {
            "intercept": (("chain", "draw", "signal"), rng.normal(size=(*shape, len(SIGNALS)))),
            "loading": (("chain", "draw", "signal", "effect"), rng.normal(size=(*shape, len(SIGNALS), 3))),
            "stickiness": (("chain", "draw", "scenario"), rng.gamma(2.0, size=(*shape, N_SCENARIOS))),
            "init_prob": (("chain", "draw", "scenario"), rng.dirichlet(np.ones(N_SCENARIOS), size=shape)),
            "driver_effect": (("chain", "draw", "driver", "factor"), rng.normal(size=(*shape, len(DRIVERS), 2))),
        },
        coords={**cd, "signal": SIGNALS, "effect": ["us", "relations", "interaction"], "scenario": SCENARIO_IDS,
                "driver": DRIVERS, "factor": ["us", "relations"]},
    )
    sample_stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), rng.random(shape) < 0.2),
            "tree_depth": (("chain", "draw"), rng.integers(1, 8, shape).astype(np.int64)),
            "energy": (("chain", "draw"), rng.normal(size=shape)),
        },
        coords=cd,
    )
    periods = pd.date_range("2019-01-01", periods=7, freq="MS").values.astype("datetime64[ns]")
    log_likelihood = xr.Dataset(
        {"y": (("chain", "draw", "period"), rng.normal(-3.0, 1.0, (*shape, periods.size)))},
        coords={**cd, "period": periods},
    )
    log_prior = xr.Dataset(
        {"intercept": (("chain", "draw"), rng.normal(size=shape)),
         "loading": (("chain", "draw"), rng.normal(size=shape))},
        coords=cd,
    )
    return {"posterior": posterior, "sample_stats": sample_stats, "log_likelihood": log_likelihood,
            "log_prior": log_prior}


OPTIONS = ModelOptions(
    driver_lag=2,
    use_labels=False,
    level_center={"gsomia_status": 0.25},
    level_scale={"gsomia_status": 1.5},
    driver_center={"nk_missile_launches": 1.1, "nk_nuclear_tests": 0.01},
    driver_scale={"nk_missile_launches": 0.9, "nk_nuclear_tests": 0.1},
)
PRIOR_SET = {"name": "default", "priors": {"stickiness": {"dist": "Normal", "kwargs": {"mu": 3.0, "sigma": 1.0}}}}
SAMPLER = {"backend": "numpyro", "chains": 2, "draws": 5, "tune": 7, "target_accept": 0.9}
DIAGNOSTICS = {"max_rhat": 1.2, "min_ess_bulk": 3.5, "min_ess_tail": 2.0, "divergences": 2,
               "label_switching": False, "failures": ["R-hat 1.2 > 1.01 for loading"], "passed": False}


def _parts(seed: int = 11) -> dict:
    rng = np.random.default_rng(seed)
    return {
        **_draws(rng),
        "panel": _panel(rng),
        "data_sha256": "a1" * 32,
        "seed": 20261125,
        "sampler": SAMPLER,
        "prior_set": PRIOR_SET,
        "model_options": OPTIONS,
        "catalog": CATALOG_TEXT,
        "diagnostics": DIAGNOSTICS,
        "converged": False,
    }


@pytest.fixture
def parts() -> dict:
    return _parts()


@pytest.fixture
def saved(tmp_path, parts) -> Path:
    return save_fit(Fit.from_parts(**parts), tmp_path / "fit.nc")


# -- round trip --------------------------------------------------------------------------------------------------


def test_round_trip_keeps_every_group(saved, parts):
    fit = load_fit(saved)
    xr.testing.assert_identical(fit.posterior, parts["posterior"])
    xr.testing.assert_identical(fit.sample_stats, parts["sample_stats"])
    xr.testing.assert_identical(fit.log_likelihood, parts["log_likelihood"])
    xr.testing.assert_identical(fit.log_prior, parts["log_prior"])
    assert fit.sample_stats["diverging"].dtype == bool
    assert fit.n_draws == parts["posterior"].sizes["chain"] * parts["posterior"].sizes["draw"]


def test_a_fit_written_by_h5netcdf_loads_identically(tmp_path, parts):
    # earlier versions wrote fit files with h5netcdf: published reports keep them, and the update path reads them.
    # One fit written both ways: two fits stamped in different seconds differ in "created", and so in their hash
    fit = Fit.from_parts(**parts)
    old = tmp_path / "h5netcdf.nc"
    fit.tree.to_netcdf(old, engine="h5netcdf")
    loaded, reference = load_fit(old), load_fit(save_fit(fit, tmp_path / "netcdf4.nc"))
    assert loaded.tree.attrs["content_sha256"] == reference.tree.attrs["content_sha256"]
    for group in ("posterior", "sample_stats", "log_likelihood", "log_prior", "panel"):
        xr.testing.assert_identical(getattr(loaded, group), getattr(reference, group))


def test_round_trip_keeps_panel_with_bool_string_and_datetime_coords(saved, parts):
    panel = load_fit(saved).panel
    xr.testing.assert_identical(panel, parts["panel"])
    assert panel["observed"].dtype == bool
    assert panel["is_marker"].dtype == bool
    assert panel["period"].dtype == np.dtype("datetime64[ns]")
    assert panel["signal"].values.tolist() == SIGNALS  # non-ASCII id included
    assert panel["marker"].values.tolist() == ["us", "", "relations"]  # empty strings are not lost
    assert panel["label"].dtype == np.int8
    assert "bool_variables" not in panel.attrs


def test_round_trip_keeps_the_bundled_panel(tmp_path, parts):
    from forecast.dataset import load_dataset
    from forecast.panel import build_panel
    from forecast.paths import bundled_data_dir

    panel = build_panel(load_dataset(bundled_data_dir()), "M")
    fit = load_fit(save_fit(Fit.from_parts(**{**parts, "panel": panel}), tmp_path / "bundled.nc"))
    xr.testing.assert_identical(fit.panel, panel)
    for name in panel.variables:
        assert fit.panel[name].dtype.kind == ("U" if panel[name].dtype.kind == "O" else panel[name].dtype.kind)


def test_round_trip_keeps_configuration_and_provenance(saved, parts):
    fit = load_fit(saved)
    assert fit.options == OPTIONS
    assert fit.attr("prior_set") == PRIOR_SET
    assert fit.attr("catalog") == CATALOG_TEXT
    assert fit.diagnostics == DIAGNOSTICS
    assert fit.converged is False
    assert fit.attr("seed") == parts["seed"] and isinstance(fit.attr("seed"), int)
    assert fit.attr("sampler") == SAMPLER
    assert fit.attr("data_sha256") == parts["data_sha256"]
    assert fit.attr("library_versions") == library_versions()
    assert fit.attr("forecast_version") == __version__
    assert fit.attr("forecast_fit_format") == FIT_FORMAT
    prov = fit.provenance()
    assert prov["seed"] == parts["seed"] and prov["sampler"] == SAMPLER and prov["fit_format"] == FIT_FORMAT
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", prov["created"])


def test_converged_flag_true_survives(tmp_path, parts):
    parts = {**parts, "converged": True, "diagnostics": {**DIAGNOSTICS, "failures": [], "passed": True}}
    fit = load_fit(save_fit(Fit.from_parts(**parts), tmp_path / "ok.nc"))
    assert fit.converged is True
    assert fit.diagnostics["passed"] is True


def test_saving_twice_gives_the_same_content_hash(tmp_path, parts):
    fit = Fit.from_parts(**parts)
    a = load_fit(save_fit(fit, tmp_path / "a.nc"))
    b = load_fit(save_fit(a, tmp_path / "b.nc"))
    assert a.tree.attrs["content_sha256"] == b.tree.attrs["content_sha256"] == fit.tree.attrs["content_sha256"]


def test_different_draws_give_a_different_content_hash(parts):
    other = _parts(seed=12)
    a = Fit.from_parts(**parts).tree.attrs["content_sha256"]
    b = Fit.from_parts(**{**parts, "posterior": other["posterior"]}).tree.attrs["content_sha256"]
    assert a != b


# -- atomic write ------------------------------------------------------------------------------------------------


def test_failed_write_leaves_previous_file_intact(tmp_path, parts, monkeypatch):
    target = save_fit(Fit.from_parts(**parts), tmp_path / "fit.nc")
    before = target.read_bytes()
    newer = Fit.from_parts(**{**parts, "seed": 1})

    def half_write_then_die(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # a partial file at the temporary path
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", half_write_then_die)
    with pytest.raises(OSError, match="disk full"):
        save_fit(newer, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_fit(target).attr("seed") == parts["seed"]


# -- refusal -----------------------------------------------------------------------------------------------------


def _refusal(path: Path) -> FitFileError:
    with pytest.raises(FitFileError) as info:
        load_fit(path)
    err = info.value
    assert isinstance(err, UserInputError)  # the CLI prints it and exits 2
    assert err.path == str(path) and str(path) in str(err)
    assert "Fix:" in str(err) and err.fix
    return err


def test_missing_file_is_refused(tmp_path):
    err = _refusal(tmp_path / "nowhere.nc")
    assert "no such fit file" in err.reason
    assert "forecast fit" in err.fix


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_refused(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    err = _refusal(saved)
    assert "damaged" in str(err)


def test_empty_and_non_hdf_files_are_refused(tmp_path):
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    assert "cannot be read" in _refusal(empty).reason
    text = tmp_path / "notes.nc"
    text.write_text("intercept = 1.0\n")
    assert "cannot be read" in _refusal(text).reason


@pytest.mark.parametrize(
    ("group", "variable", "index"),
    [("posterior", "intercept", (1, 3, 2)), ("log_likelihood", "y", (0, 0, 0)), ("panel", "y", (4, 0))],
)
def test_flipped_value_is_refused(saved, group, variable, index):
    with h5py.File(saved, "r+") as handle:
        dataset = handle[f"{group}/{variable}"]
        dataset[index] = dataset[index] + 1e-9
    err = _refusal(saved)
    assert "checksum" in err.reason and "damaged or was edited" in err.reason


def test_edited_attribute_is_refused(saved):
    with h5py.File(saved, "r+") as handle:
        handle.attrs["seed"] = 7
    assert "checksum" in _refusal(saved).reason


def test_netcdf_that_is_not_a_fit_file_is_refused(tmp_path):
    path = tmp_path / "weather.nc"
    xr.Dataset({"t2m": (("time",), np.arange(3.0))}, attrs={"title": "weather"}).to_netcdf(path, engine="h5netcdf")
    err = _refusal(path)
    assert err.reason.startswith("not a forecast fit file")
    for name in (*REQUIRED_GROUPS, "content_sha256"):
        assert name in err.reason


def test_file_missing_one_group_names_it(tmp_path, parts):
    fit = Fit.from_parts(**parts)
    tree = fit.tree.copy()
    del tree["log_prior"]
    path = tmp_path / "partial.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    err = _refusal(path)
    assert "log_prior" in err.reason
    assert "posterior" not in err.reason


@pytest.mark.parametrize("version", [FIT_FORMAT + 1, 0])
def test_other_format_version_is_refused(saved, version):
    with h5py.File(saved, "r+") as handle:
        handle.attrs["forecast_fit_format"] = version
    err = _refusal(saved)
    assert f"fit file format {version}" in err.reason
    assert f"reads format {FIT_FORMAT}" in err.reason


def test_every_required_attribute_is_written(saved):
    with h5py.File(saved, "r") as handle:
        assert set(REQUIRED_ATTRS) <= set(handle.attrs)
        assert set(REQUIRED_GROUPS) <= set(handle)
        assert json.loads(handle.attrs["model_options"]) == OPTIONS.to_dict()


# -- no pickle -----------------------------------------------------------------------------------------------------

_PICKLE_USE = re.compile(
    r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill|joblib|shelve)\b|allow_pickle\s*=\s*True|"
    r"\b(pickle|cloudpickle|dill|joblib|shelve)\.(loads?|open|dumps?)\b|\bpd\.read_pickle\b|\.to_pickle\(",
    re.MULTILINE,
)


def test_pickle_pattern_catches_what_it_should():
    # the grep below is only as good as this pattern: prove it matches the forms it must catch
    for bad in ("import pickle", "from cloudpickle import loads", "np.load(p, allow_pickle=True)",
                "x = pickle.loads(b)", "df = pd.read_pickle(p)", "joblib.load(p)", "df.to_pickle(p)"):
        assert _PICKLE_USE.search(bad), bad
    assert not _PICKLE_USE.search("Loading never unpickles anything.")


def test_no_pickle_anywhere_in_the_package():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 5
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{m.group(0).strip()}" for p in sources
                 for m in _PICKLE_USE.finditer(p.read_text(encoding="utf-8"))]
    assert offenders == []


def _attribute_bytes(value) -> list[bytes]:
    """The stored bytes of an HDF5 attribute's value, leaving out HDF5 object references.

    References (the dimension-scale tables ``REFERENCE_LIST``/``DIMENSION_LIST``) point at objects of the file,
    which the visit checks themselves; h5py gives them as Python objects, whose ``tobytes`` would be memory
    addresses that differ from run to run.
    """
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, np.generic):  # a scalar: opaque (np.void), a string, a number or a compound
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        return []
    if value.dtype.names:
        return [raw for field in value.dtype.names if h5py.check_ref_dtype(value.dtype[field]) is None
                for raw in _attribute_bytes(value[field])]
    if value.dtype.kind == "O":
        return [raw for item in value.ravel() for raw in _attribute_bytes(item)]
    return [value.tobytes()]


def test_fit_file_holds_no_pickled_bytes(saved):
    # pickle protocol 2+ streams start with 0x80 followed by the protocol number
    found = []
    with h5py.File(saved, "r") as handle:
        def visit(name, obj):
            for key, value in obj.attrs.items():
                if any(re.match(rb"\x80[\x02-\x05]", raw) for raw in _attribute_bytes(value)):
                    found.append(f"{name}@{key}")
            # text is stored as HDF5 strings; any other opaque or object type could hide serialised objects
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "OV" and h5py.check_string_dtype(obj.dtype) is None:
                found.append(name)
        handle.visititems(visit)
    assert found == []


def test_the_pickle_scan_sees_a_pickle_in_an_attribute(tmp_path):
    # the scan above must be able to fail: a pickled object stored as an attribute's bytes is found
    import pickle

    path = tmp_path / "pickled.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.arange(3.0)).attrs["hidden"] = np.void(pickle.dumps({"a": 1}))
    with h5py.File(path, "r") as handle:
        assert any(re.match(rb"\x80[\x02-\x05]", raw) for raw in _attribute_bytes(handle["x"].attrs["hidden"]))


# -- the optional filtered_state group ---------------------------------------------------------------------------


def _with_state(parts: dict, seed: int = 3) -> dict:
    from forecast.fitfile import filtered_state_group

    rng = np.random.default_rng(seed)
    chains, draws = parts["posterior"].sizes["chain"], parts["posterior"].sizes["draw"]
    log_p = np.log(rng.dirichlet(np.ones(N_SCENARIOS), size=chains * draws))
    log_c = np.log(rng.dirichlet(np.ones(N_SCENARIOS), size=chains * draws))
    state = filtered_state_group(log_p, log_c, chains=chains, draws=draws, period=parts["panel"]["period"].values[-1],
                                 scenarios=SCENARIO_IDS)
    return {**parts, "filtered_state": state}


def test_filtered_state_survives_a_round_trip(tmp_path, parts):
    parts = _with_state(parts)
    fit = load_fit(save_fit(Fit.from_parts(**parts), tmp_path / "state.nc"))
    xr.testing.assert_identical(fit.filtered_state, parts["filtered_state"])
    assert fit.filtered_state["period"].values == parts["panel"]["period"].values[-1]


def test_a_fit_without_filtered_state_loads_and_says_so(saved):
    assert load_fit(saved).filtered_state is None


def test_filtered_state_is_covered_by_the_content_hash(tmp_path, parts):
    a = Fit.from_parts(**_with_state(parts, seed=3)).tree.attrs["content_sha256"]
    b = Fit.from_parts(**_with_state(parts, seed=4)).tree.attrs["content_sha256"]
    without = Fit.from_parts(**parts).tree.attrs["content_sha256"]
    assert len({a, b, without}) == 3
    path = save_fit(Fit.from_parts(**_with_state(parts)), tmp_path / "state.nc")
    with h5py.File(path, "r+") as handle:
        dataset = handle["filtered_state/log_filtered_conditioned"]
        dataset[0, 1, 2] = dataset[0, 1, 2] + 1e-9
    assert "checksum" in _refusal(path).reason


def test_malformed_filtered_state_is_refused(tmp_path, parts):
    fit = Fit.from_parts(**_with_state(parts))
    tree = fit.tree.copy()
    tree["filtered_state"] = xr.DataTree(tree["filtered_state"].to_dataset().drop_vars("log_filtered_conditioned"))
    from forecast.fitfile import content_sha256

    tree.attrs["content_sha256"] = content_sha256(tree)  # a consistent hash: the group itself is incomplete
    path = tmp_path / "malformed.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    err = _refusal(path)
    assert "filtered_state" in err.reason and "log_filtered_conditioned" in err.reason


def test_filtered_state_group_checks_the_number_of_draws():
    from forecast.fitfile import filtered_state_group

    with pytest.raises(ValueError, match="draws"):
        filtered_state_group(np.zeros((9, 4)), np.zeros((9, 4)), chains=2, draws=5, period="2020-01-01")
