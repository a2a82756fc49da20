"""Tests of forecast.observations: every problem class in observation and label files, with file, line, column."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CATALOG, TINY_LABELS, TINY_SIGNALS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.catalog import load_catalog
from forecast.errors import DataValidationError
from forecast.observations import load_labels, load_observations

HEADER = "date,indicator,value,source,note\n"


def _catalog(tmp_path: Path):
    path = tmp_path / "catalog.toml"
    path.write_text(TINY_CATALOG, encoding="utf-8")
    return load_catalog(path)


def _obs_dir(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "observations"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return tmp_path


def _obs_problems(tmp_path: Path, files: dict[str, str | bytes]) -> list:
    catalog = _catalog(tmp_path)
    with pytest.raises(DataValidationError) as info:
        load_observations(_obs_dir(tmp_path, files), catalog)
    return info.value.problems


def _where(problems) -> set[tuple[str, int | None, str | None]]:
    return {(Path(p.file).name, p.line, p.column) for p in problems}


def test_valid_rows_load_with_types_lines_and_files(tmp_path):
    catalog = _catalog(tmp_path)
    obs = load_observations(_obs_dir(tmp_path, {"s.csv": TINY_SIGNALS}), catalog)
    assert list(obs.columns) == ["date", "indicator", "value", "source", "note", "file", "line"]
    assert obs["date"].dtype == "datetime64[ns]"
    assert obs["value"].dtype == float
    assert len(obs) == TINY_SIGNALS.count("\n") - 1
    # line numbers point back at the text: header = line 1
    lines = TINY_SIGNALS.splitlines()
    for row in obs.itertuples():
        assert lines[row.line - 1].startswith(f"{row.date:%Y-%m-%d},{row.indicator},")
    quoted = obs[obs["note"].str.contains("Seoul")]
    assert quoted["note"].item() == "ministers meet, Seoul"


def test_note_column_is_optional_and_bom_tolerated(tmp_path):
    catalog = _catalog(tmp_path)
    text = "\ufeffdate,indicator,value,source\n2020-02-01,talks,1,src\n"
    obs = load_observations(_obs_dir(tmp_path, {"a.csv": text}), catalog)
    assert obs["note"].tolist() == [""] and obs["line"].tolist() == [2]


def test_every_row_problem_reported_at_once_with_line_and_column(tmp_path):
    rows = [
        "2021-02-30,talks,1,src,impossible day",        # 2
        "03/02/2021,talks,1,src,bad format",            # 3
        "2019-12-31,talks,1,src,before coverage",       # 4
        "2022-01-01,talks,1,src,after observed_through",  # 5
        "2020-05-01,talkz,1,src,unknown indicator",     # 6
        "2020-05-01,talks,-1,src,negative",             # 7
        "2020-05-01,talks,1.5,src,fraction",            # 8
        "2020-05-01,talks,NaN,src,nan",                 # 9
        "2020-05-01,talks,inf,src,inf",                 # 10
        "2020-05-01,talks,,src,empty",                  # 11
        "2020-05-01,talks,one,src,text",                # 12
        "2020-05-01,troops,0,src,log of zero",          # 13
        "2020-05-01,talks,1, ,blank source",            # 14
        "2020-05-01,talks,1,src,ok",                    # 15
        "2020-05-01,talks,1,src,ok",                    # 16 duplicate of 15
        "2020-05-01,talks,1,src",                       # 17 too few fields
    ]
    problems = _obs_problems(tmp_path, {"bad.csv": HEADER + "\n".join(rows) + "\n"})
    expected = {
        ("bad.csv", 2, "date"), ("bad.csv", 3, "date"), ("bad.csv", 4, "date"), ("bad.csv", 5, "date"),
        ("bad.csv", 6, "indicator"), ("bad.csv", 7, "value"), ("bad.csv", 8, "value"), ("bad.csv", 9, "value"),
        ("bad.csv", 10, "value"), ("bad.csv", 11, "value"), ("bad.csv", 12, "value"), ("bad.csv", 13, "value"),
        ("bad.csv", 14, "source"), ("bad.csv", 16, None), ("bad.csv", 17, None),
    }
    assert _where(problems) == expected
    assert len(problems) == len(expected)
    by_line = {p.line: p for p in problems}
    assert "calendar day" in by_line[2].message and by_line[2].value == "2021-02-30"
    assert "YYYY-MM-DD" in by_line[3].message
    assert "coverage_start" in by_line[4].message
    assert "observed_through" in by_line[5].message
    assert "line 15" in by_line[16].message  # both line numbers of the duplicate
    assert 'transform = "log"' in by_line[13].message and "> 0" in by_line[13].message  # rejected, not dropped
    assert all(p.fix for p in problems)


def test_duplicates_across_files_name_both(tmp_path):
    row = "2020-05-01,talks,1,src,same\n"
    problems = _obs_problems(tmp_path, {"a.csv": HEADER + row, "b.csv": HEADER + row})
    (p,) = problems
    assert Path(p.file).name == "b.csv" and p.line == 2 and "a.csv, line 2" in p.message


def test_same_day_events_told_apart_by_note_are_not_duplicates(tmp_path):
    catalog = _catalog(tmp_path)
    text = HEADER + "2020-05-01,talks,1,src,morning\n2020-05-01,talks,1,src,evening\n"
    assert len(load_observations(_obs_dir(tmp_path, {"a.csv": text}), catalog)) == 2


def test_date_after_coverage_end(tmp_path):
    text = TINY_CATALOG.replace("coverage_end = 2021-12-31", "coverage_end = 2021-06-30")
    (tmp_path / "catalog.toml").write_text(text, encoding="utf-8")
    catalog = load_catalog(tmp_path / "catalog.toml")
    body = "date,indicator,value,source\n2021-07-01,launches,1,db\n"
    with pytest.raises(DataValidationError) as info:
        load_observations(_obs_dir(tmp_path, {"d.csv": body}), catalog)
    (p,) = info.value.problems
    assert (p.line, p.column) == (2, "date") and "coverage_end" in p.message


@pytest.mark.parametrize(
    ("header", "columns"),
    [
        ("date,indicator,source,note", {"value"}),                   # missing column
        ("date,indicator,value,source,note,extra", {"extra"}),       # extra column
        ("date,indicator,value,source,note,note", {"note"}),         # repeated column
        ("Date,indicator,value,source", {"date", "Date"}),           # wrong case: missing + unknown
    ],
)
def test_header_problems_name_the_column_on_line_1(tmp_path, header, columns):
    problems = _obs_problems(tmp_path, {"h.csv": header + "\n2020-02-01,talks,1,src,x\n"})
    assert {p.column for p in problems} == columns
    assert {p.line for p in problems} == {1}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        (HEADER, "no rows"),
        ("date,indicator,value,source\n2020-01-01,talks,1,\"unclosed\n", "malformed"),
        ("date,indicator\x00,value,source\n", "NUL"),
    ],
)
def test_empty_and_malformed_files(tmp_path, content, needle):
    problems = _obs_problems(tmp_path, {"e.csv": content})
    assert any(needle in p.message for p in problems), problems
    assert all(Path(p.file).name == "e.csv" for p in problems)


def test_problems_in_several_files_are_all_reported(tmp_path):
    problems = _obs_problems(tmp_path, {
        "a.csv": HEADER + "2020-02-30,talks,1,src,\n",
        "b.csv": "",
        "c.csv": (HEADER + "2020-02-01,talks,1,Bilatéral,\n").encode("latin-1"),
    })
    assert {Path(p.file).name for p in problems} == {"a.csv", "b.csv", "c.csv"}


def test_latin1_bytes_say_where_and_how_to_convert(tmp_path):
    text = HEADER + "2020-02-01,talks,1,src,\n2020-02-02,talks,1,Séoul,\n"
    (p,) = _obs_problems(tmp_path, {"l.csv": text.encode("latin-1")})
    assert p.line == 3 and "UTF-8" in p.message and "UTF-8" in p.fix


def test_utf16_is_recognised(tmp_path):
    (p,) = _obs_problems(tmp_path, {"u.csv": (HEADER + "2020-02-01,talks,1,src,\n").encode("utf-16")})
    assert "UTF-16" in p.message and "UTF-8" in p.fix


def test_no_rows_at_all_and_non_csv_files_are_ignored_with_a_warning(tmp_path, caplog):
    problems = _obs_problems(tmp_path, {"readme.txt": "notes"})
    assert any("no rows" in p.message for p in problems)
    assert any("readme.txt" in r.getMessage() for r in caplog.records)


def test_missing_observations_folder(tmp_path):
    catalog = _catalog(tmp_path)
    with pytest.raises(DataValidationError, match="does not exist"):
        load_observations(tmp_path, catalog)


# Labels -----------------------------------------------------------------------------------------------------------

LABEL_HEADER = "start,end,scenario,confidence,rationale,source\n"


def _labels_problems(tmp_path: Path, content: str | bytes) -> list:
    path = tmp_path / "labels.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataValidationError) as info:
        load_labels(path)
    return info.value.problems


def test_labels_load_months_as_whole_months(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(TINY_LABELS, encoding="utf-8")
    labels = load_labels(path)
    assert list(labels.columns) == ["start", "end", "scenario", "confidence", "rationale", "source", "line"]
    first = labels.iloc[0]
    assert first["start"] == pd.Timestamp("2020-01-01") and first["end"] == pd.Timestamp("2020-06-30")
    assert labels["line"].tolist() == [2, 3]
    assert labels["confidence"].tolist() == [0.8, 0.6]


def test_missing_or_header_only_labels_mean_no_labels(tmp_path):
    assert load_labels(tmp_path / "labels.csv").empty
    (tmp_path / "labels.csv").write_text(LABEL_HEADER, encoding="utf-8")
    assert load_labels(tmp_path / "labels.csv").empty


def test_every_label_problem_at_once(tmp_path):
    rows = [
        "2020-01,2020-06,trilateral,0.8,r,s",            # 2 ok, overlapped by 3
        "2020-06-15,2020-08,trilateral,0.8,r,s",         # 3 overlaps 2
        "2021-01,2021-02,alliance,0.5,r,s",              # 4 unknown scenario
        "2021-03,2021-04,multilateral,0,r,s",            # 5 confidence 0
        "2021-05,2021-05,multilateral,1.2,r,s",          # 6 confidence > 1
        "2021-06,2021-06,multilateral,nan,r,s",          # 7 confidence NaN
        "2021-08,2021-07,multilateral,0.5,r,s",          # 8 end before start
        "2021-09-31,2021-10,multilateral,0.5,r,s",       # 9 impossible day
        "2021/11,2021-11,multilateral,0.5,r,s",          # 10 bad format
        "2021-12,2021-12,multilateral,0.5, ,",           # 11 empty rationale and source
        "2022-13,2022-13,multilateral,0.5,r,s",          # 12 impossible month
    ]
    problems = _labels_problems(tmp_path, LABEL_HEADER + "\n".join(rows) + "\n")
    where = {(p.line, p.column) for p in problems}
    expected = {(3, "start"), (4, "scenario"), (5, "confidence"), (6, "confidence"), (7, "confidence"),
                (8, "end"), (9, "start"), (10, "start"), (11, "rationale"), (11, "source"), (12, "start"),
                (12, "end")}
    assert where == expected
    overlap = next(p for p in problems if p.line == 3)
    assert "line 2" in overlap.message and "2 and 3" in overlap.fix


def test_label_header_and_encoding_problems(tmp_path):
    problems = _labels_problems(tmp_path, "start,end,scenario,confidence,rationale\n")
    assert [p.column for p in problems] == ["source"]
    problems = _labels_problems(tmp_path, (LABEL_HEADER + "2020-01,2020-02,trilateral,0.5,é,s\n").encode("latin-1"))
    assert "UTF-8" in problems[0].message
    assert _labels_problems(tmp_path, "")[0].message.startswith("the file is empty")


# Property tests ---------------------------------------------------------------------------------------------------

_TOKENS = ["2020-01-01", "talks", "1", "x", "", '"', ",", "2021-02-30", "troops", "-3", "inf", "\n", "date", "value"]


def _cached_catalog(tmp_path: Path):
    """The tiny catalog, written once per test function (Hypothesis reuses ``tmp_path`` across examples)."""
    if not (tmp_path / "catalog.toml").exists():
        return _catalog(tmp_path)
    return load_catalog(tmp_path / "catalog.toml")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300),
                         st.lists(st.lists(st.sampled_from(_TOKENS), max_size=6), max_size=8)
                         .map(lambda rows: HEADER + "\n".join(",".join(r) for r in rows))))
def test_loaders_raise_only_data_validation_errors(tmp_path, content):
    catalog = _cached_catalog(tmp_path)
    folder = tmp_path / "observations"
    folder.mkdir(exist_ok=True)
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    (folder / "fuzz.csv").write_bytes(data)
    (tmp_path / "labels.csv").write_bytes(data)
    for load in (lambda: load_observations(tmp_path, catalog), lambda: load_labels(tmp_path / "labels.csv")):
        try:
            result = load()
        except DataValidationError as exc:
            assert exc.problems and all(p.fix for p in exc.problems)
        else:
            assert isinstance(result, pd.DataFrame)


_day = st.dates(min_value=pd.Timestamp("2020-01-01").date(), max_value=pd.Timestamp("2021-12-31").date())
_count_row = st.tuples(_day, st.sampled_from(["talks", "disputes", "launches"]), st.integers(0, 50))
_level_row = st.tuples(_day, st.just("troops"), st.floats(1.0, 1e6, allow_nan=False, allow_infinity=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(_count_row, _level_row), min_size=1, max_size=40),
       note=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12))
def test_valid_generated_rows_always_load_with_their_values(tmp_path, rows, note):
    catalog = _cached_catalog(tmp_path)
    folder = tmp_path / "observations"
    folder.mkdir(exist_ok=True)
    lines = [f"{d.isoformat()},{ind},{v!r},\"src, {i}\",\"{note.replace(chr(34), chr(34) * 2)}\""
             for i, (d, ind, v) in enumerate(rows)]
    (folder / "gen.csv").write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    obs = load_observations(tmp_path, catalog)
    assert len(obs) == len(rows)
    by_line = obs.set_index("line")
    for i, (d, ind, v) in enumerate(rows):
        got = by_line.loc[i + 2]
        assert got["indicator"] == ind and got["date"] == pd.Timestamp(d)
        assert math.isclose(got["value"], float(v), rel_tol=1e-12)
        assert got["note"] == note
    assert np.all(np.isfinite(obs["value"]))


def test_line_numbers_count_physical_lines_with_crlf_and_multiline_notes(tmp_path):
    text = HEADER + '2020-02-01,talks,1,src,"two\nlines"\n2020-02-30,talks,1,src,\n'
    (p,) = _obs_problems(tmp_path, {"w.csv": text.replace("\n", "\r\n").encode("utf-8")})
    assert (p.line, p.column) == (4, "date")
