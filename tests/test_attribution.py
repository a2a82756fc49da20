"""Attribution of a report-to-report change to the new observation rows (leave-one-observation-out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from state_helpers import labelled_known_fit, without_stored_state
from test_update import synthetic_fit, tiny_panel

from forecast import attribution as at
from forecast.scenarios import SCENARIOS


@pytest.fixture(scope="module")
def vintage():
    """A simulated panel of 121 periods; the previous report covered the first 120 with a synthetic fit."""
    from forecast.simulate import simulate_panel

    panel, _, truth = simulate_panel(121, seed=8)
    old = panel.isel(period=slice(0, 120))
    old.attrs = dict(panel.attrs)
    return {"panel": panel, "old": old, "truth": truth, "fit": synthetic_fit(old, truth, seed=2)}


def iso(panel, t):
    return str(pd.Timestamp(panel["period"].values[t]).date())


def first_count(panel):
    return next(s for s, k in zip(panel["signal"].values.tolist(), panel["kind"].values.tolist(), strict=True)
                if k == "count")


def add_to(panel, var, dim, name, t, amount):
    out = panel.copy(deep=True)
    out[var][{"period": t, dim: panel[dim].values.tolist().index(name)}] += amount
    return out


class TestAttribute:
    def test_no_change_gives_zero_everything(self, vintage):
        result = at.attribute(vintage["fit"], vintage["old"], vintage["old"], [])
        assert np.allclose(result.table[["current", "forecast"]].to_numpy(), 0.0, atol=1e-9)
        assert np.allclose(result.totals["change"], 0.0, atol=1e-9)
        assert "No scenario" in result.summary

    def test_a_row_that_removes_nothing_gets_zero_attribution(self, vintage):
        # a zero-valued row leaves its cell unchanged when removed: its attribution must be exactly zero
        old = vintage["old"]
        name = first_count(old)
        new = add_to(old, "y", "signal", name, 119, 2.0)
        rows = [at.DataRow(iso(old, 119), name, 2.0, "a.csv", 5),
                at.DataRow(iso(old, 119), name, 0.0, "a.csv", 6)]
        table = at.attribute(vintage["fit"], old, new, rows).table
        zero = table[table["line"] == 6]
        assert len(zero) == 4 and np.allclose(zero[["current", "forecast"]].to_numpy(), 0.0, atol=1e-12)

    def test_single_new_row_explains_the_whole_change(self, vintage):
        old = vintage["old"]
        name = first_count(old)
        new = add_to(old, "y", "signal", name, 119, 3.0)
        row = at.DataRow(iso(old, 119), name, 3.0, "events.csv", 42, source="test")
        result = at.attribute(vintage["fit"], old, new, [row])
        rows = result.table[result.table["row"] != at.RESIDUAL].set_index("scenario")
        totals = result.totals.set_index("scenario")
        assert rows.loc[list(SCENARIOS), "current"].to_numpy() == pytest.approx(
            totals.loc[list(SCENARIOS), "change"].to_numpy(), abs=1e-9)
        assert rows.loc[list(SCENARIOS), "forecast"].to_numpy() == pytest.approx(
            totals.loc[list(SCENARIOS), "forecast_change"].to_numpy(), abs=1e-9)
        residual = result.table[result.table["row"] == at.RESIDUAL]
        assert np.allclose(residual[["current", "forecast"]].to_numpy(), 0.0, atol=1e-9)
        assert (rows["file"] == "events.csv").all() and (rows["line"] == 42).all()
        assert abs(totals["change"]).max() > 0.01  # the row did move something (else the test proves nothing)

    def test_latest_month_driver_moves_only_the_forecast(self, vintage):
        # drivers shift the transition into the *next* period (lag 1): a launch in the newest month cannot move
        # that month's filtered probability, only the forecast, in the direction of the driver effect's sign
        panel = vintage["panel"]
        driver = panel["driver"].values.tolist()[0]
        new = add_to(panel, "x", "driver", driver, 120, 3.0)
        row = at.DataRow(iso(panel, 120), driver, 3.0, "launches.csv", 7)
        result = at.attribute(vintage["fit"], vintage["old"], new, [row])
        mine = result.table[result.table["line"] == 7].set_index("scenario")
        assert np.allclose(mine["current"], 0.0, atol=1e-9)
        gamma_us = float(np.asarray(vintage["truth"]["driver_effect"])[0, 0])
        us_engaged = mine.loc["trilateral", "forecast"] + mine.loc["bilateral_alliances", "forecast"]
        assert np.sign(us_engaged) == np.sign(gamma_us)
        assert abs(us_engaged) > 1e-3

    def test_attributions_and_residual_add_up_to_the_total(self, vintage):
        panel = vintage["panel"]
        name = first_count(panel)
        new = add_to(panel, "y", "signal", name, 120, 2.0)
        row = at.DataRow(iso(panel, 120), name, 2.0, "e.csv", 3)
        result = at.attribute(vintage["fit"], vintage["old"], new, [row])
        summed = result.table.groupby("scenario")[["current", "forecast"]].sum().loc[list(SCENARIOS)]
        totals = result.totals.set_index("scenario").loc[list(SCENARIOS)]
        assert summed["current"].to_numpy() == pytest.approx(totals["change"].to_numpy(), abs=1e-9)
        assert summed["forecast"].to_numpy() == pytest.approx(totals["forecast_change"].to_numpy(), abs=1e-9)

    def test_given_new_probabilities_go_into_totals_and_residual(self, vintage):
        old = vintage["old"]
        given = np.array([0.7, 0.1, 0.1, 0.1])
        result = at.attribute(vintage["fit"], old, old, [], new_current=given, new_forecast=given)
        assert result.totals["new"].to_numpy() == pytest.approx(100 * given)
        residual = result.table[result.table["row"] == at.RESIDUAL]["current"].to_numpy()
        assert residual == pytest.approx(result.totals["change"].to_numpy())


    def test_observation_tables_are_diffed_into_rows(self, vintage):
        old = vintage["old"]
        name = first_count(old)
        new = add_to(old, "y", "signal", name, 119, 1.0)
        base = {"date": [pd.Timestamp(iso(old, 10))], "indicator": [name], "value": [1.0], "source": ["s"],
                "note": [""], "file": ["o.csv"], "line": [2]}
        previous = pd.DataFrame(base)
        added = pd.DataFrame({**base, "date": [pd.Timestamp(iso(old, 119))], "line": [3]})
        result = at.attribute_observations(vintage["fit"], old, new, previous, pd.concat([previous, added]))
        direct = at.attribute(vintage["fit"], old, new,
                              [at.DataRow(iso(old, 119), name, 1.0, "o.csv", 3, source="s")])
        pd.testing.assert_frame_equal(result.table, direct.table)
        assert set(result.table["line"]) == {0, 3}


class TestRowsAndCells:
    def test_diff_rows_finds_added_and_removed_as_multisets(self):
        a = at.DataRow("2026-01-05", "talks", 1, "x.csv", 2)
        b = at.DataRow("2026-01-09", "talks", 1, "x.csv", 3)
        b_revised = at.DataRow("2026-01-09", "talks", 2, "x.csv", 3)
        c = at.DataRow("2026-02-01", "talks", 1, "x.csv", 4)
        changed = at.diff_rows([a, b, a], [a, b_revised, c, a])
        assert [(r.date, r.value, r.change) for r in changed] == [
            ("2026-01-09", 2, "added"), ("2026-02-01", 1, "added"), ("2026-01-09", 1, "removed")]

    def test_remove_row_on_counts_levels_and_drivers(self):
        panel = tiny_panel()
        t = 2
        date = iso(panel, t)
        count = at.remove_row(panel, at.DataRow(date, "talks", 1, "f", 1))
        assert float(count["y"].sel(signal="talks")[t]) == float(panel["y"].sel(signal="talks")[t]) - 1
        back = at.remove_row(panel, at.DataRow(date, "talks", 2, "f", 1, change="removed"))
        assert float(back["y"].sel(signal="talks")[t]) == float(panel["y"].sel(signal="talks")[t]) + 2
        only = at.remove_row(panel, at.DataRow(date, "troops", 10.0, "f", 1))
        assert np.isnan(float(only["y"].sel(signal="troops")[t]))
        assert not bool(only["observed"].sel(signal="troops")[t])
        mean = float(panel["y"].sel(signal="troops")[t])
        two = at.remove_row(panel, at.DataRow(date, "troops", mean + 1, "f", 1), rows_in_cell=2)
        assert float(two["y"].sel(signal="troops")[t]) == pytest.approx(mean - 1)
        drv = at.remove_row(panel, at.DataRow(date, "launches", 1, "f", 1))
        assert float(drv["x"][t, 0]) == max(float(panel["x"][t, 0]) - 1, 0)
        # the input panel is untouched
        assert float(panel["y"].sel(signal="talks")[t]) == float(tiny_panel()["y"].sel(signal="talks")[t])

    def test_rows_outside_the_panel_leave_it_unchanged(self):
        panel = tiny_panel()
        out = at.remove_row(panel, at.DataRow("1980-01-01", "talks", 1, "f", 1))
        assert out.identical(panel)

    def test_description_names_what_when_and_indicator(self):
        row = at.DataRow("2026-03-14", "nk_icbm_launches", 1, "cns.csv", 9)
        assert row.describe({"nk_icbm_launches": "ICBM launch"}) == "ICBM launch on 2026-03-14 (nk_icbm_launches)"
        assert "value 3" in at.DataRow("2026-03-14", "x", 3, "f", 1).describe()
        assert at.DataRow("2026-03-14", "x", 1, "f", 1, change="removed").describe().startswith("removed")

    def test_rows_from_frame(self):
        frame = pd.DataFrame({"date": ["2026-01-02"], "indicator": ["talks"], "value": [1], "source": ["s"],
                              "note": [np.nan], "file": ["o.csv"], "line": [4]})
        (row,) = at.rows_from_frame(frame)
        assert (row.date, row.indicator, row.value, row.file, row.line, row.note) == (
            "2026-01-02", "talks", 1.0, "o.csv", 4, "")


class TestSummary:
    def test_summary_names_the_main_row_and_the_numbers(self):
        totals = pd.DataFrame({"scenario": list(SCENARIOS), "previous": [50.0, 20, 20, 10], "new": [54.0, 18, 18, 10],
                               "change": [4.0, -2, -2, 0], "forecast_previous": [50.0, 20, 20, 10],
                               "forecast_new": [50.0, 20, 20, 10], "forecast_change": [0.0, 0, 0, 0]})
        rows = []
        for desc, share in (("ICBM launch on 2026-03-14 (nk_icbm_launches)", 0.75), ("talks", 0.25)):
            for s, change in zip(SCENARIOS, [4.0, -2, -2, 0], strict=True):
                rows.append({"row": desc, "file": "", "line": 1, "scenario": s, "current": share * change,
                             "forecast": 0.0})
        text = at.summarise(pd.DataFrame(rows), totals)
        assert text.startswith("Trilateral (now) rose 4.0 points, from 50.0% to 54.0%, mostly on ICBM launch")
        assert "Multilateral" not in text

    def test_a_move_no_row_explains_is_put_on_time_passing_and_names_what_pushed_back(self):
        # trilateral fell 2.1 points although a defence meeting pushed it up 3.5: the new month and time passing
        # (-5.6) did it, and the summary must say so rather than only "not driven by any single observation"
        totals = pd.DataFrame({"scenario": list(SCENARIOS), "previous": [93.6, 5.6, 0.2, 0.6],
                               "new": [91.5, 5.5, 1.6, 1.4], "change": [-2.1, -0.1, 1.4, 0.8],
                               "forecast_previous": [88.1, 7.2, 2.0, 2.6], "forecast_new": [88.1, 7.2, 2.0, 2.6],
                               "forecast_change": [0.0, 0, 0, 0]})
        contributions = {"talks on 2026-01-30 (rok_japan_defence_exchanges)": [3.5, -2.0, 0.2, -1.6],
                         at.RESIDUAL: [-5.6, 1.9, 1.2, 2.4]}
        rows = [{"row": desc, "file": "", "line": 1, "scenario": s, "current": c, "forecast": 0.0}
                for desc, values in contributions.items() for s, c in zip(SCENARIOS, values, strict=True)]
        text = at.summarise(pd.DataFrame(rows), totals)
        assert ("Trilateral (now) fell 2.1 points, from 93.6% to 91.5%, not on any single new observation but on "
                "the new period(s) and time passing (-5.6), against talks on 2026-01-30 "
                "(rok_japan_defence_exchanges) (+3.5).") in text


# -- the fit file's stored last filtered states (fast path) against filtering the previous vintage again ---------
@pytest.fixture(scope="module")
def labelled_vintage():
    """A labelled simulated panel of 121 periods; a known-parameter fit of the first 120 that used the labels."""
    return labelled_known_fit(121, seed=9, label_stretches=[(30, 40), (105, 120)], fit_seed=4)


@pytest.mark.parametrize("where", ["new month", "fitted month"])
def test_stored_states_give_the_attribution_of_a_refilter(labelled_vintage, monkeypatch, where):
    # rows only in the new month: the stored last states suffice and the previous vintage is never filtered
    # again; a row inside the fitted months needs the filtered history, computed on demand: both must give the
    # attribution of the fall-back (an older fit file without the states) to rounding
    v = labelled_vintage
    name = first_count(v["panel"])
    t = 120 if where == "new month" else 110
    new = add_to(v["panel"], "y", "signal", name, t, 2.0)
    rows = [at.DataRow(iso(v["panel"], t), name, 2.0, "e.csv", 3)]
    filters, ratios = [], []
    real_filter, real_psis = at._Vintages._filter, at.psis_weights
    monkeypatch.setattr(at._Vintages, "_filter", lambda self, inputs: filters.append(inputs.n_periods)
                        or real_filter(self, inputs))
    monkeypatch.setattr(at, "psis_weights", lambda r: ratios.append(np.array(r)) or real_psis(r))
    fast = at.attribute(v["fit"], v["old"], new, rows)
    history_filters = [n for n in filters if n == 120]
    assert history_filters == ([] if where == "new month" else [120])
    fast_ratios, ratios[:] = list(ratios), []
    slow = at.attribute(without_stored_state(v["fit"]), v["old"], new, rows)
    # the log importance ratios continue the label-conditioned filter in both (the probabilities barely show a
    # wrong conditioning on this panel, the ratios do)
    assert len(fast_ratios) == len(ratios) == 2
    for a, b in zip(fast_ratios, ratios, strict=True):
        assert np.allclose(a, b, rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(fast.table, slow.table, rtol=0, atol=1e-8)
    pd.testing.assert_frame_equal(fast.totals, slow.totals, rtol=0, atol=1e-8)
    assert fast.pareto_k == pytest.approx(slow.pareto_k, abs=1e-9)
    assert abs(fast.totals["change"]).max() > 0.01  # something moved, so agreement is not trivial


def test_stored_states_are_not_used_for_a_previous_panel_other_than_the_fitted_one(labelled_vintage):
    from forecast.attribution import _stored_last_state

    v = labelled_vintage
    assert _stored_last_state(v["fit"], v["old"]) is not None
    assert _stored_last_state(v["fit"], v["panel"]) is None  # the previous report was an update: longer panel
    revised = add_to(v["old"], "y", "signal", first_count(v["old"]), 50, 1.0)
    assert _stored_last_state(v["fit"], revised) is None
