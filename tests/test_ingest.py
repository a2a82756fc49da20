"""Tests of forecast.ingest (CNS and event-list adapters, merge) and the `forecast data ingest` commands."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.errors import DataValidationError
from forecast.ingest import (
    CNS_ICBMS,
    CNS_MISSILES,
    CNS_SOURCE,
    CNS_TARGET,
    Candidate,
    ObservationRow,
    detect_cns_layout,
    ingest_cns,
    ingest_events,
    load_mapping,
    merge_rows,
    read_cns_export,
)

CATALOG = """\
schema_version = 1
observed_through = 2025-12-31

[[indicators]]
id = "talks"
name = "Talks"
description = "Bilateral talks."
unit = "events"
kind = "count"
role = "signal"
group = "g"
direction = { us = "?", relations = "+" }
marker = "relations"
coverage_start = 1990-01-01
source = "Test source"
coding_rule = "One meeting = one event."

[[indicators]]
id = "troops"
name = "Troops"
description = "Troop level."
unit = "persons"
kind = "level"
role = "signal"
group = "h"
direction = { us = "+", relations = "?" }
marker = "us"
coverage_start = 1990-01-01
transform = "log"
source = "Test source"
coding_rule = "One report = one row."

[[indicators]]
id = "disputes"
name = "Disputes"
description = "History disputes."
unit = "events"
kind = "count"
role = "signal"
group = "g"
direction = { us = "?", relations = "-" }
coverage_start = 2000-01-01
source = "Test source"
coding_rule = "One dispute = one event."

[[indicators]]
id = "nk_missile_launches"
name = "Missiles"
description = "Missiles launched."
unit = "missiles"
kind = "count"
role = "driver"
group = "nk"
direction = { us = "?", relations = "?" }
coverage_start = 1990-01-01
coverage_end = 2025-06-30
source = "CNS"
coding_rule = "Missiles per UTC day."

