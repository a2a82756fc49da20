"""Observation CSVs and the analyst-label CSV: reading and validation.

Files are decoded as UTF-8 (a byte-order mark is tolerated) and parsed with the standard :mod:`csv` module into
strings, so nothing is silently coerced and every row keeps its 1-based line number (the header is line 1).
Checks are vectorised with pandas. Every problem in every file is collected and raised at once as one
:class:`~forecast.errors.DataValidationError`.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.catalog import Catalog
from forecast.errors import DataValidationError, Problem
from forecast.scenarios import SCENARIOS

logger = logging.getLogger(__name__)

#: Required observation columns, in the canonical order.
OBSERVATION_COLUMNS: tuple[str, ...] = ("date", "indicator", "value", "source")
#: Optional observation columns.
OPTIONAL_OBSERVATION_COLUMNS: tuple[str, ...] = ("note",)
#: Label columns, all required.
LABEL_COLUMNS: tuple[str, ...] = ("start", "end", "scenario", "confidence", "rationale", "source")

_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_MONTH_RE = r"^\d{4}-\d{2}$"
_HEADER_OBS = "date,indicator,value,source,note"
_HEADER_LABELS = ",".join(LABEL_COLUMNS)


@dataclass(frozen=True)
class _Table:
    """A CSV file read as strings: its rows with their line numbers, or the problems that stopped reading."""

    frame: pd.DataFrame  # string columns + "line"
    columns: tuple[str, ...]


def read_text_file(path: Path, file: str, problems: list[Problem]) -> str | None:
    """Read a data file as UTF-8 text (a BOM is dropped), or append why it cannot be read and return None.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    file : str
        The file's name as reported in problems.
    problems : list of Problem
        Problems found are appended here (unreadable file, UTF-16, invalid UTF-8 with its line).

    Returns
    -------
    str or None
        The text, or None when it could not be read.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(file, None, None, None, f"cannot read the file ({exc.strerror})",
                                "check the path and its permissions"))
        return None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.append(Problem(file, None, None, None, "the file is UTF-16 text, not UTF-8",
                                "save it as UTF-8 (in a spreadsheet: Save as → CSV UTF-8)"))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.append(Problem(file, line, None, repr(raw[exc.start: exc.start + 4]),
                                f"the file is not valid UTF-8 ({exc.reason} at byte {exc.start}; perhaps Latin-1 "
                                "or Windows-1252)",
                                "save it as UTF-8 (in a spreadsheet: Save as → CSV UTF-8; or `iconv -f latin1 "
                                "-t utf-8`)"))
        return None


def _parse_csv(text: str, file: str, required: tuple[str, ...], optional: tuple[str, ...], header_hint: str,
               problems: list[Problem], allow_no_rows: bool) -> _Table | None:
    """Parse CSV text into a string frame with a ``line`` column; header problems stop the file."""
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        problems.append(Problem(file, line, None, None, "the file contains NUL bytes; it is not a text CSV file",
                                "save it as CSV UTF-8 text"))
        return None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[list[str]] = []
    starts: list[int] = []
    header: list[str] | None = None
    header_line = 1
    previous_end = 0
    try:
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue  # blank line
            if header is None:
                header, header_line = record, start
                continue
            records.append(record)
            starts.append(start)
    except csv.Error as exc:
        problems.append(Problem(file, reader.line_num or None, None, None, f"malformed CSV: {exc}",
                                "close every double-quoted field and quote fields that contain commas or quotes"))
        return None
    if header is None:
        problems.append(Problem(file, None, None, None, "the file is empty (no header)",
                                f"start the file with the header line {header_hint}"))
        return None
    names = [h.strip() for h in header]
    bad_header = False
    allowed = set(required) | set(optional)
    for name in required:
        if name not in names:
            problems.append(Problem(file, header_line, name, ",".join(header), f"the header lacks the column {name!r}",
                                    f"use the header {header_hint}"))
            bad_header = True
    for position, name in enumerate(names):
        if name not in allowed:
            problems.append(Problem(file, header_line, name or f"#{position + 1}", ",".join(header),
                                    f"unknown column {name!r}",
                                    f"remove it; the allowed columns are {header_hint}"))
            bad_header = True
        elif names.index(name) != position:
            problems.append(Problem(file, header_line, name, ",".join(header), f"the column {name!r} appears twice",
                                    "keep one"))
            bad_header = True
    if bad_header:
        return None
    if not records and not allow_no_rows:
        problems.append(Problem(file, None, None, None, "the file has a header but no rows",
                                "add rows or delete the file"))
        return None
    width = len(names)
    good = []
    good_lines = []
    for record, line in zip(records, starts, strict=True):
        if len(record) != width:
            problems.append(Problem(file, line, None, ",".join(record),
                                    f"the row has {len(record)} fields but the header has {width}",
                                    "quote fields that contain commas with double quotes, and give every row "
                                    "one value per header column"))
            continue
        good.append(record)
        good_lines.append(line)
    frame = pd.DataFrame(good, columns=names, dtype=object)
    for name in optional:
        if name not in frame:
            frame[name] = ""
    frame["line"] = np.asarray(good_lines, dtype=np.int64)
    return _Table(frame=frame, columns=tuple(names))


