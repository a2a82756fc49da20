"""Checks of the bundled dataset in ``data/``: it validates, covers 1990-01..2025-12, and its key facts are right.

The North Korean missile counts come from ``data/observations/cns_missiles.csv``, which ``forecast data ingest
cns`` writes from a CNS export; until that file is present the count test fails by design.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import itertools
import math
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
OBSERVATIONS = DATA / "observations"
CNS_REFERENCE = REPO.parent / "shared" / "reference-data" / "cns_nk_missile_tests_1984_2026_nagix.csv"

SIGNALS = [
    "rok_japan_defence_exchanges",
    "trilateral_meetings",
    "trilateral_exercises",
    "history_disputes",
    "us_forces_korea",
    "us_forces_japan",
]
DRIVERS = ["nk_missile_launches", "nk_icbm_launches", "nk_nuclear_tests"]
EVENT_SIGNALS = SIGNALS[:4]
SCENARIOS = {"trilateral", "bilateral_alliances", "direct_bilateral", "multilateral"}

# The six North Korean nuclear tests (UTC day of the seismic event; CTBTO Preparatory Commission statements).
NUCLEAR_TESTS = ["2006-10-09", "2009-05-25", "2013-02-12", "2016-01-06", "2016-09-09", "2017-09-03"]

# Missiles per calendar year (UTC), 1990-2025, from the CNS North Korea Missile Test Database (James Martin
# Center for Nonproliferation Studies for NTI) as of 2026-04: one database row = one missile. Derived by counting
# the rows per year of the re-keyed copy in github nagix/nk-missile-tests (data/test.en.json, commit a0cc658,
# 2026-04-21), stored beside the repository as shared/reference-data/cns_nk_missile_tests_1984_2026_nagix.csv.
# Years absent here had no launches in the database.
CNS_MISSILES_PER_YEAR = {
    1990: 2, 1991: 1, 1992: 1, 1993: 4, 1998: 1, 2006: 7, 2009: 8, 2012: 2, 2013: 6, 2014: 19, 2015: 15,
    2016: 24, 2017: 21, 2019: 27, 2020: 9, 2021: 6, 2022: 69, 2023: 33, 2024: 41, 2025: 11,
}
# Rows of missile type ICBM per year, same source.
CNS_ICBMS_PER_YEAR = {2017: 3, 2022: 3, 2023: 5, 2024: 1}


def _catalog() -> dict:
    return tomllib.loads((DATA / "catalog.toml").read_text(encoding="utf-8"))


def _rows() -> list[dict[str, str]]:
    """All observation rows of the bundled data, each with its file name and line number added."""
    rows = []
    for path in sorted(OBSERVATIONS.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                rows.append({**row, "_file": path.name, "_line": str(line)})
    return rows


def _yearly(rows: list[dict[str, str]], indicator: str) -> dict[int, int]:
    counts: collections.Counter[int] = collections.Counter()
    for row in rows:
        if row["indicator"] == indicator:
            counts[int(row["date"][:4])] += int(row["value"])
    return {year: n for year, n in sorted(counts.items()) if 1990 <= year <= 2025}


def _monthly_rate(rows: list[dict[str, str]], indicator: str, first: str, last: str) -> float:
    """Events per month of ``indicator`` in the months ``first``..``last`` (``YYYY-MM``, inclusive)."""
    events = sum(int(r["value"]) for r in rows if r["indicator"] == indicator and first <= r["date"][:7] <= last)
    (y0, m0), (y1, m1) = (map(int, first.split("-")), map(int, last.split("-")))
    return events / ((y1 - y0) * 12 + m1 - m0 + 1)


def _month_end(text: str) -> dt.date:
    year, month = map(int, text.split("-"))
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def test_bundled_data_validate_with_the_loader():
    dataset = pytest.importorskip("forecast.dataset", reason="forecast.dataset is not available yet")
    # Raises DataValidationError listing every problem if any file breaks the data contract.
    dataset.load_dataset(DATA)


def test_catalog_holds_the_default_indicators_with_their_roles():
    catalog = _catalog()
    assert catalog["schema_version"] == 1
    by_id = {entry["id"]: entry for entry in catalog["indicators"]}
    assert list(by_id) == SIGNALS + DRIVERS
    assert {i for i, e in by_id.items() if e["role"] == "signal"} == set(SIGNALS)
    assert {i for i, e in by_id.items() if e["role"] == "driver"} == set(DRIVERS)
    markers = {e["marker"]: i for i, e in by_id.items() if "marker" in e}
    assert markers == {"relations": "rok_japan_defence_exchanges", "us": "us_forces_japan"}
    assert by_id["history_disputes"]["direction"] == {"us": "?", "relations": "-"}
    for level in ("us_forces_korea", "us_forces_japan"):
        assert by_id[level]["kind"] == "level" and by_id[level]["transform"] == "log"
    for entry in catalog["indicators"]:
        assert entry["source"].strip() and entry["coding_rule"].strip(), entry["id"]


def test_data_cover_1990_01_to_2025_12():
    catalog = _catalog()
    assert catalog["observed_through"] == dt.date(2025, 12, 31)
    starts = [entry["coverage_start"] for entry in catalog["indicators"]]
    assert min(starts) == dt.date(1990, 1, 1)
    assert all(start == dt.date(1990, 1, 1) for start in starts)
    for entry in catalog["indicators"]:
        assert entry.get("coverage_end", catalog["observed_through"]) == dt.date(2025, 12, 31), entry["id"]


def test_monthly_panel_runs_from_1990_01_to_2025_12():
    panel = pytest.importorskip("forecast.panel", reason="forecast.panel is not available yet")
    dataset = pytest.importorskip("forecast.dataset", reason="forecast.dataset is not available yet")
    built = panel.build_panel(dataset.load_dataset(DATA), "M")
    periods = built["period"].values
    assert str(periods[0])[:7] == "1990-01" and str(periods[-1])[:7] == "2025-12"
    assert len(periods) == 36 * 12


def test_every_observation_row_follows_the_contract():
    catalog = _catalog()
    by_id = {entry["id"]: entry for entry in catalog["indicators"]}
    seen: dict[tuple, str] = {}
    problems = []
    for row in _rows():
        where = f"{row['_file']}:{row['_line']}"
        key = tuple(row[c] for c in ("date", "indicator", "value", "source", "note"))
        if key in seen:
            problems.append(f"{where} duplicates {seen[key]}")
        seen[key] = where
        entry = by_id.get(row["indicator"])
        if entry is None:
            problems.append(f"{where} unknown indicator {row['indicator']!r}")
            continue
        day = dt.date.fromisoformat(row["date"])
        end = entry.get("coverage_end", catalog["observed_through"])
        if not entry["coverage_start"] <= day <= end:
            problems.append(f"{where} date {day} outside coverage")
        value = float(row["value"])
        if entry["kind"] == "count" and (not row["value"].isdigit()):
            problems.append(f"{where} count {row['value']!r} is not a non-negative integer")
        if not math.isfinite(value) or (entry.get("transform") == "log" and value <= 0):
            problems.append(f"{where} bad value {row['value']!r}")
        if not row["source"].strip():
            problems.append(f"{where} empty source")
    assert not problems, "\n".join(problems)


def test_only_the_ingestion_adapter_writes_nk_launch_rows():
    for row in _rows():
        if row["indicator"] in ("nk_missile_launches", "nk_icbm_launches"):
            assert row["_file"] == "cns_missiles.csv", f"{row['_file']}:{row['_line']}"


def test_the_six_nuclear_tests_are_exactly_right():
    rows = [row for row in _rows() if row["indicator"] == "nk_nuclear_tests"]
    assert sorted(row["date"] for row in rows) == NUCLEAR_TESTS
    assert all(row["value"] == "1" for row in rows)


def test_yearly_nk_missile_counts_equal_the_cns_database():
    path = OBSERVATIONS / "cns_missiles.csv"
    assert path.exists(), (
        f"{path} is missing: write it with `forecast data ingest cns EXPORT.csv --data data` from the CNS export"
    )
    rows = _rows()
    assert _yearly(rows, "nk_missile_launches") == CNS_MISSILES_PER_YEAR
    assert _yearly(rows, "nk_icbm_launches") == CNS_ICBMS_PER_YEAR


def test_expected_cns_counts_match_the_reference_copy():
    if not CNS_REFERENCE.exists():
        pytest.skip(f"CNS reference copy not found at {CNS_REFERENCE}; the hard-coded counts stand alone")
    missiles: collections.Counter[int] = collections.Counter()
    icbms: collections.Counter[int] = collections.Counter()
    with CNS_REFERENCE.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            year = int(row["date"][:4])
            if 1990 <= year <= 2025:
                missiles[year] += 1
                icbms[year] += row["missile_type"] == "ICBM"
    assert dict(sorted(missiles.items())) == CNS_MISSILES_PER_YEAR
    assert {y: n for y, n in sorted(icbms.items()) if n} == CNS_ICBMS_PER_YEAR


def test_labels_are_valid_and_do_not_overlap():
    with (DATA / "labels.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["start", "end", "scenario", "confidence", "rationale", "source"]
        labels = list(reader)
    spans = []
    for row in labels:
        start = dt.date.fromisoformat(row["start"] + "-01" if len(row["start"]) == 7 else row["start"])
        end = _month_end(row["end"]) if len(row["end"]) == 7 else dt.date.fromisoformat(row["end"])
        assert start <= end <= dt.date(2025, 12, 31) and start >= dt.date(1990, 1, 1)
        assert row["scenario"] in SCENARIOS
        assert 0 < float(row["confidence"]) <= 1
        assert row["rationale"].strip() and row["source"].strip()
        spans.append((start, end))
    spans.sort()
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert end < next_start
    labelled_months = sum((e.year - s.year) * 12 + e.month - s.month + 1 for s, e in spans)
    assert labelled_months < 0.5 * 36 * 12, "most of the record must stay unlabelled"


def test_the_record_shows_the_documented_episodes():
    rows = _rows()
    meetings = _yearly(rows, "trilateral_meetings")
    disputes = _yearly(rows, "history_disputes")
    exercises = _yearly(rows, "trilateral_exercises")
    # TCOG years: trilateral meetings every year 1999-2003.
    assert all(meetings.get(year, 0) >= 1 for year in range(1999, 2004))
    # 2019 crisis: the busiest year of history disputes in the record.
    assert disputes[2019] == max(disputes.values())
    # Post-Camp-David: more trilateral exercises in 2023-2025 than in all earlier years together.
    assert sum(exercises.get(y, 0) for y in range(2023, 2026)) > sum(n for y, n in exercises.items() if y < 2023)
    # The 2012-08..2015-04 freeze has a lower monthly rate of ROK-Japan defence exchanges than the
    # post-Camp-David months 2023-08..2025-12, and TCOG years a higher rate of trilateral meetings than 2004-2012.
    assert _monthly_rate(rows, "rok_japan_defence_exchanges", "2012-08", "2015-04") < _monthly_rate(
        rows, "rok_japan_defence_exchanges", "2023-08", "2025-12"
    )
    assert _monthly_rate(rows, "trilateral_meetings", "1999-04", "2003-12") > 2 * _monthly_rate(
        rows, "trilateral_meetings", "2004-01", "2012-12"
    )


def test_us_force_levels_are_plausible_dmdc_totals():
    for indicator, low, high in (("us_forces_korea", 20_000, 45_000), ("us_forces_japan", 35_000, 60_000)):
        rows = [row for row in _rows() if row["indicator"] == indicator]
        years = {int(row["date"][:4]) for row in rows}
        assert years == set(range(1990, 2026)), indicator
        values = [float(row["value"]) for row in rows]
        assert low <= min(values) and max(values) <= high, indicator
