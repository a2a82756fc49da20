"""Shared fixtures: a small valid data directory written into a temporary folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

# the command line keeps compiled code in the user's cache directory; the tests (and the commands they start)
# must not write there, and tests/test_compile_cache.py switches it on where it is the subject
os.environ["FORECAST_COMPILE_CACHE"] = "off"

#: Catalog of the tiny dataset: two count signals (``talks`` is the relations marker), one level signal
#: (``troops``, the US marker) and one count driver, all covered from 2020-01-01 to observed_through 2021-12-31.
TINY_CATALOG = """\
schema_version = 1
observed_through = 2021-12-31

[[indicators]]
id = "talks"
name = "Bilateral defence talks"
description = "Bilateral defence meetings and exchanges."
unit = "events"
kind = "count"
role = "signal"
group = "bilateral"
direction = { us = "?", relations = "+" }
marker = "relations"
coverage_start = 2020-01-01
source = "Test ministry press releases"
coding_rule = "One meeting = one event."

[[indicators]]
id = "disputes"
name = "History disputes"
description = "Official protests over history and territory."
unit = "events"
kind = "count"
role = "signal"
group = "history"
direction = { us = "?", relations = "-" }
coverage_start = 2020-01-01
source = "Test foreign ministry statements"
coding_rule = "One protested act = one event."

[[indicators]]
id = "troops"
name = "Forward-deployed troops"
description = "Personnel stationed abroad on the report date."
unit = "persons"
kind = "level"
role = "signal"
group = "posture"
direction = { us = "+", relations = "?" }
marker = "us"
coverage_start = 2020-01-01
transform = "log"
source = "Test personnel reports"
source_url = "https://example.org/personnel"
coding_rule = "One row per quarterly report."

[[indicators]]
id = "launches"
name = "Missile launches"
description = "Missiles launched."
unit = "missiles"
kind = "count"
role = "driver"
group = "threat"
direction = { us = "?", relations = "?" }
coverage_start = 2020-01-01
coverage_end = 2021-12-31
source = "Test missile database"
coding_rule = "One missile = one event."
"""

#: Signal observations, 2020-01..2021-12 (header = line 1).
TINY_SIGNALS = """\
date,indicator,value,source,note
2020-01-15,talks,1,Ministry release 1,first meeting
2020-01-20,talks,2,Ministry release 2,two working-level meetings
2020-03-03,disputes,1,Statement 1,
2020-06-30,troops,28500,Report Q2 2020,
2020-09-30,troops,28400,Report Q3 2020,
2020-12-31,troops,28300,Report Q4 2020,
2021-02-11,talks,1,Ministry release 3,"ministers meet, Seoul"
2021-03-31,troops,28200,Report Q1 2021,
2021-07-07,disputes,2,Statement 2,two protests
2021-07-08,disputes,1,Statement 3,
2021-11-30,talks,1,Ministry release 4,
2021-12-31,troops,28100,Report Q4 2021,
"""

#: Driver observations.
TINY_DRIVERS = """\
date,indicator,value,source
2020-03-02,launches,2,Missile database
2020-03-21,launches,1,Missile database
2021-01-05,launches,4,Missile database
2021-12-31,launches,1,Missile database
"""

#: Two analyst labels, one with whole months and one with days.
TINY_LABELS = """\
start,end,scenario,confidence,rationale,source
2020-01,2020-06,trilateral,0.8,Regular trilateral meetings,Test communiques
2021-07-01,2021-12-31,bilateral_alliances,0.6,"Talks frozen, alliances kept",Test reports
"""


def write_tiny_data_dir(root: Path) -> Path:
    """Write the tiny valid data directory under ``root`` and return it.

    Parameters
    ----------
    root : pathlib.Path
        An existing directory; ``root / "data"`` is created.

    Returns
    -------
    pathlib.Path
        The data directory (``catalog.toml``, ``observations/signals.csv``, ``observations/drivers.csv``,
        ``labels.csv``).
    """
    data = root / "data"
    (data / "observations").mkdir(parents=True)
    (data / "catalog.toml").write_text(TINY_CATALOG, encoding="utf-8")
    (data / "observations" / "signals.csv").write_text(TINY_SIGNALS, encoding="utf-8")
    (data / "observations" / "drivers.csv").write_text(TINY_DRIVERS, encoding="utf-8")
    (data / "labels.csv").write_text(TINY_LABELS, encoding="utf-8")
    return data


def raw_rows(data_dir: Path) -> list[dict[str, str]]:
    """Every row of ``data_dir/observations/*.csv`` as read by the csv module (text, no validation)."""
    rows = []
    for path in sorted((data_dir / "observations").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A small valid data directory: 3 signals (2 counts, 1 level), 1 driver, 2020-01..2021-12, 2 labels."""
    return write_tiny_data_dir(tmp_path)