[[indicators]]
id = "nk_icbm_launches"
name = "ICBMs"
description = "ICBMs launched."
unit = "missiles"
kind = "count"
role = "driver"
group = "nk"
direction = { us = "?", relations = "?" }
coverage_start = 1990-01-01
coverage_end = 2025-06-30
source = "CNS"
coding_rule = "ICBMs per UTC day."
"""

OTHER = """\
date,indicator,value,source,note
2020-03-02,talks,1,Test source,first talks
2020-06-30,troops,28500,Test source,report
"""

ORIGINAL_HEADER = ["F1", "Date", "Date Entered/Updated", "Launch Time (UTC)", "Missile Name", "Missile Type",
                   "Facility Name", "Confirmation Status", "Test Outcome", "Source(s)"]
REKEYED_HEADER = ["year", "date", "time", "series", "missile", "missile_name", "missile_type", "facility",
                  "landing", "apogee", "distance", "bearing", "outcome", "glide", "description"]

# (date, name, type) per missile; two before coverage, two after coverage_end 2025-06-30.
MISSILES = [
    ("1984-04-09", "Scud-B", "SRBM"),
    ("1986-05", "Unknown", "Unknown"),
    ("1990-05", "Nodong", "MRBM"),
    ("2017-11-28", "Hwasong-15", "ICBM"),
    ("2022-03-24", "Hwasong-17", "ICBM"),
    ("2022-03-24", "KN-23", "SRBM"),
    ("2022-03-24", "KN-23", "SRBM"),
    ("2022-11-03", "Hwasong-17", "ICBM"),
    ("2022-11-03", "Hwasong-17", "ICBM"),
    ("2022-11-03", "Unknown", "Unknown"),
    ("2025-05-08", "KN-25", "SRBM"),
    ("2025-07-01", "KN-25", "SRBM"),
    ("2026-01-04", "Hwasong-11", "SRBM"),
]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def rekeyed_rows(missiles=MISSILES) -> list[list[str]]:
    return [[d[:4], d, "unknown", "", n.lower(), n, t, "site", "sea", "100", "500", "90", "success", "", "text"]
            for d, n, t in missiles]


def original_rows(missiles=MISSILES) -> list[list[str]]:
    return [[str(i), d if len(d) == 10 else d + "-01", "2020-01-01", "", n, t, "site",
             "Unconfirmed" if n == "Unknown" else "Confirmed", "Success", "ref"]
            for i, (d, n, t) in enumerate(missiles, start=1)]


def make_data_dir(root: Path) -> Path:
    data = root / "data"
    (data / "observations").mkdir(parents=True)
    (data / "catalog.toml").write_text(CATALOG, encoding="utf-8")
    (data / "observations" / "other.csv").write_text(OTHER, encoding="utf-8")
    return data


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_data_dir(tmp_path)


@pytest.fixture
def rekeyed(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "cns.csv", REKEYED_HEADER, rekeyed_rows())


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def expected_counts(missiles, start="1990-01-01", end="2025-06-30"):
    """Independent per-day counts of the fixture: {(day, indicator): n} inside [start, end]."""
    days = [(d if len(d) == 10 else d + "-01", t) for d, _, t in missiles]
    inside = [(d, t) for d, t in days if start <= d <= end]
    out = Counter((d, CNS_MISSILES) for d, _ in inside)
    out.update((d, CNS_ICBMS) for d, t in inside if t == "ICBM")
    return dict(out)


# --------------------------------------------------------------------------------------------------------------
# CNS parsing


def test_detects_both_layouts():
    assert detect_cns_layout(ORIGINAL_HEADER) == "CNS spreadsheet"
    assert detect_cns_layout(REKEYED_HEADER) == "re-keyed CSV"
    assert detect_cns_layout(["date", "indicator", "value"]) is None


def test_reads_rekeyed_layout_with_month_only_dates(rekeyed):
    layout, missiles = read_cns_export(rekeyed)
    assert layout == "re-keyed CSV"
    assert len(missiles) == len(MISSILES)
    nodong = missiles[2]
    assert (nodong.date, nodong.month_only, nodong.name, nodong.type) == (dt.date(1990, 5, 1), True, "Nodong", "MRBM")
    assert missiles[3].is_icbm and not missiles[5].is_icbm
    assert [m.line for m in missiles[:2]] == [2, 3]


def test_reads_original_layout_csv(tmp_path):
    path = write_csv(tmp_path / "orig.csv", ORIGINAL_HEADER, original_rows())
    layout, missiles = read_cns_export(path)
    assert layout == "CNS spreadsheet"
    assert [m.date.isoformat() for m in missiles] == [d if len(d) == 10 else d + "-01" for d, _, _ in MISSILES]
    assert [m.unconfirmed for m in missiles] == [n == "Unknown" for _, n, _ in MISSILES]


def test_reads_original_layout_xlsx(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Missile Tests"
    sheet.append(ORIGINAL_HEADER)
    for row in original_rows():
        cells: list[object] = list(row)
        cells[1] = dt.datetime.fromisoformat(row[1])  # Excel stores real dates
        cells[0] = float(row[0])
        sheet.append(cells)
    path = tmp_path / "cns.xlsx"
    book.save(path)
    layout, missiles = read_cns_export(path)
    assert layout == "CNS spreadsheet"
    assert [m.date.isoformat() for m in missiles] == [r[1] for r in original_rows()]
    assert missiles[0].line == 2


def test_both_layouts_give_the_same_counts(tmp_path):
    a = make_data_dir(tmp_path / "a")
    b = make_data_dir(tmp_path / "b")
    ingest_cns(write_csv(tmp_path / "k.csv", REKEYED_HEADER, rekeyed_rows()), a)
    ingest_cns(write_csv(tmp_path / "o.csv", ORIGINAL_HEADER, original_rows()), b)

    def counts(d):
        return {(r["date"], r["indicator"]): int(r["value"]) for r in read_rows(d / "observations" / CNS_TARGET)}

    assert counts(a) == counts(b) == expected_counts(MISSILES)


# --------------------------------------------------------------------------------------------------------------
# CNS aggregation, coverage, idempotency, revisions


def test_per_day_aggregation_and_icbm_counting(data_dir, rekeyed):
    report = ingest_cns(rekeyed, data_dir)
    rows = read_rows(data_dir / "observations" / CNS_TARGET)
    got = {(r["date"], r["indicator"]): int(r["value"]) for r in rows}
    assert got == expected_counts(MISSILES)
    assert all(r["source"] == CNS_SOURCE for r in rows)
    assert len(report.merge.added) == len(rows)
    notes = {(r["date"], r["indicator"]): r["note"] for r in rows}
    assert notes[("2022-11-03", CNS_MISSILES)] == "3 missiles: 2× Hwasong-17 (ICBM), unidentified"
    assert notes[("2022-11-03", CNS_ICBMS)] == "2 ICBMs: 2× Hwasong-17"
    assert "month only" in notes[("1990-05-01", CNS_MISSILES)]
    assert not any(r["value"] == "0" for r in rows)  # no ICBM row on days without ICBMs


def test_coverage_and_through_are_skipped_and_reported(data_dir, rekeyed):
    report = ingest_cns(rekeyed, data_dir, through=dt.date(2022, 12, 31))
    dates = {r["date"] for r in read_rows(data_dir / "observations" / CNS_TARGET)}
    assert min(dates) == "1990-05-01" and max(dates) == "2022-11-03"
    skipped = report.skipped
    before = [v for k, v in skipped.items() if "before coverage_start" in k]
    assert before == [(2, 2)]  # 1984-04-09 and 1986-05: two days, two missiles
    after = [v for k, v in skipped.items() if "after --through" in k]
    assert after == [(1, 1)]  # 2025-05-08 (within coverage but after --through)
    beyond = [v for k, v in skipped.items() if "after coverage_end" in k]
    assert beyond == [(2, 2)]  # 2025-07-01 and 2026-01-04
    assert report.skipped_rows == 5
    assert "Skipped:" in report.format()


def test_ingest_twice_adds_nothing_and_keeps_bytes(data_dir, rekeyed):
    ingest_cns(rekeyed, data_dir)
    target = data_dir / "observations" / CNS_TARGET
    first = target.read_bytes()
    mtime = target.stat().st_mtime_ns
    again = ingest_cns(rekeyed, data_dir)
    assert (len(again.merge.added), len(again.merge.revised)) == (0, 0)
    assert again.merge.unchanged == len(read_rows(target))
    assert not again.written
    assert target.read_bytes() == first
    assert target.stat().st_mtime_ns == mtime
    assert "up to date" in again.format()


def test_revisions_are_applied_and_reported(data_dir, rekeyed, tmp_path):
    ingest_cns(rekeyed, data_dir)
    revised = [m for m in MISSILES if m[0] != "2017-11-28"]  # CNS drops a day: the row must stay
    revised = [(d, n, "IRBM" if (d, n) == ("2022-03-24", "Hwasong-17") else t) for d, n, t in revised]
    revised.append(("2022-11-03", "KN-25", "SRBM"))  # one more missile that day
    revised.append(("2023-02-18", "Hwasong-15", "ICBM"))  # a new day
    path = write_csv(tmp_path / "cns2.csv", REKEYED_HEADER, rekeyed_rows(revised))
    report = ingest_cns(path, data_dir)
    rows = read_rows(data_dir / "observations" / CNS_TARGET)
    got = {(r["date"], r["indicator"]): int(r["value"]) for r in rows}
    changes = {(v.new.date, v.new.indicator): (v.old.value, v.new.value) for v in report.merge.revised}
    assert changes[("2022-11-03", CNS_MISSILES)] == ("3", "4")
    assert changes[("2022-03-24", CNS_ICBMS)] == ("1", "0")  # reclassified: revised to 0, not deleted
    assert ("2022-03-24", CNS_MISSILES) in changes  # same count, new summary
    assert {(r.date, r.indicator) for r in report.merge.added} == {("2023-02-18", CNS_MISSILES),
                                                                  ("2023-02-18", CNS_ICBMS)}
    assert got[("2017-11-28", CNS_MISSILES)] == 1 and got[("2017-11-28", CNS_ICBMS)] == 1  # never deleted
    assert {(r.date, r.indicator) for r in report.merge.kept} == {("2017-11-28", CNS_MISSILES),
                                                                 ("2017-11-28", CNS_ICBMS)}
    text = report.format()
    assert "Revised rows:" in text and "2023-02-18 nk_icbm_launches = 1" in text
    assert ingest_cns(path, data_dir).merge.changed is False  # and the revised state is a fixed point


def test_dry_run_writes_nothing(data_dir, rekeyed):
    report = ingest_cns(rekeyed, data_dir, dry_run=True)
    assert report.merge.added and not report.written
    assert not (data_dir / "observations" / CNS_TARGET).exists()
    assert "Dry run" in report.format()


def test_new_rows_are_listed_in_the_report(data_dir, rekeyed):
    text = ingest_cns(rekeyed, data_dir).format()
    for (day, indicator), n in expected_counts(MISSILES).items():
        assert f"{day} {indicator} = {n}" in text


# --------------------------------------------------------------------------------------------------------------
# Malformed exports


def test_missing_columns_are_all_reported(data_dir, tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["year", "missile_name", "missile"], [["2020", "KN-23", "x"]])
    with pytest.raises(DataValidationError) as info:
        ingest_cns(path, data_dir)
    problems = info.value.problems
    assert {p.column for p in problems} == {"date", "missile_type"}
    assert all(p.file == str(path) and p.line == 1 and p.fix for p in problems)
    # with a date column, a missing type column and bad dates are reported together
    path = write_csv(tmp_path / "bad2.csv", ["date", "missile_name"], [["2020-01-32", "KN-23"]])
    with pytest.raises(DataValidationError) as info:
        ingest_cns(path, data_dir)
    assert [(p.line, p.column) for p in info.value.problems] == [(1, "missile_type"), (2, "date")]
    assert not (data_dir / "observations" / CNS_TARGET).exists()


def test_bad_dates_are_all_reported_and_nothing_is_written(data_dir, rekeyed, tmp_path):
    ingest_cns(rekeyed, data_dir)
    before = (data_dir / "observations" / CNS_TARGET).read_bytes()
    rows = rekeyed_rows()
    rows[3][1] = "2017-02-30"
    rows[6][1] = "next tuesday"
    rows[8][1] = ""
    path = write_csv(tmp_path / "bad.csv", REKEYED_HEADER, rows)
    with pytest.raises(DataValidationError) as info:
        ingest_cns(path, data_dir)
    problems = info.value.problems
    assert [(p.line, p.column, p.value) for p in problems] == [
        (5, "date", "2017-02-30"), (8, "date", "next tuesday"), (10, "date", "")]
    assert all("YYYY-MM-DD" in p.fix for p in problems)
    assert (data_dir / "observations" / CNS_TARGET).read_bytes() == before


def test_not_a_cns_file_and_not_utf8(data_dir, tmp_path):
    other = write_csv(tmp_path / "x.csv", ["a", "b"], [["1", "2"]])
    with pytest.raises(DataValidationError, match="not a CNS missile test export"):
        ingest_cns(other, data_dir)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(REKEYED_HEADER).encode() + b"\n2020,2020-01-01,,,,Pukgukso\xe9,SLBM\n")
    with pytest.raises(DataValidationError) as info:
        ingest_cns(latin, data_dir)
    assert info.value.problems[0].line == 2 and "UTF-8" in info.value.problems[0].fix
    with pytest.raises(DataValidationError, match="not found"):
        ingest_cns(tmp_path / "missing.csv", data_dir)


def test_catalog_without_the_cns_indicators(tmp_path, rekeyed):
    data = make_data_dir(tmp_path / "d")
    text = CATALOG.replace('id = "nk_icbm_launches"', 'id = "nk_icbms"')
    (data / "catalog.toml").write_text(text, encoding="utf-8")
    with pytest.raises(DataValidationError, match="nk_icbm_launches"):
        ingest_cns(rekeyed, data)


def test_merged_directory_is_validated_before_writing(data_dir, rekeyed):
    target = data_dir / "observations" / CNS_TARGET
    # an existing row the dataset check rejects (negative count) must stop the ingest before anything is written
    target.write_text("date,indicator,value,source,note\n2024-01-02,nk_missile_launches,-1,x,hand-made\n",
                      encoding="utf-8")
    before = target.read_bytes()
    with pytest.raises(DataValidationError) as info:
        ingest_cns(rekeyed, data_dir)
    assert any(p.file.endswith(CNS_TARGET) and str(data_dir) in p.file for p in info.value.problems)
    assert target.read_bytes() == before


# --------------------------------------------------------------------------------------------------------------
# Merge


def row(date, indicator="talks", value="1", note="", source="s"):
    return ObservationRow(date, indicator, value, source, note)


def test_merge_by_key_never_deletes():
    existing = [row("2020-01-01", note="a"), row("2020-01-01", note="b"), row("2020-02-01", value="2")]
    result = merge_rows(existing, [Candidate(row("2020-01-01", note="a")), Candidate(row("2020-02-01", value="3")),
                                   Candidate(row("2020-03-01"))])
    assert result.unchanged == 1
    assert [(r.old.value, r.new.value) for r in result.revised] == [("2", "3")]
    assert result.added == [row("2020-03-01")]
    assert result.kept == [row("2020-01-01", note="b")]
    assert len(result.rows) == 4


def test_merge_ambiguous_existing_rows_is_a_problem():
    existing = [row("2020-01-01", note="a", value="1"), row("2020-01-01", note="a", value="2")]
    with pytest.raises(DataValidationError) as info:
        merge_rows(existing, [Candidate(row("2020-01-01", note="a"))], file="t.csv")
    assert info.value.problems[0].line == 2 and "3" in info.value.problems[0].message


# --------------------------------------------------------------------------------------------------------------
# Generic event lists

MAPPING = """\
[options]
category_column = "type"
note_column = "event"
default_source = "CSIS Beyond Parallel"
ignore = ["Other"]

