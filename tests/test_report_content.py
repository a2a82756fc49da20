"""Report content and report.json schema on a known-parameter fit (no MCMC)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_helpers import synthetic_fitter

from forecast.errors import DataValidationError
from forecast.report.config import load_report_config
from forecast.report.pipeline import SCHEMA_VERSION, run_report
from forecast.scenarios import SCENARIOS

WHAT_IF = """
[[what_if]]
name = "Launch <surge>"
description = "Five launches next month"
drivers = { launches = { "1" = 5 } }
"""


@pytest.fixture
def published(tiny_data_dir, tmp_path):
    (tiny_data_dir / "report.toml").write_text(WHAT_IF, encoding="utf-8")
    outcome = run_report(tiny_data_dir, tmp_path / "reports", fitter=synthetic_fitter(draws=200))
    return outcome, json.loads((outcome.directory / "report.json").read_text(encoding="utf-8"))


def _check_interval(v):
    assert 0.0 <= v["lower"] <= v["mean"] <= v["upper"] <= 1.0


def test_report_json_schema_and_consistency(published):
    outcome, report = published
    assert outcome.status == "published" and outcome.exit_code == 0
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["as_of"] == "2021-12-31" and outcome.directory.name == "2021-12-31"
    assert report["period"] == "2021-12-01"
    assert set(report["scenarios"]) == set(SCENARIOS)
    for v in report["scenarios"].values():
        _check_interval(v)
    # scenario means are a probability distribution (means of per-draw distributions)
    assert sum(v["mean"] for v in report["scenarios"].values()) == pytest.approx(1.0, abs=1e-9)
    # factor means are sums of scenario means (the mean is linear)
    s = report["scenarios"]
    assert report["factors"]["us_engaged"]["mean"] == pytest.approx(
        s["trilateral"]["mean"] + s["bilateral_alliances"]["mean"], abs=1e-9)
    assert report["factors"]["relations_workable"]["mean"] == pytest.approx(
        s["trilateral"]["mean"] + s["direct_bilateral"]["mean"], abs=1e-9)
    assert [f["horizon"] for f in report["forecast"]] == list(range(1, 13))
    assert report["forecast"][0]["period"] == "2022-01-01" and report["forecast"][-1]["period"] == "2022-12-01"
    for f in report["forecast"]:
        assert sum(v["mean"] for v in f["scenarios"].values()) == pytest.approx(1.0, abs=1e-9)
        for v in f["scenarios"].values():
            _check_interval(v)
    prov = report["provenance"]
    assert prov["path"] == "refit" and prov["update_file"] is None
    assert len(prov["data_sha256"]) == 64 and prov["fit"]["file"] == "fit.nc"
    assert {"seed", "sampler", "library_versions", "prior_set", "forecast_version"} <= set(prov)
    assert {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "pareto_k", "passed"} <= set(
        report["diagnostics"])
    assert report["what_changed"]["previous_as_of"] is None
    assert report["history"]["start"] == "2020-01-01" and report["history"]["end"] == "2021-12-01"
    assert [y["year"] for y in report["history"]["yearly"]] == [2020, 2021]


def test_report_directory_layout(published):
    outcome, _ = published
    names = {p.relative_to(outcome.directory).as_posix() for p in outcome.directory.rglob("*") if p.is_file()}
    assert {"index.html", "report.md", "report.json", "fit.nc", "data/catalog.toml", "data/labels.csv",
            "data/observations/signals.csv", "data/report.toml"} <= names
    index = json.loads((outcome.directory.parent / "index.json").read_text(encoding="utf-8"))
    assert [e["as_of"] for e in index["reports"]] == ["2021-12-31"]
    assert (outcome.directory.parent / "index.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 1


def test_what_if_from_report_toml(published):
    outcome, report = published
    (w,) = report["what_if"]
    assert w["name"] == "Launch <surge>" and w["drivers"] == {"launches": {"1": 5.0}}
    diffs = np.array([[h["scenarios"][s]["difference"] for s in SCENARIOS] for h in w["horizons"]])
    # drivers act with a lag of one period: the first forecast period cannot move, later ones do
    assert np.allclose(diffs[0], 0.0, atol=1e-12)
    assert np.abs(diffs[1:]).max() > 1e-4
    # differences of distributions sum to zero
    assert np.allclose(diffs.sum(axis=1), 0.0, atol=1e-9)
    for h in w["horizons"]:
        for s in SCENARIOS:
            c = h["scenarios"][s]
            assert c["what_if"] - c["baseline"] == pytest.approx(c["difference"], abs=1e-9)
    first = w["horizons"][0]["scenarios"]
    assert all(first[s]["p_increase"] == first[s]["p_decrease"] == 0.0 for s in SCENARIOS)
    # after the lag some draws move each way or all one way, but every draw moves
    later = w["horizons"][-1]["scenarios"]
    assert all(later[s]["p_increase"] + later[s]["p_decrease"] == pytest.approx(1.0) for s in SCENARIOS)

    # both documents show how sure the change is at the last horizon, with the JSON's figures
    last = w["horizons"][-1]
    md = (outcome.directory / "report.md").read_text(encoding="utf-8")
    html = (outcome.directory / "index.html").read_text(encoding="utf-8")
    for s in SCENARIOS:
        c = last["scenarios"][s]
        md_name = s.replace("_", "\\_")  # Markdown-escaped
        row = (f"| {md_name} | {100 * c['difference']:+.1f} | {100 * c['difference_median']:+.1f} | "
               f"{100 * c['difference_lower']:+.1f} to {100 * c['difference_upper']:+.1f} | "
               f"{100 * c['p_increase']:.0f}% of draws | {100 * c['p_decrease']:.0f}% of draws |")
        assert row in md
        cells = [f"{100 * c[k]:+.1f}" for k in ("difference", "difference_median")]
        cells += [f"{100 * c['difference_lower']:+.1f} to {100 * c['difference_upper']:+.1f}",
                  f"{100 * c['p_increase']:.0f}% of draws", f"{100 * c['p_decrease']:.0f}% of draws"]
        assert f"<tr><td>{s}</td>" + "".join(f'<td class="num">{x}</td>' for x in cells) + "</tr>" in html
    assert f"Change at horizon {last['horizon']}" in md


def test_report_config_reports_every_problem(tmp_path):
    (tmp_path / "report.toml").write_text(
        'colour = "red"\nout_dir = 3\n[[what_if]]\n'
        'drivers = { nope = { "1" = 1 }, launches = { "13" = 1, "2" = -1 } }\n',
        encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_report_config(tmp_path, drivers=["launches"], horizon=12)
    text = str(info.value)
    assert len(info.value.problems) == 6
    for expected in ("colour", "out_dir", "name", "nope", "13", "-1"):
        assert expected in text


def test_report_config_missing_file_is_default(tmp_path):
    config = load_report_config(tmp_path)
    assert config.what_if == () and config.out_dir is None and config.sha256 == ""


def test_report_config_out_dir_relative_to_data_dir(tmp_path):
    (tmp_path / "report.toml").write_text('out_dir = "../published"\n', encoding="utf-8")
    assert load_report_config(tmp_path).out_dir == (tmp_path.parent / "published").resolve()
