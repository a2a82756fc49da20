"""Tests of forecast.dataset: loading a whole directory, problems from every file together, the data hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import raw_rows

from forecast.dataset import Dataset, data_sha256, load_dataset
from forecast.errors import DataValidationError


def test_load_dataset_returns_everything_validated(tiny_data_dir):
    dataset = load_dataset(tiny_data_dir)
    assert isinstance(dataset, Dataset)
    assert dataset.catalog.ids == ("talks", "disputes", "troops", "launches")
    assert len(dataset.observations) == len(raw_rows(tiny_data_dir))
    assert len(dataset.labels) == 2
    assert dataset.data_dir == tiny_data_dir
    assert dataset.sha256 == data_sha256(tiny_data_dir) and len(dataset.sha256) == 64
    with pytest.raises(AttributeError):
        dataset.sha256 = "x"  # type: ignore[misc]


def test_labels_are_optional(tiny_data_dir):
    (tiny_data_dir / "labels.csv").unlink()
    assert load_dataset(tiny_data_dir).labels.empty


def test_hash_depends_on_content_and_names_not_location(tiny_data_dir, tmp_path):
    base = data_sha256(tiny_data_dir)
    copy = shutil.copytree(tiny_data_dir, tmp_path / "elsewhere")
    assert data_sha256(copy) == base
    signals = copy / "observations" / "signals.csv"
    signals.write_text(signals.read_text(encoding="utf-8") + "2021-12-01,talks,1,extra,\n", encoding="utf-8")
    changed = data_sha256(copy)
    assert changed != base
    signals.rename(copy / "observations" / "renamed.csv")
    assert data_sha256(copy) not in {base, changed}
    (copy / "observations" / "notes.txt").write_text("ignored", encoding="utf-8")
    assert data_sha256(copy) == data_sha256(copy)  # non-CSV files are not part of the dataset
    without = data_sha256(copy)
    (copy / "labels.csv").unlink()
    assert data_sha256(copy) != without


def test_problems_of_catalog_observations_and_labels_come_together(tiny_data_dir):
    catalog = tiny_data_dir / "catalog.toml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace('unit = "persons"\n', ""), encoding="utf-8")
    signals = tiny_data_dir / "observations" / "signals.csv"
    signals.write_text(signals.read_text(encoding="utf-8") + "2021-02-29,talks,1,src,\n", encoding="utf-8")
    labels = tiny_data_dir / "labels.csv"
    labels.write_text(labels.read_text(encoding="utf-8") + "2021-01,2021-02,unknown,0.5,r,s\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_dataset(tiny_data_dir)
    files = [Path(p.file).name for p in info.value.problems]
    assert files == ["catalog.toml", "signals.csv", "labels.csv"]  # catalog first, then in reading order
    columns = [p.column for p in info.value.problems]
    assert columns == ["unit", "date", "scenario"]
    assert "problems in" in str(info.value)


def test_missing_directory_and_missing_catalog(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataValidationError) as info:
        load_dataset(tmp_path)
    messages = " ".join(p.message for p in info.value.problems)
    assert "catalog file does not exist" in messages and "observations folder does not exist" in messages


def test_summary_tables_match_theraw_rows(tiny_data_dir):
    dataset = load_dataset(tiny_data_dir)
    summary = dataset.summary()
    rows = raw_rows(tiny_data_dir)
    indicators = summary["indicators"].set_index("indicator")
    for ind in dataset.catalog:
        mine = [r for r in rows if r["indicator"] == ind.id]
        assert indicators.loc[ind.id, "rows"] == len(mine)
        if ind.kind == "count":
            assert indicators.loc[ind.id, "total"] == sum(float(r["value"]) for r in mine)
        else:
            assert pd.isna(indicators.loc[ind.id, "total"])
    per_year = summary["per_year"]
    assert list(per_year.index) == [2020, 2021]
    for year in (2020, 2021):
        talks = sum(float(r["value"]) for r in rows if r["indicator"] == "talks" and r["date"].startswith(str(year)))
        troops = sum(1 for r in rows if r["indicator"] == "troops" and r["date"].startswith(str(year)))
        assert per_year.loc[year, "talks"] == talks
        assert per_year.loc[year, "troops"] == troops
    assert len(summary["labels"]) == 2


def test_summary_marks_years_outside_coverage(tiny_data_dir):
    catalog = tiny_data_dir / "catalog.toml"
    text = catalog.read_text(encoding="utf-8").replace("coverage_start = 2020-01-01", "coverage_start = 2021-03-15", 1)
    catalog.write_text(text, encoding="utf-8")
    signals = tiny_data_dir / "observations" / "signals.csv"
    kept = [line for line in signals.read_text(encoding="utf-8").splitlines(keepends=True)
            if not (line.startswith("2020") and ",talks," in line) and not line.startswith("2021-02-11")]
    signals.write_text("".join(kept), encoding="utf-8")
    per_year = load_dataset(tiny_data_dir).summary()["per_year"]
    assert pd.isna(per_year.loc[2020, "talks"]) and per_year.loc[2021, "talks"] == 1
    assert per_year.loc[2020, "disputes"] == 1


def test_rows_are_still_checked_against_the_sound_catalog_entries(tiny_data_dir):
    catalog = tiny_data_dir / "catalog.toml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace('kind = "level"', 'kind = "levels"'),
                       encoding="utf-8")
    signals = tiny_data_dir / "observations" / "signals.csv"
    signals.write_text(signals.read_text(encoding="utf-8") + "2021-03-01,talks,1.5,src,\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_dataset(tiny_data_dir)
    where = [(Path(p.file).name, p.column) for p in info.value.problems]
    # the broken troops entry is reported once; its rows are not "unknown indicators"; talks is still checked
    assert where == [("catalog.toml", "kind"), ("signals.csv", "value")]