[mapping]
Missile = "nk_missile_launches"
"History dispute" = "disputes"
Talks = "talks"
"""


def events_file(tmp_path: Path, rows: list[list[str]]) -> Path:
    return write_csv(tmp_path / "events.csv", ["date", "type", "event", "count", "source"], rows)


def test_events_are_mapped_aggregated_and_sourced(data_dir, tmp_path):
    mapping = tmp_path / "csis.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    path = events_file(tmp_path, [
        ["2021-03-25", "Missile", "two SRBMs", "2", ""],
        ["2021-03-25", "Missile", "two SRBMs", "1", "Yonhap"],
        ["2021-04-01", "Talks", "", "", "MOFA"],
        ["2021-05-05", "Other", "balloons", "", ""],
        ["1999-05-05", "History dispute", "before coverage", "", ""],
    ])
    report = ingest_events(path, mapping, data_dir)
    assert report.target.name == "events_csis.csv"
    rows = read_rows(report.target)
    assert rows == [
        {"date": "2021-03-25", "indicator": "nk_missile_launches", "value": "3",
         "source": "CSIS Beyond Parallel; Yonhap", "note": "two SRBMs"},
        {"date": "2021-04-01", "indicator": "talks", "value": "1", "source": "MOFA", "note": "Talks"},
    ]
    reasons = dict(report.skipped)
    assert reasons["category 'Other' ignored by the mapping"] == (1, 1)
    assert reasons["disputes: before coverage_start 2000-01-01"] == (1, 1)
    again = ingest_events(path, mapping, data_dir)
    assert not again.merge.changed and again.merge.unchanged == 2


def test_unknown_categories_are_problems_or_skipped(data_dir, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    path = events_file(tmp_path, [
        ["2021-03-25", "Missile", "", "", ""],
        ["2021-03-26", "Nuclear", "", "", ""],
        ["2021-03-27", "Cyber", "", "", ""],
        ["2021-03-28", "Cyber", "", "", ""],
    ])
    with pytest.raises(DataValidationError) as info:
        ingest_events(path, mapping, data_dir)
    assert [(p.line, p.column, p.value) for p in info.value.problems] == [
        (3, "type", "Nuclear"), (4, "type", "Cyber"), (5, "type", "Cyber")]
    assert not (data_dir / "observations" / "events_m.csv").exists()
    report = ingest_events(path, mapping, data_dir, skip_unmapped=True)
    assert report.skipped["category 'Cyber' not in the mapping (--skip-unmapped)"] == (2, 2)
    assert report.skipped["category 'Nuclear' not in the mapping (--skip-unmapped)"] == (1, 1)
    assert len(report.merge.added) == 1


def test_mapping_is_checked_against_the_catalog_and_for_typos(data_dir, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text('[options]\ncolour = "red"\ntarget = "../x.csv"\n\n[mapping]\nMissile = "nk_missiles"\n',
                       encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_mapping(mapping)
    assert {(p.line, p.column) for p in info.value.problems} == {(2, "colour"), (3, "target")}
    mapping.write_text('[mapping]\nMissile = "nk_missiles"\nTroops = "troops"\n', encoding="utf-8")
    path = events_file(tmp_path, [["2021-03-25", "Missile", "", "", "x"]])
    with pytest.raises(DataValidationError) as info:
        ingest_events(path, mapping, data_dir)
    messages = [(p.column, p.message) for p in info.value.problems]
    assert {p.line for p in info.value.problems if p.file == str(mapping)} == {2, 3}
    assert ("Missile", "indicator 'nk_missiles' is not in the catalog") in messages
    assert any(col == "Troops" and "level" in msg for col, msg in messages)
    assert any(p.column == "category" and p.line == 1 for p in info.value.problems)  # default column absent
    mapping.write_text("[mapping\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="not valid TOML"):
        load_mapping(mapping)


def test_event_rows_without_source_or_with_bad_counts(data_dir, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text('[options]\ncategory_column = "type"\n[mapping]\nTalks = "talks"\n', encoding="utf-8")
    path = events_file(tmp_path, [["2021-03-25", "Talks", "", "two", "x"], ["2021-03", "Talks", "", "", ""]])
    with pytest.raises(DataValidationError) as info:
        ingest_events(path, mapping, data_dir)
    assert [(p.line, p.column) for p in info.value.problems] == [(2, "count"), (3, "date"), (3, "source")]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(
    st.tuples(
        st.dates(min_value=dt.date(1985, 1, 1), max_value=dt.date(2026, 6, 30)),
        st.sampled_from(["Missile", "Talks", "History dispute", "Other"]),
        st.text(alphabet="ab ,\"'é\n", max_size=6),
        st.integers(min_value=0, max_value=4),
    ),
    min_size=1, max_size=25,
))
def test_event_ingest_is_idempotent(events):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data_dir(root)
        mapping = root / "m.toml"
        mapping.write_text(MAPPING, encoding="utf-8")
        path = events_file(root, [[d.isoformat(), c, n, str(k), ""] for d, c, n, k in events])
        first = ingest_events(path, mapping, data)
        target = data / "observations" / "events_m.csv"
        before = target.read_bytes() if target.exists() else None
        second = ingest_events(path, mapping, data)
        assert second.merge.added == [] and second.merge.revised == []
        assert (target.read_bytes() if target.exists() else None) == before
        assert second.merge.unchanged == len(first.merge.added)
        # every mapped in-coverage event count ends up in the file exactly once
        limits = {"Missile": ("1990-01-01", "2025-06-30"), "Talks": ("1990-01-01", "2025-12-31"),
                  "History dispute": ("2000-01-01", "2025-12-31")}
        expected = sum(k for d, c, _, k in events if c in limits and limits[c][0] <= d.isoformat() <= limits[c][1])
        written = sum(int(r["value"]) for r in read_rows(target)) if before is not None else 0
        assert written == expected


# --------------------------------------------------------------------------------------------------------------
# CLI

CLI = "import sys; import forecast.cli.ingest; from forecast.cli import main; main(sys.argv[1:])"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=120)


def test_cli_ok_dry_run_and_bad_input(data_dir, rekeyed, tmp_path):
    target = data_dir / "observations" / CNS_TARGET
    dry = run_cli("data", "ingest", "cns", str(rekeyed), "--data", str(data_dir), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Dry run" in dry.stdout and not target.exists()
    ok = run_cli("data", "ingest", "cns", str(rekeyed), "--data", str(data_dir), "--through", "2024-12-31")
    assert ok.returncode == 0, ok.stderr
    assert "added" in ok.stdout and target.exists()
    before = target.read_bytes()
    bad = write_csv(tmp_path / "bad.csv", REKEYED_HEADER, [["2020", "2020-13-01"] + [""] * 13])
    for args in (("cns", str(bad)), ("cns", str(rekeyed), "--through", "soon"), ("cns", str(rekeyed), "--bogus")):
        res = run_cli("data", "ingest", *args, "--data", str(data_dir))
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and ("Fix:" in res.stderr or "No such option" in res.stderr)
    assert target.read_bytes() == before


def test_cli_events(data_dir, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    path = events_file(tmp_path, [["2021-03-25", "Missile", "x", "1", ""], ["2021-03-26", "Cyber", "", "", ""]])
    res = run_cli("data", "ingest", "events", str(path), "--mapping", str(mapping), "--data", str(data_dir))
    assert res.returncode == 2 and "Cyber" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("data", "ingest", "events", str(path), "--mapping", str(mapping), "--data", str(data_dir),
                  "--skip-unmapped")
    assert res.returncode == 0, res.stderr
    assert "2021-03-25 nk_missile_launches = 1" in res.stdout