def _emit(problems: list[Problem], file: str, frame: pd.DataFrame, mask: pd.Series | np.ndarray, column: str,
          message: str, fix: str, value_column: str | None = None) -> None:
    """Add one problem per row of ``frame`` where ``mask`` holds."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    values = frame[value_column or column].to_numpy()[mask]
    lines = frame["line"].to_numpy()[mask]
    for line, value in zip(lines, values, strict=True):
        problems.append(Problem(file, int(line), column, str(value), message, fix))


def _parse_day(text: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse YYYY-MM-DD text: (dates, badly formatted mask, impossible-day mask)."""
    stripped = text.str.strip()
    shape_ok = stripped.str.match(_DATE_RE).fillna(False).to_numpy(dtype=bool)
    parsed = pd.to_datetime(stripped.where(shape_ok, None), format="%Y-%m-%d", errors="coerce")
    impossible = shape_ok & parsed.isna().to_numpy()
    return parsed, ~shape_ok, impossible


def read_observation_file(path: str | Path, catalog: Catalog | None, problems: list[Problem],
                          unchecked_ids: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Read one observation CSV, appending its problems to ``problems``.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file.
    catalog : Catalog or None
        The validated catalog; None skips the checks that need it (indicator ids, coverage, kinds).
    problems : list of Problem
        Problems found are appended here.
    unchecked_ids : frozenset of str, optional
        Ids of catalog entries that failed validation: their rows get only the checks that need no catalog.

    Returns
    -------
    pandas.DataFrame
        The rows that passed every check, columns as in :func:`load_observations`.
    """
    file = str(path)
    text = read_text_file(Path(path), file, problems)
    empty = _empty_observations()
    if text is None:
        return empty
    table = _parse_csv(text, file, OBSERVATION_COLUMNS, OPTIONAL_OBSERVATION_COLUMNS, _HEADER_OBS, problems,
                       allow_no_rows=False)
    if table is None or table.frame.empty:
        return empty
    frame = table.frame
    n_before = len(problems)

    dates, bad_shape, impossible = _parse_day(frame["date"])
    _emit(problems, file, frame, bad_shape, "date", "the date is not written YYYY-MM-DD",
          "write the day as YYYY-MM-DD, e.g. 2023-08-18 (if only the month is known, use the 1st and say "
          "'day approximate' in note)")
    _emit(problems, file, frame, impossible, "date", "the date is not a real calendar day",
          "correct the day (e.g. February has 28 or 29 days)")
    date_ok = ~(bad_shape | impossible)

    indicator = frame["indicator"].str.strip()
    value_text = frame["value"].str.strip()
    numbers = pd.to_numeric(value_text.where(value_text != "", None), errors="coerce").astype(float)
    empty_value = (value_text == "").to_numpy()
    not_number = numbers.isna().to_numpy() & ~empty_value & ~value_text.str.lower().isin(["nan", "-nan", "+nan"])
    non_finite = ~empty_value & ~not_number & ~np.isfinite(numbers.to_numpy())
    _emit(problems, file, frame, empty_value, "value", "the value is empty",
          "write the number: 1 for one event, the measurement for a level")
    _emit(problems, file, frame, not_number, "value", "the value is not a number",
          "write a plain number with a dot as decimal separator, e.g. 1 or 28500")
    _emit(problems, file, frame, non_finite, "value", "the value is NaN or infinite",
          "write a finite number, or delete the row if there is no measurement")
    value_ok = ~(empty_value | not_number | non_finite)

    source_blank = (frame["source"].str.strip() == "").to_numpy()
    _emit(problems, file, frame, source_blank, "source", "the source is empty",
          "name where the row comes from (institution and document, or outlet and date)")

    if catalog is not None:
        known = indicator.isin(list(catalog.ids)).to_numpy()
        unchecked = indicator.isin(list(unchecked_ids)).to_numpy()
        ids = ", ".join(catalog.ids)
        _emit(problems, file, frame, ~known & ~unchecked, "indicator", "unknown indicator",
              f"use an id from {catalog.path or 'catalog.toml'} ({ids}) or add a catalog entry")
        meta = pd.DataFrame(
            {
                "kind": [i.kind for i in catalog],
                "transform": [i.level_transform for i in catalog],
                "start": pd.to_datetime([i.coverage_start for i in catalog]),
                "stop": pd.to_datetime([i.coverage_stop or catalog.observed_through for i in catalog]),
            },
            index=list(catalog.ids),
        ).reindex(indicator.to_numpy())
        kind = meta["kind"].to_numpy()
        values = numbers.to_numpy()
        is_count = known & (kind == "count") & value_ok
        is_level = known & (kind == "level") & value_ok
        with np.errstate(invalid="ignore"):
            negative = is_count & (values < 0)
            fractional = is_count & ~negative & (values != np.floor(values))
            nonpositive_log = is_level & (meta["transform"].to_numpy() == "log") & (values <= 0)
        _emit(problems, file, frame, negative, "value", "a count cannot be negative",
              "write the number of events (0 or more)")
        _emit(problems, file, frame, fractional, "value", "a count must be a whole number",
              "write the number of events as an integer, e.g. 1")
        _emit(problems, file, frame, nonpositive_log, "value", "this level indicator has transform = \"log\" and "
              "needs values > 0", "correct the measurement, or use transform = \"identity\" in the catalog")
        observed_through = pd.Timestamp(catalog.observed_through)
        in_scope = known & date_ok
        after = date_ok & (dates > observed_through).to_numpy()
        before_start = in_scope & ~after & (dates < meta["start"].to_numpy()).to_numpy()
        after_end = in_scope & ~after & (dates > meta["stop"].to_numpy()).to_numpy()
        _emit(problems, file, frame, after, "date",
              f"the date is after observed_through ({catalog.observed_through.isoformat()})",
              "raise observed_through in catalog.toml once the period is complete, or correct the date")
        _emit(problems, file, frame, before_start, "date", "the date is before the indicator's coverage_start",
              "correct the date, or move coverage_start of this indicator earlier in catalog.toml")
        _emit(problems, file, frame, after_end, "date", "the date is after the indicator's coverage_end",
              "correct the date, or move coverage_end of this indicator later in catalog.toml")

    if len(problems) > n_before:
        bad_lines = {p.line for p in problems[n_before:]}
        keep = ~frame["line"].isin(bad_lines).to_numpy()
    else:
        keep = np.ones(len(frame), dtype=bool)
    out = pd.DataFrame(
        {
            "date": dates.to_numpy()[keep].astype("datetime64[ns]"),
            "indicator": indicator.to_numpy()[keep].astype(object),
            "value": numbers.to_numpy()[keep],
            "source": frame["source"].to_numpy()[keep].astype(object),
            "note": frame["note"].to_numpy()[keep].astype(object),
            "file": file,
            "line": frame["line"].to_numpy()[keep],
        }
    )
    # Keep the raw text of every column for the duplicate check across files.
    out.attrs["raw"] = frame.loc[keep, ["date", "indicator", "value", "source", "note"]].reset_index(drop=True)
    return out


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Problems ordered by file, then line (whole-file problems first), keeping the check order within a line.

    Parameters
    ----------
    problems : list of Problem
        Problems in the order they were found.

    Returns
    -------
    list of Problem
        The same problems, sorted for reading.
    """
    files = list(dict.fromkeys(p.file for p in problems))
    return sorted(problems, key=lambda p: (files.index(p.file), p.line or 0))


def _empty_observations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.Series([], dtype="datetime64[ns]"),
            "indicator": pd.Series([], dtype=object),
            "value": pd.Series([], dtype=float),
            "source": pd.Series([], dtype=object),
            "note": pd.Series([], dtype=object),
            "file": pd.Series([], dtype=object),
            "line": pd.Series([], dtype=np.int64),
        }
    )


