"""Tests of forecast.catalog: the catalog model and every problem class, reported together with lines."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from conftest import TINY_CATALOG
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.catalog import NO_LOADING, Catalog, Direction, Indicator, load_catalog, sign_value
from forecast.errors import DataValidationError


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "catalog.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def _problems(path: Path) -> list:
    with pytest.raises(DataValidationError) as info:
        load_catalog(path)
    return info.value.problems


def test_valid_catalog_loads_in_order_with_roles_and_coverage(tmp_path):
    catalog = load_catalog(_write(tmp_path, TINY_CATALOG))
    assert isinstance(catalog, Catalog)
    assert catalog.ids == ("talks", "disputes", "troops", "launches")
    assert [i.id for i in catalog.signals] == ["talks", "disputes", "troops"]
    assert [i.id for i in catalog.drivers] == ["launches"]
    assert catalog.observed_through == dt.date(2021, 12, 31)
    assert catalog.get("troops").level_transform == "log"
    assert catalog.get("talks").level_transform == ""
    # coverage_stop defaults to observed_through when coverage_end is absent
    assert catalog.get("talks").coverage_end is None
    assert catalog.get("talks").coverage_stop == dt.date(2021, 12, 31)
    assert catalog.text == TINY_CATALOG
    with pytest.raises(KeyError, match="talks"):
        catalog.get("nope")


def test_indicators_are_frozen(tmp_path):
    indicator = load_catalog(_write(tmp_path, TINY_CATALOG)).get("talks")
    with pytest.raises(Exception, match="frozen"):
        indicator.kind = "level"  # type: ignore[misc]
    assert isinstance(indicator, Indicator)


def test_missing_field_is_reported_at_the_entry_with_the_field_as_column(tmp_path):
    text = TINY_CATALOG.replace('unit = "persons"\n', "")
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1
    (p,) = problems
    assert p.column == "unit" and "lacks" in p.message and "troops" in p.message
    assert p.line == _line_of(text, 'id = "troops"')
    assert p.fix.startswith("add it")


def test_every_catalog_problem_is_reported_at_once_with_lines(tmp_path):
    text = (
        TINY_CATALOG
        .replace('kind = "level"', 'kind = "levels"')                              # bad value
        .replace('coding_rule = "One meeting = one event."',
                 'coding_rule = "One meeting = one event."\ncolour = "red"')        # unknown field
        .replace('id = "disputes"', 'id = "talks"')                                 # duplicate id
        .replace('direction = { us = "?", relations = "-" }',
                 'direction = { us = "?", relations = "-" }\nmarker = "relations"')  # second marker
        .replace("coverage_end = 2021-12-31", "coverage_end = 2022-01-31")          # after observed_through
    )
    problems = _problems(_write(tmp_path, text))
    found = {(p.line, p.column) for p in problems}
    assert (_line_of(text, 'kind = "levels"'), "kind") in found
    assert (_line_of(text, "colour"), "colour") in found
    assert (_line_of(text, 'id = "talks"', 2), "id") in found
    assert (_line_of(text, 'marker = "relations"', 2), "marker") in found
    assert (_line_of(text, "coverage_end = 2022-01-31"), "coverage_end") in found
    assert len(problems) == 5
    assert all(p.file == str(tmp_path / "catalog.toml") and p.fix for p in problems)


def test_coverage_end_before_start_names_coverage_end(tmp_path):
    text = TINY_CATALOG.replace("coverage_end = 2021-12-31", "coverage_end = 2019-12-31")
    (p,) = _problems(_write(tmp_path, text))
    assert p.column == "coverage_end" and "before coverage_start" in p.message
    assert p.line == _line_of(text, "coverage_end = 2019-12-31")


def test_quoted_date_is_a_problem(tmp_path):
    text = TINY_CATALOG.replace("coverage_start = 2020-01-01", 'coverage_start = "2020-01-01"', 1)
    (p,) = _problems(_write(tmp_path, text))
    assert p.column == "coverage_start" and "TOML date" in p.message and p.value == "2020-01-01"


@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        ('id = "talks"', 'id = "Talks-1"', "id"),
        ('direction = { us = "?", relations = "+" }', 'direction = { us = "?", relations = "up" }',
         "direction.relations"),
        ('direction = { us = "?", relations = "+" }', 'direction = { us = "?" }', "direction.relations"),
        ('marker = "relations"', 'marker = "both"', "marker"),
        ('transform = "log"', 'transform = "sqrt"', "transform"),
        ('name = "Bilateral defence talks"', 'name = "  "', "name"),
        ('role = "signal"', 'role = "cause"', "role"),
    ],
)
def test_bad_values_name_their_field(tmp_path, old, new, column):
    text = TINY_CATALOG.replace(old, new, 1)
    problems = _problems(_write(tmp_path, text))
    assert [p.column for p in problems] == [column]


def test_transform_on_a_count_and_a_level_driver_are_problems(tmp_path):
    text = TINY_CATALOG.replace('marker = "relations"', 'marker = "relations"\ntransform = "log"', 1)
    text = text.replace('kind = "count"\nrole = "driver"', 'kind = "level"\nrole = "driver"')
    problems = _problems(_write(tmp_path, text))
    assert {p.column for p in problems} == {"transform", "kind"}
    assert len(problems) == 2


def test_sign_zero_means_no_loading_and_is_coded_apart_from_unknown(tmp_path):
    text = TINY_CATALOG.replace('direction = { us = "?", relations = "-" }',
                                'direction = { us = "0", relations = "-" }')
    catalog = load_catalog(_write(tmp_path, text))
    disputes = next(i for i in catalog.indicators if i.id == "disputes")
    talks = next(i for i in catalog.indicators if i.id == "talks")
    assert disputes.direction.us == "0" and talks.direction.us == "?"
    assert Direction.as_int("0") == NO_LOADING not in (Direction.as_int("?"), 1, -1)
    assert [sign_value(Direction.as_int(s)) for s in "+-?0"] == [1, -1, 0, 0]
    assert [Direction.as_sign(Direction.as_int(s)) for s in "+-?0"] == list("+-?0")


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        # a marker that its own factor does not move
        ('direction = { us = "+", relations = "?" }', 'direction = { us = "0", relations = "?" }', "'us' marker"),
        # a signal that neither factor moves
        ('direction = { us = "?", relations = "-" }', 'direction = { us = "0", relations = "0" }', "neither factor"),
        # a driver (its direction does not enter the model)
        ('direction = { us = "?", relations = "?" }', 'direction = { us = "?", relations = "0" }', "drivers"),
    ],
)
def test_sign_zero_where_it_cannot_apply_is_a_problem_on_direction(tmp_path, old, new, needle):
    text = TINY_CATALOG.replace(old, new, 1)
    (p,) = _problems(_write(tmp_path, text))
    assert p.column == "direction" and needle in p.message
    assert p.line == _line_of(text, new)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ('schema_version = 1\nobserved_through = 2021-12-31\n[[indicators]\nid = "x"\n', "TOML"),
        ("schema_version = 1\nobserved_through = 2021-12-31\n", "no [[indicators]]"),
    ],
)
def test_empty_or_unparsable_catalogs(tmp_path, content, needle):
    problems = _problems(_write(tmp_path, content))
    assert any(needle in p.message for p in problems)


def test_toml_syntax_error_gives_a_line(tmp_path):
    text = TINY_CATALOG.replace('unit = "events"', "unit = events", 1)
    (p,) = _problems(_write(tmp_path, text))
    assert p.line == _line_of(text, "unit = events")


def test_latin1_and_utf16_catalogs_say_save_as_utf8(tmp_path):
    latin = TINY_CATALOG.replace("Bilateral", "Bilatéral").encode("latin-1")
    (p,) = _problems(_write(tmp_path, latin))
    assert "UTF-8" in p.message and "UTF-8" in p.fix
    assert p.line == _line_of(TINY_CATALOG, "Bilateral")
    (p,) = _problems(_write(tmp_path, TINY_CATALOG.encode("utf-16")))
    assert "UTF-8" in p.fix


def test_missing_catalog_file(tmp_path):
    (p,) = _problems(tmp_path / "catalog.toml")
    assert "does not exist" in p.message


def test_top_level_problems(tmp_path):
    text = TINY_CATALOG.replace("schema_version = 1", "schema_version = 2\nowner = 'me'").replace(
        "observed_through = 2021-12-31", "observed_through = '2021-12-31'")
    problems = _problems(_write(tmp_path, text))
    assert {p.column for p in problems} == {"schema_version", "owner", "observed_through"}


def test_utf8_bom_is_tolerated(tmp_path):
    catalog = load_catalog(_write(tmp_path, b"\xef\xbb\xbf" + TINY_CATALOG.encode("utf-8")))
    assert len(catalog) == 4


def test_coverage_stop_is_not_a_catalog_field(tmp_path):
    text = TINY_CATALOG.replace("coverage_end = 2021-12-31", "coverage_stop = 2021-12-31")
    (p,) = _problems(_write(tmp_path, text))
    assert p.column == "coverage_stop" and p.line == _line_of(text, "coverage_stop")


_LINES = TINY_CATALOG.splitlines(keepends=True)


@settings(max_examples=80, deadline=None)
@given(content=st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    # the valid catalog with random lines dropped and one line replaced by arbitrary text
    st.tuples(st.sets(st.integers(0, len(_LINES) - 1), max_size=6), st.integers(0, len(_LINES) - 1),
              st.text(max_size=30))
    .map(lambda t: "".join(t[2] + "\n" if i == t[1] else line for i, line in enumerate(_LINES) if i not in t[0])),
))
def test_catalog_loader_raises_only_data_validation_errors(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), content)
        try:
            catalog = load_catalog(path)
        except DataValidationError as exc:
            assert exc.problems and all(p.fix and p.file == str(path) for p in exc.problems)
        else:
            assert all(i.coverage_stop is not None for i in catalog)