def observation_files(data_dir: str | Path) -> list[Path]:
    """The observation CSV files of a data directory, sorted by name; other files are skipped with a warning.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory.

    Returns
    -------
    list of pathlib.Path
        ``observations/*.csv``, sorted.
    """
    folder = Path(data_dir) / "observations"
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() == ".csv":
            files.append(path)
        else:
            logger.warning("ignoring %s: only *.csv files in observations/ are read", path)
    return files


def collect_observations(data_dir: str | Path, catalog: Catalog | None, problems: list[Problem],
                         unchecked_ids: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Read every observation file of ``data_dir``, appending all problems to ``problems``.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory.
    catalog : Catalog or None
        The validated catalog (or its sound entries), or None if it could not be read: catalog-dependent
        checks are then skipped.
    problems : list of Problem
        Problems found are appended here.
    unchecked_ids : frozenset of str, optional
        Ids of catalog entries that failed validation (their rows are not reported as unknown indicators).

    Returns
    -------
    pandas.DataFrame
        The valid rows, columns as in :func:`load_observations`, sorted by indicator, date, file and line.
    """
    folder = Path(data_dir) / "observations"
    if not folder.is_dir():
        problems.append(Problem(str(folder), None, None, None, "the observations folder does not exist",
                                "create observations/ with at least one CSV file (see data/README.md)"))
        return _empty_observations()
    paths = observation_files(data_dir)
    n_before = len(problems)
    frames = [read_observation_file(path, catalog, problems, unchecked_ids) for path in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        if len(problems) == n_before:
            problems.append(Problem(str(folder), None, None, None, "the observations folder has no rows",
                                    f"add a CSV file with the header {_HEADER_OBS} and at least one row"))
        return _empty_observations()
    raw = pd.concat([f.attrs["raw"] for f in frames], ignore_index=True)
    for f in frames:
        f.attrs = {}
    obs = pd.concat(frames, ignore_index=True)
    duplicated = raw.duplicated(keep="first").to_numpy()
    if duplicated.any():
        first_of = raw.groupby(list(raw.columns), sort=False, dropna=False).ngroup().to_numpy()
        first_index = pd.Series(np.arange(len(raw))).groupby(first_of).transform("min").to_numpy()
        for index in np.flatnonzero(duplicated):
            first = first_index[index]
            problems.append(Problem(
                obs.at[index, "file"], int(obs.at[index, "line"]), None, None,
                f"exact duplicate of {obs.at[first, 'file']}, line {int(obs.at[first, 'line'])}",
                "delete one of the two rows, or if they are two real events tell them apart in note",
            ))
        obs = obs.loc[~duplicated]
    return obs.sort_values(["indicator", "date", "file", "line"], kind="stable").reset_index(drop=True)


def load_observations(data_dir: str | Path, catalog: Catalog) -> pd.DataFrame:
    """Read and validate every ``observations/*.csv`` of a data directory.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory.
    catalog : Catalog
        The validated catalog of the same directory.

    Returns
    -------
    pandas.DataFrame
        Columns ``date`` (datetime64[ns]), ``indicator``, ``value`` (float), ``source``, ``note``, ``file`` and
        ``line`` (1-based, header = line 1), sorted by indicator, date, file and line.

    Raises
    ------
    DataValidationError
        Listing every problem in every file.
    """
    problems: list[Problem] = []
    obs = collect_observations(data_dir, catalog, problems)
    if problems:
        raise DataValidationError(sort_problems(problems))
    return obs


def _parse_bound(text: pd.Series, end: bool) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse YYYY-MM (whole month) or YYYY-MM-DD: (dates, bad format, impossible day)."""
    stripped = text.str.strip()
    is_month = stripped.str.match(_MONTH_RE).fillna(False).to_numpy(dtype=bool)
    is_day = stripped.str.match(_DATE_RE).fillna(False).to_numpy(dtype=bool)
    day = pd.to_datetime(stripped.where(is_day, None), format="%Y-%m-%d", errors="coerce")
    month = pd.to_datetime(stripped.where(is_month, None) + "-01", format="%Y-%m-%d", errors="coerce")
    if end:
        month = month + pd.offsets.MonthEnd(0)
    parsed = day.where(is_day, month)
    bad_format = ~(is_month | is_day)
    impossible = ~bad_format & parsed.isna().to_numpy()
    return parsed, bad_format, impossible


def _empty_labels() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "start": pd.Series([], dtype="datetime64[ns]"),
            "end": pd.Series([], dtype="datetime64[ns]"),
            "scenario": pd.Series([], dtype=object),
            "confidence": pd.Series([], dtype=float),
            "rationale": pd.Series([], dtype=object),
            "source": pd.Series([], dtype=object),
            "line": pd.Series([], dtype=np.int64),
        }
    )


def collect_labels(path: str | Path, problems: list[Problem]) -> pd.DataFrame:
    """Read ``labels.csv``, appending all problems to ``problems``; a missing file means no labels.

    Parameters
    ----------
    path : str or pathlib.Path
        The labels file.
    problems : list of Problem
        Problems found are appended here.

    Returns
    -------
    pandas.DataFrame
        The valid labels, columns as in :func:`load_labels`.
    """
    path = Path(path)
    if not path.exists():
        return _empty_labels()
    file = str(path)
    text = read_text_file(path, file, problems)
    if text is None:
        return _empty_labels()
    table = _parse_csv(text, file, LABEL_COLUMNS, (), _HEADER_LABELS, problems, allow_no_rows=True)
    if table is None or table.frame.empty:
        return _empty_labels()
    frame = table.frame
    n_before = len(problems)
    start, start_format, start_impossible = _parse_bound(frame["start"], end=False)
    end, end_format, end_impossible = _parse_bound(frame["end"], end=True)
    for column, bad, impossible in (("start", start_format, start_impossible), ("end", end_format, end_impossible)):
        _emit(problems, file, frame, bad, column, f"{column} is not written YYYY-MM or YYYY-MM-DD",
              "write e.g. 2019-07 for the whole month or 2019-07-04 for a day")
        _emit(problems, file, frame, impossible, column, f"{column} is not a real calendar day or month",
              "correct the date")
    both = ~(start_format | start_impossible | end_format | end_impossible)
    reversed_ = both & (end < start).to_numpy()
    _emit(problems, file, frame, reversed_, "end", "end is before start", "make end on or after start")

    scenario = frame["scenario"].str.strip()
    _emit(problems, file, frame, ~scenario.isin(list(SCENARIOS)).to_numpy(), "scenario", "unknown scenario",
          f"use one of {', '.join(SCENARIOS)}")
    conf_text = frame["confidence"].str.strip()
    confidence = pd.to_numeric(conf_text.where(conf_text != "", None), errors="coerce").astype(float).to_numpy()
    with np.errstate(invalid="ignore"):
        bad_conf = ~np.isfinite(confidence) | (confidence <= 0) | (confidence > 1)
    _emit(problems, file, frame, bad_conf, "confidence", "confidence must be a number in (0, 1]",
          "write how sure the analyst is as a number above 0 and at most 1, e.g. 0.8")
    for column, what in (("rationale", "why the period is labelled so"), ("source", "the evidence it rests on")):
        _emit(problems, file, frame, (frame[column].str.strip() == "").to_numpy(), column, f"{column} is empty",
              f"say {what}")

    ok = both & ~reversed_
    if ok.sum() > 1:
        s = start.to_numpy()[ok]
        e = end.to_numpy()[ok]
        lines = frame["line"].to_numpy()[ok]
        overlap = np.triu((s[:, None] <= e[None, :]) & (s[None, :] <= e[:, None]), k=1)
        for i, j in zip(*np.nonzero(overlap), strict=True):
            problems.append(Problem(file, int(lines[j]), "start", frame["start"].to_numpy()[ok][j],
                                    f"this label overlaps the label on line {int(lines[i])}",
                                    f"shorten one of the labels on lines {int(lines[i])} and {int(lines[j])} so "
                                    "they do not overlap"))
    bad_lines = {p.line for p in problems[n_before:]}
    keep = ~frame["line"].isin(bad_lines).to_numpy()
    return pd.DataFrame(
        {
            "start": start.to_numpy()[keep].astype("datetime64[ns]"),
            "end": end.to_numpy()[keep].astype("datetime64[ns]"),
            "scenario": scenario.to_numpy()[keep].astype(object),
            "confidence": confidence[keep],
            "rationale": frame["rationale"].to_numpy()[keep].astype(object),
            "source": frame["source"].to_numpy()[keep].astype(object),
            "line": frame["line"].to_numpy()[keep],
        }
    ).sort_values("start", kind="stable").reset_index(drop=True)


def load_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate an analyst-label file.

    Parameters
    ----------
    path : str or pathlib.Path
        ``labels.csv``; a file that does not exist means no labels.

    Returns
    -------
    pandas.DataFrame
        Columns ``start`` and ``end`` (datetime64[ns], both inclusive days; a ``YYYY-MM`` end is the month's
        last day), ``scenario``, ``confidence`` (float), ``rationale``, ``source``, ``line``; sorted by start.

    Raises
    ------
    DataValidationError
        Listing every problem in the file.
    """
    problems: list[Problem] = []
    labels = collect_labels(path, problems)
    if problems:
        raise DataValidationError(sort_problems(problems))
    return labels
