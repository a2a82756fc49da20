"""Adapters that turn public event sources into observation rows, and their idempotent merge into a data directory.

Two adapters:

- :func:`ingest_cns` reads an export of the CNS North Korea Missile Test Database (one row per missile, UTC
  dates; CSV or XLSX, either the original CNS spreadsheet layout or the re-keyed CSV layout) and writes one row
  per UTC launch day per indicator: ``nk_missile_launches`` (missiles that day) and ``nk_icbm_launches`` (missiles
  of type ICBM that day, no row when there are none).
- :func:`ingest_events` reads a generic event list (``date`` plus a category column, optional count, note and
  source columns) and a mapping TOML file that maps categories to indicator ids.

Each adapter owns one target file under ``observations/``. New rows are merged into it by the identity key
``(date, indicator, note)``: same key and value is unchanged, a new key is added, same key with another value
(or source) is a revision. The CNS target holds exactly one row per launch day and indicator, so a CNS row whose
day summary (the note) changed is matched to the existing row of that day and reported as a revision. Rows that
are absent from the input are never deleted. The merged data directory is validated as a whole before anything is
written, and the write is atomic.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import shutil
import tempfile
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from forecast.atomic import write_text
from forecast.errors import DataValidationError, Problem

logger = logging.getLogger(__name__)

#: Columns of an observation CSV, in the order the adapters write them.
OBSERVATION_COLUMNS = ("date", "indicator", "value", "source", "note")

#: Indicator ids written by the CNS adapter.
CNS_MISSILES = "nk_missile_launches"
CNS_ICBMS = "nk_icbm_launches"
#: Source text of every row written by the CNS adapter.
CNS_SOURCE = "CNS North Korea Missile Test Database (James Martin Center for Nonproliferation Studies / NTI)"
#: Target file (under ``observations/``) of the CNS adapter.
CNS_TARGET = "cns_missiles.csv"

_ISO_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_ISO_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_UNKNOWN = {"", "unknown", "n/a", "na", "none", "?"}


# --------------------------------------------------------------------------------------------------------------
# Rows, reports


@dataclass(frozen=True)
class ObservationRow:
    """One row of an observation CSV, as the text that is written.

    Kept as text, unlike the validated rows of :mod:`forecast.observations` (numbers, dates) and the
    :class:`forecast.attribution.DataRow` of a report: merging rewrites the target file, and rows that are
    not touched must be written back exactly as they were.

    Parameters
    ----------
    date : str
        ``YYYY-MM-DD``.
    indicator : str
        Indicator id.
    value : str
        The value as written (e.g. ``"3"``).
    source : str
        Source text.
    note : str
        Free text, possibly empty.

    """

    date: str
    indicator: str
    value: str
    source: str
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity key ``(date, indicator, note)``."""
        return (self.date, self.indicator, self.note)

    def as_list(self) -> list[str]:
        """Return the row as the list of its CSV fields in :data:`OBSERVATION_COLUMNS` order."""
        return [self.date, self.indicator, self.value, self.source, self.note]


@dataclass(frozen=True)
class Candidate:
    """A row proposed by an adapter.

    Parameters
    ----------
    row : ObservationRow
        The proposed row.
    only_revise : bool
        If True the row is never added, only used to revise an existing row of the same day (the CNS adapter
        proposes a zero ICBM count for a launch day so that an ICBM later reclassified is corrected, while no
        zero rows are written for new days).

    """

    row: ObservationRow
    only_revise: bool = False


@dataclass(frozen=True)
class Revision:
    """An existing row replaced by a new version of itself."""

    old: ObservationRow
    new: ObservationRow


@dataclass
class MergeResult:
    """Outcome of merging candidate rows into the rows of a target file.

    Attributes
    ----------
    rows : list of ObservationRow
        The merged rows, sorted by date, indicator and note.
    added : list of ObservationRow
        New rows.
    revised : list of Revision
        Existing rows whose value, source or (day-matched) note changed.
    unchanged : int
        Candidates equal to an existing row.
    kept : list of ObservationRow
        Existing rows that no candidate matched; they are kept.

    """

    rows: list[ObservationRow]
    added: list[ObservationRow] = field(default_factory=list)
    revised: list[Revision] = field(default_factory=list)
    unchanged: int = 0
    kept: list[ObservationRow] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the target file must be rewritten."""
        return bool(self.added or self.revised)


@dataclass
class IngestReport:
    """What an ingest did (or, on a dry run, would do).

    Attributes
    ----------
    adapter : str
        ``"cns"`` or ``"events"``.
    input_path : pathlib.Path
        The input file.
    target : pathlib.Path
        The observation file written.
    description : str
        One line about the input (layout, number of records).
    merge : MergeResult
        The merge outcome.
    skipped : dict
        ``{reason: (rows, records)}``: rows not ingested and the input records behind them.
    dry_run : bool
        Whether writing was suppressed.
    written : bool
        Whether the target file was written.
    warnings : list of str
        Things the user should know (e.g. other files holding rows of the same indicators).

    """

    adapter: str
    input_path: Path
    target: Path
    description: str
    merge: MergeResult
    skipped: dict[str, tuple[int, int]]
    dry_run: bool
    written: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped_rows(self) -> int:
        """Number of output rows skipped (outside coverage, unmapped, …)."""
        return sum(rows for rows, _ in self.skipped.values())

    def format(self, max_rows: int | None = None) -> str:
        """Render the report as plain text.

        Parameters
        ----------
        max_rows : int, optional
            Show at most this many new and revised rows each (all by default).

        Returns
        -------
        str
            The report, ending with a newline.

        """
        m = self.merge
        lines = [
            f"Ingest ({self.adapter}) {self.input_path}: {self.description}",
            f"Target: {self.target}",
            f"added {len(m.added)}, revised {len(m.revised)}, unchanged {m.unchanged}, skipped {self.skipped_rows};"
            f" {len(m.kept)} row(s) of the target absent from this input are kept",
        ]
        if self.skipped:
            lines.append("Skipped:")
            for why, (rows, records) in self.skipped.items():
                lines.append(f"  {rows} row(s) from {records} record(s): {why}")
        if m.added:
            lines.append("New rows:")
            lines += [f"  {_show(r)}" for r in _first(m.added, max_rows)]
            lines += _more(m.added, max_rows)
        if m.revised:
            lines.append("Revised rows:")
            for rev in _first(m.revised, max_rows):
                lines.append(f"  {rev.new.date} {rev.new.indicator}:")
                lines.append(f"    was {_show(rev.old)}")
                lines.append(f"    now {_show(rev.new)}")
            lines += _more(m.revised, max_rows)
        lines += [f"Warning: {w}" for w in self.warnings]
        if self.dry_run:
            lines.append("Dry run: nothing written.")
        elif self.written:
            lines.append(f"Wrote {self.target} ({len(m.rows)} rows); the data directory validates.")
        else:
            lines.append(f"Nothing to write: {self.target} is up to date.")
        return "\n".join(lines) + "\n"


def _show(row: ObservationRow) -> str:
    return f"{row.date} {row.indicator} = {row.value}" + (f"  [{row.note}]" if row.note else "")


def _first[T](items: Sequence[T], n: int | None) -> Sequence[T]:
    return items if n is None else items[:n]


def _more(items: Sequence[object], n: int | None) -> list[str]:
    return [f"  … and {len(items) - n} more"] if n is not None and len(items) > n else []


# --------------------------------------------------------------------------------------------------------------
# Reading tables (CSV or XLSX) as text


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (1-based line or sheet row, {column: text})


def _read_table(path: Path, problems: list[Problem], what: str) -> _Table | None:
    """Read a CSV (UTF-8) or XLSX file as text cells; append problems and return None if it cannot be read."""
    if not path.is_file():
        problems.append(Problem(str(path), None, None, None, f"{what} not found", "check the path of the file"))
        return None
    if path.suffix.lower() in {".xlsx", ".xlsm"}:
        return _read_xlsx(path, problems, what)
    if path.suffix.lower() == ".xls":
        problems.append(Problem(str(path), None, None, None, "old Excel .xls files are not read",
                                "save the sheet as .xlsx or as CSV UTF-8"))
        return None
    from forecast.observations import read_text_file  # imported here: pandas only when a file is read

    text = read_text_file(path, str(path), problems)
    if text is None:
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    start = 1
    try:
        for record in reader:
            if header is None:
                header = [h.strip() for h in record]
            elif any(cell.strip() for cell in record):
                if len(record) > len(header):
                    problems.append(Problem(str(path), start, None, ",".join(record[len(header):]),
                                            f"row has {len(record)} fields but the header has {len(header)}",
                                            "quote fields that contain commas, or remove the extra fields"))
                cells = {name: (record[i].strip() if i < len(record) else "") for i, name in enumerate(header)}
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        problems.append(Problem(str(path), start, None, None, f"malformed CSV: {exc}",
                                "close the open quote or save the file again from a spreadsheet"))
        return None
    if not header or not any(header):
        problems.append(Problem(str(path), 1, None, None, f"{what} is empty (no header)",
                                "export the file again with its header row"))
        return None
    return _Table(header, rows)


def _read_xlsx(path: Path, problems: list[Problem], what: str) -> _Table | None:
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - openpyxl is installed with the toolkit
        problems.append(Problem(str(path), None, None, None, "reading .xlsx needs the openpyxl package",
                                "pip install openpyxl, or save the sheet as CSV UTF-8"))
        return None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        problems.append(Problem(str(path), None, None, None, f"cannot open the workbook: {exc}",
                                "check that the file is an .xlsx workbook, or save the sheet as CSV UTF-8"))
        return None
    try:
        sheet = book["Missile Tests"] if "Missile Tests" in book.sheetnames else book.worksheets[0]
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str]]] = []
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = [_cell_text(v) for v in values]
            if header is None:
                if any(cells):
                    header = cells
                continue
            if any(cells):
                rows.append((number, {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header)}))
    finally:
        book.close()
    if header is None:
        problems.append(Problem(str(path), 1, None, None, f"{what} is empty (no header)",
                                "export the workbook again with its header row"))
        return None
    return _Table(header, rows)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# --------------------------------------------------------------------------------------------------------------
# Catalog view


@dataclass(frozen=True)
class _Coverage:
    kind: str
    start: dt.date
    end: dt.date  # min(coverage_end, observed_through)


@dataclass(frozen=True)
class _CatalogView:
    path: Path
    observed_through: dt.date
    indicators: dict[str, _Coverage]


def _catalog_view(data_dir: Path) -> _CatalogView:
    """Read the catalog of ``data_dir`` (validated by :func:`forecast.catalog.load_catalog`)."""
    from forecast.catalog import load_catalog

    path = data_dir / "catalog.toml"
    catalog = load_catalog(path)
    through = catalog.observed_through
    indicators = {}
    for ind in catalog.indicators:
        end = ind.coverage_end if ind.coverage_end is not None else through
        indicators[ind.id] = _Coverage(str(ind.kind), ind.coverage_start, min(end, through))
    return _CatalogView(path, through, indicators)


def _coverage_reason(view: _CatalogView, indicator: str, day: dt.date, through: dt.date | None) -> str | None:
    """Return why ``day`` is outside what may be written for ``indicator``, or None if it is inside."""
    cov = view.indicators[indicator]
    if day < cov.start:
        return f"{indicator}: before coverage_start {cov.start}"
    if day > cov.end:
        if cov.end < view.observed_through:
            return f"{indicator}: after coverage_end {cov.end}"
        return f"{indicator}: after observed_through {view.observed_through} (extend the catalog to include them)"
    if through is not None and day > through:
        return f"{indicator}: after --through {through}"
    return None


# --------------------------------------------------------------------------------------------------------------
# CNS adapter


@dataclass(frozen=True)
class CnsMissile:
    """One missile (one row) of a CNS export.

    Parameters
    ----------
    line : int
        Line (CSV) or sheet row (XLSX) of the record.
    date : datetime.date
        UTC launch day (the 1st of the month when CNS gives only the month).
    month_only : bool
        Whether CNS gives only the month.
    name : str
        Missile name (``"Unknown"`` if not given).
    type : str
        Missile type as in CNS (``SRBM``, ``ICBM``, ``SLV``, ``Unknown``, …).
    unconfirmed : bool
        Whether CNS marks the test as unconfirmed (only the original layout says).

    """

    line: int
    date: dt.date
    month_only: bool
    name: str
    type: str
    unconfirmed: bool = False

    @property
    def is_icbm(self) -> bool:
        """Whether CNS classes the missile as an ICBM."""
        return self.type.upper() == "ICBM"


#: The two export layouts: name → (date column, name column, type column, confirmation column or None).
CNS_LAYOUTS: dict[str, tuple[str, str, str, str | None]] = {
    "CNS spreadsheet": ("Date", "Missile Name", "Missile Type", "Confirmation Status"),
    "re-keyed CSV": ("date", "missile_name", "missile_type", None),
}


def detect_cns_layout(header: Sequence[str]) -> str | None:
    """Return the CNS layout name for a header row, or None when it is neither layout.

    Parameters
    ----------
    header : sequence of str
        Column names of the export.

    Returns
    -------
    str or None
        ``"CNS spreadsheet"`` (columns ``Date``, ``Missile Name``, ``Missile Type``, …) or ``"re-keyed CSV"``
        (``date``, ``missile_name``, ``missile_type``, …).

    """
    names = {h.strip().lower() for h in header}
    if "missile type" in names or "missile name" in names:
        return "CNS spreadsheet"
    if "missile_type" in names or "missile_name" in names:
        return "re-keyed CSV"
    return None


def _parse_day(text: str) -> tuple[dt.date, bool] | None:
    """Parse ``YYYY-MM-DD`` (optionally with a time) or ``YYYY-MM`` (month only) to (date, month_only)."""
    m = _ISO_DAY.match(text)
    try:
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3])), False
        m = _ISO_MONTH.match(text)
        if m:
            return dt.date(int(m[1]), int(m[2]), 1), True
    except ValueError:
        return None
    return None


def read_cns_export(path: str | Path) -> tuple[str, list[CnsMissile]]:
    """Read a CNS North Korea Missile Test Database export.

    Parameters
    ----------
    path : str or pathlib.Path
        CSV (UTF-8) or XLSX export, one row per missile, UTC dates, in the original CNS spreadsheet layout or the
        re-keyed CSV layout (detected from the header).

    Returns
    -------
    layout : str
        The detected layout.
    missiles : list of CnsMissile
        One per data row, in file order.

    Raises
    ------
    DataValidationError
        Listing every problem: unreadable file, unknown layout, missing columns, empty or unparseable dates.

    """
    path = Path(path)
    problems: list[Problem] = []
    table = _read_table(path, problems, "CNS export")
    if table is None:
        raise DataValidationError(problems)
    layout = detect_cns_layout(table.header)
    if layout is None:
        raise DataValidationError([Problem(
            str(path), 1, None, ",".join(table.header)[:200],
            "not a CNS missile test export: the header has neither 'Missile Type' (CNS spreadsheet) nor "
            "'missile_type' (re-keyed CSV)",
            "export the 'Missile Tests' sheet of the CNS North Korea Missile Test Database with its header row")])
    date_col, name_col, type_col, conf_col = CNS_LAYOUTS[layout]
    by_lower = {h.strip().lower(): h for h in table.header}
    columns: dict[str, str] = {}
    for wanted in (date_col, name_col, type_col):
        if wanted.lower() in by_lower:
            columns[wanted] = by_lower[wanted.lower()]
        else:
            problems.append(Problem(str(path), 1, wanted, None,
                                    f"required column {wanted!r} of the {layout} layout is missing",
                                    f"export the file again with all columns; the header must include {wanted!r}"))
    if date_col not in columns:  # without dates nothing else can be checked
        raise DataValidationError(problems)
    conf = by_lower.get(conf_col.lower()) if conf_col else None
    if not table.rows:
        problems.append(Problem(str(path), None, None, None, "the export has a header but no rows",
                                "export the file again with its data rows"))
    missiles = []
    for line, cells in table.rows:
        raw_date = cells[columns[date_col]]
        parsed = _parse_day(raw_date)
        if parsed is None:
            problems.append(Problem(
                str(path), line, columns[date_col], raw_date,
                "empty launch date" if not raw_date else "unparseable or impossible launch date",
                "write the UTC launch day as YYYY-MM-DD (or YYYY-MM when CNS gives only the month)"))
            continue
        name = (cells[columns[name_col]] if name_col in columns else "") or "Unknown"
        mtype = (cells[columns[type_col]] if type_col in columns else "") or "Unknown"
        unconfirmed = conf is not None and cells[conf].strip().lower() == "unconfirmed"
        missiles.append(CnsMissile(line, parsed[0], parsed[1], name, mtype, unconfirmed))
    if problems:
        raise DataValidationError(problems)
    logger.info("read %d missiles from %s (%s layout)", len(missiles), path, layout)
    return layout, missiles


def _describe_missile(name: str, mtype: str) -> str:
    if name.strip().lower() in _UNKNOWN:
        return "unidentified" if mtype.strip().lower() in _UNKNOWN else f"unidentified {mtype}"
    return name if mtype.strip().lower() in _UNKNOWN else f"{name} ({mtype})"


def _summary(missiles: Sequence[CnsMissile], noun: tuple[str, str], with_type: bool) -> str:
    counts = Counter(_describe_missile(m.name, m.type if with_type else "") for m in missiles)
    parts = [f"{n}× {what}" if n > 1 else what for what, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    n = len(missiles)
    text = f"{n} {noun[0] if n == 1 else noun[1]}: " + ", ".join(parts)
    unconfirmed = sum(m.unconfirmed for m in missiles)
    if unconfirmed:
        text += f"; {unconfirmed} unconfirmed"
    if any(m.month_only for m in missiles):
        text += "; day unknown, CNS gives the month only (dated to the 1st)"
    return text


def cns_candidates(missiles: Iterable[CnsMissile], view: _CatalogView, through: dt.date | None = None,
                   ) -> tuple[list[Candidate], dict[str, tuple[int, int]]]:
    """Aggregate CNS missiles to candidate rows per UTC launch day and indicator.

    Parameters
    ----------
    missiles : iterable of CnsMissile
        Parsed export.
    view : _CatalogView
        Coverage of the indicators in the target catalog.
    through : datetime.date, optional
        Ingest nothing after this day (in addition to the catalog's coverage and observed_through).

    Returns
    -------
    candidates : list of Candidate
        ``nk_missile_launches`` rows for every launch day inside coverage; ``nk_icbm_launches`` rows for days
        with ICBMs, plus zero-valued revise-only rows for other launch days.
    skipped : dict
        ``{reason: (rows, missiles)}`` for days outside coverage.

    """
    by_day: dict[dt.date, list[CnsMissile]] = defaultdict(list)
    for m in missiles:
        by_day[m.date].append(m)
    candidates: list[Candidate] = []
    skipped: dict[str, list[int]] = {}
    for day in sorted(by_day):
        todays = by_day[day]
        icbms = [m for m in todays if m.is_icbm]
        for indicator, group, noun, with_type in ((CNS_MISSILES, todays, ("missile", "missiles"), True),
                                                  (CNS_ICBMS, icbms, ("ICBM", "ICBMs"), False)):
            reason = _coverage_reason(view, indicator, day, through)
            if reason is not None:
                if group:
                    tally = skipped.setdefault(reason, [0, 0])
                    tally[0] += 1
                    tally[1] += len(group)
                continue
            note = _summary(group, noun, with_type) if group else "0 ICBMs"
            row = ObservationRow(day.isoformat(), indicator, str(len(group)), CNS_SOURCE, note)
            candidates.append(Candidate(row, only_revise=not group))
    return candidates, {k: (v[0], v[1]) for k, v in skipped.items()}


def ingest_cns(export: str | Path, data_dir: str | Path, *, through: dt.date | None = None,
               dry_run: bool = False) -> IngestReport:
    """Ingest a CNS North Korea Missile Test Database export into ``observations/cns_missiles.csv``.

    Parameters
    ----------
    export : str or pathlib.Path
        The CNS export (CSV or XLSX), see :func:`read_cns_export`.
    data_dir : str or pathlib.Path
        Data directory (``catalog.toml``, ``observations/``); its catalog must define ``nk_missile_launches``
        and ``nk_icbm_launches``.
    through : datetime.date, optional
        Ingest no launch after this day (default: the catalog's observed_through and coverage).
    dry_run : bool
        Report without writing.

    Returns
    -------
    IngestReport
        Added, revised, unchanged and skipped rows.

    Raises
    ------
    DataValidationError
        For a bad export, a catalog without the two indicators, or a merged data directory that would not
        validate; nothing is written then.

    """
    export, data_dir = Path(export), Path(data_dir)
    view = _catalog_view(data_dir)
    _require_indicators(view, [CNS_MISSILES, CNS_ICBMS])
    layout, missiles = read_cns_export(export)
    candidates, skipped = cns_candidates(missiles, view, through)
    description = f"{layout} layout, {len(missiles)} missiles on {len({m.date for m in missiles})} days"
    return _commit("cns", export, data_dir, CNS_TARGET, candidates, skipped, description,
                   match_by_day=True, dry_run=dry_run)


def _require_indicators(view: _CatalogView, ids: Iterable[str]) -> None:
    problems = [
        Problem(str(view.path), None, "id", i, f"the catalog has no indicator {i!r}, which this adapter writes",
                f"add a count indicator with id = {i!r} to the catalog")
        for i in ids if i not in view.indicators
    ]
    problems += [
        Problem(str(view.path), _line_of_id(view.path, i), "kind", view.indicators[i].kind,
                f"indicator {i!r} must be a count to receive event counts", 'set kind = "count"')
        for i in ids if i in view.indicators and view.indicators[i].kind != "count"
    ]
    if problems:
        raise DataValidationError(problems)


def _line_of_id(path: Path, indicator: str) -> int | None:
    try:
        for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if re.match(rf'^\s*id\s*=\s*"{re.escape(indicator)}"', text):
                return number
    except (OSError, UnicodeDecodeError):
        return None
    return None


# --------------------------------------------------------------------------------------------------------------
# Generic event lists


@dataclass(frozen=True)
class EventMapping:
    """How to read a generic event list: the parsed mapping TOML file.

    Parameters
    ----------
    path : pathlib.Path
        The mapping file.
    categories : dict
        Category text → indicator id.
    ignore : tuple of str
        Categories deliberately not ingested.
    date_column, category_column : str
        Required columns of the event list.
    count_column, note_column, source_column : str or None
        Optional columns; None means "use the default column if the list has it".
    default_source : str or None
        Source text for rows whose source cell is empty or absent.
    target : str
        File name under ``observations/`` that receives the rows.

    """

    path: Path
    categories: dict[str, str]
    ignore: tuple[str, ...] = ()
    date_column: str = "date"
    category_column: str = "category"
    count_column: str | None = None
    note_column: str | None = None
    source_column: str | None = None
    default_source: str | None = None
    target: str = ""


_OPTION_KEYS = {"date_column", "category_column", "count_column", "note_column", "source_column",
                "default_source", "target", "ignore"}


def load_mapping(path: str | Path) -> EventMapping:
    """Read and check a mapping TOML file for :func:`ingest_events`.

    The file has a ``[mapping]`` table (category → indicator id) and an optional ``[options]`` table with
    ``date_column``, ``category_column``, ``count_column``, ``note_column``, ``source_column`` (column names),
    ``default_source`` (text), ``target`` (file name under ``observations/``, default
    ``events_<mapping-stem>.csv``) and ``ignore`` (list of categories not to ingest).

    Parameters
    ----------
    path : str or pathlib.Path
        The mapping file.

    Returns
    -------
    EventMapping
        The parsed mapping (indicator ids are checked against a catalog later).

    Raises
    ------
    DataValidationError
        Listing every problem in the file.

    """
    path = Path(path)
    fname = str(path)
    if not path.is_file():
        raise DataValidationError([Problem(fname, None, None, None, "mapping file not found",
                                           "check the path given to --mapping")])
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise DataValidationError([Problem(fname, None, None, None, "mapping file is not valid UTF-8",
                                           "save it as UTF-8")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise DataValidationError([Problem(fname, getattr(exc, "lineno", None), None, None,
                                           f"not valid TOML: {exc}", "fix the TOML syntax")]) from None
    lines = text.splitlines()

    def line_of(key: str) -> int | None:
        return _key_line(lines, key)

    problems: list[Problem] = []
    for key in sorted(set(data) - {"mapping", "options"}):
        problems.append(Problem(fname, line_of(key) or _table_line(lines, key), key, None,
                                f"unknown top-level entry {key!r}", "use only the [mapping] and [options] tables"))
    mapping = data.get("mapping")
    categories: dict[str, str] = {}
    if not isinstance(mapping, dict) or not mapping:
        problems.append(Problem(fname, _table_line(lines, "mapping"), "mapping", None,
                                "no [mapping] table with at least one category",
                                'add a table like:\n[mapping]\n"Yasukuni visit" = "history_disputes"'))
    else:
        for category, target in mapping.items():
            if not isinstance(target, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", target):
                problems.append(Problem(fname, line_of(category), category, str(target),
                                        "the mapped indicator id must be a text like \"history_disputes\"",
                                        "map each category to the id of a catalog indicator, in quotes"))
            else:
                categories[category.strip()] = target
    options = data.get("options", {})
    kwargs: dict[str, object] = {}
    if not isinstance(options, dict):
        problems.append(Problem(fname, line_of("options"), "options", None, "[options] must be a table",
                                "write the options as a [options] table"))
        options = {}
    for key, value in options.items():
        if key not in _OPTION_KEYS:
            problems.append(Problem(fname, line_of(key), key, None, f"unknown option {key!r}",
                                    f"use only {', '.join(sorted(_OPTION_KEYS))}"))
        elif key == "ignore":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(Problem(fname, line_of(key), key, str(value), "ignore must be a list of texts",
                                        'write e.g. ignore = ["Other Provocation"]'))
            else:
                kwargs["ignore"] = tuple(v.strip() for v in value)
        elif not isinstance(value, str) or not value.strip():
            problems.append(Problem(fname, line_of(key), key, str(value), f"{key} must be a non-empty text",
                                    f'write {key} = "…" in quotes'))
        else:
            kwargs[key] = value.strip()
    target = kwargs.get("target", f"events_{path.stem}.csv")
    assert isinstance(target, str)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.csv", target) or target == CNS_TARGET:
        problems.append(Problem(fname, line_of("target"), "target", target,
                                "target must be a plain .csv file name (no folders) other than "
                                f"{CNS_TARGET!r}, which the CNS adapter owns",
                                'write e.g. target = "events_csis.csv"'))
    kwargs["target"] = target
    both = sorted(set(categories) & set(kwargs.get("ignore", ())))  # type: ignore[arg-type]
    problems += [Problem(fname, line_of(c), c, None, "category is both mapped and ignored",
                         "remove it from [mapping] or from ignore") for c in both]
    if problems:
        raise DataValidationError(problems)
    return EventMapping(path=path, categories=categories, **kwargs)  # type: ignore[arg-type]


def _key_line(lines: Sequence[str], key: str) -> int | None:
    """Return the 1-based line of ``key = …`` (bare or quoted key) in TOML text, or None."""
    pattern = re.compile(rf'^\s*("{re.escape(key)}"|\'{re.escape(key)}\'|{re.escape(key)})\s*=')
    return next((i for i, t in enumerate(lines, start=1) if pattern.match(t)), None)


def _table_line(lines: list[str], table: str) -> int | None:
    pattern = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
    return next((i for i, t in enumerate(lines, start=1) if pattern.match(t)), None)


def event_candidates(path: str | Path, mapping: EventMapping, view: _CatalogView, *,
                     through: dt.date | None = None, skip_unmapped: bool = False,
                     ) -> tuple[list[Candidate], dict[str, tuple[int, int]], int]:
    """Read an event list and turn it into candidate rows (one per date, indicator and note).

    Parameters
    ----------
    path : str or pathlib.Path
        Event list (CSV UTF-8 or XLSX).
    mapping : EventMapping
        From :func:`load_mapping`.
    view : _CatalogView
        Coverage of the indicators in the target catalog.
    through : datetime.date, optional
        Ingest no event after this day.
    skip_unmapped : bool
        Skip (and report) categories absent from the mapping instead of failing.

    Returns
    -------
    candidates : list of Candidate
        Events with equal date, indicator and note are summed into one row.
    skipped : dict
        ``{reason: (rows, events)}``.
    n_events : int
        Number of event records read.

    Raises
    ------
    DataValidationError
        Listing every problem: missing columns, bad dates or counts, unmapped categories, mapped ids missing from
        the catalog, rows without a source.

    """
    path = Path(path)
    fname = str(path)
    problems: list[Problem] = []
    mfile = str(mapping.path)
    try:
        mapping_lines = mapping.path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        mapping_lines = []
    for category, indicator in mapping.categories.items():
        at = _key_line(mapping_lines, category)
        if indicator not in view.indicators:
            problems.append(Problem(mfile, at, category, indicator, f"indicator {indicator!r} is not in the catalog",
                                    f"use one of: {', '.join(view.indicators)}"))
        elif view.indicators[indicator].kind != "count":
            problems.append(Problem(mfile, at, category, indicator,
                                    f"indicator {indicator!r} is a level, event lists feed count indicators",
                                    "map the category to a count indicator"))
    table = _read_table(path, problems, "event list")
    if table is None:
        raise DataValidationError(problems)
    header = set(table.header)

    def column(given: str | None, default: str, required: bool) -> str | None:
        name = given or default
        if name in header:
            return name
        if required or given is not None:
            problems.append(Problem(fname, 1, name, None, f"column {name!r} is missing",
                                    f"add the column, or name the right one in [options] of {mapping.path.name}"))
        return None

    date_col = column(mapping.date_column, "date", True)
    cat_col = column(mapping.category_column, "category", True)
    count_col = column(mapping.count_column, "count", False)
    note_col = column(mapping.note_column, "note", False)
    source_col = column(mapping.source_column, "source", False)
    if date_col is None or cat_col is None:
        raise DataValidationError(problems)
    if not table.rows:
        problems.append(Problem(fname, None, None, None, "the event list has a header but no rows",
                                "add events, one per line"))
    sums: dict[tuple[str, str, str], list] = {}
    skipped: dict[str, list[int]] = {}
    unmapped: Counter[str] = Counter()
    ignore = set(mapping.ignore)
    for line, cells in table.rows:
        category = cells[cat_col]
        raw_date = cells[date_col]
        parsed = _parse_day(raw_date)
        if parsed is None or parsed[1]:
            problems.append(Problem(fname, line, date_col, raw_date,
                                    "empty date" if not raw_date else "not a calendar day YYYY-MM-DD",
                                    "write the day as YYYY-MM-DD; if only the month is known use the 1st and say "
                                    "'day approximate' in the note"))
        count = 1
        if count_col is not None and cells[count_col] != "":
            raw = cells[count_col]
            if re.fullmatch(r"\d+", raw):
                count = int(raw)
            else:
                problems.append(Problem(fname, line, count_col, raw, "count must be a whole number ≥ 0",
                                        "write the number of events, e.g. 1"))
        source = (cells[source_col] if source_col else "") or (mapping.default_source or "")
        if not source:
            problems.append(Problem(fname, line, source_col or "source", "", "no source for this event",
                                    "fill the source column, or set default_source in [options] of the mapping"))
        if category in ignore:
            tally = skipped.setdefault(f"category {category!r} ignored by the mapping", [0, 0])
            tally[0] += 1
            tally[1] += 1
            continue
        if category not in mapping.categories:
            unmapped[category] += 1
            if not skip_unmapped:
                problems.append(Problem(fname, line, cat_col, category, "category not in the mapping",
                                        f"add it to [mapping] (or to ignore in [options]) of {mapping.path.name}, "
                                        "or pass --skip-unmapped"))
            continue
        indicator = mapping.categories[category]
        if parsed is None or parsed[1] or indicator not in view.indicators:
            continue
        reason = _coverage_reason(view, indicator, parsed[0], through)
        if reason is not None:
            tally = skipped.setdefault(reason, [0, 0])
            tally[0] += 1
            tally[1] += 1
            continue
        note = (cells[note_col] if note_col else "") or category
        slot = sums.setdefault((parsed[0].isoformat(), indicator, note), [0, set()])
        slot[0] += count
        slot[1].add(source)
    if problems:
        raise DataValidationError(problems)
    for category, n in sorted(unmapped.items()):
        skipped[f"category {category!r} not in the mapping (--skip-unmapped)"] = [n, n]
    candidates = [
        Candidate(ObservationRow(date, indicator, str(total), "; ".join(sorted(sources)), note))
        for (date, indicator, note), (total, sources) in sorted(sums.items())
    ]
    return candidates, {k: (v[0], v[1]) for k, v in skipped.items()}, len(table.rows)


def ingest_events(events: str | Path, mapping: str | Path | EventMapping, data_dir: str | Path, *,
                  through: dt.date | None = None, skip_unmapped: bool = False,
                  dry_run: bool = False) -> IngestReport:
    """Ingest a generic event list into the observation file named by its mapping.

    Parameters
    ----------
    events : str or pathlib.Path
        Event list: CSV (UTF-8) or XLSX with at least a date and a category column.
    mapping : str, pathlib.Path or EventMapping
        Mapping TOML file (see :func:`load_mapping`) or an already parsed mapping.
    data_dir : str or pathlib.Path
        Data directory.
    through : datetime.date, optional
        Ingest no event after this day.
    skip_unmapped : bool
        Skip (and report) categories absent from the mapping instead of failing.
    dry_run : bool
        Report without writing.

    Returns
    -------
    IngestReport
        Added, revised, unchanged and skipped rows.

    Raises
    ------
    DataValidationError
        For a bad mapping or event list, or a merged data directory that would not validate; nothing is written.

    """
    events, data_dir = Path(events), Path(data_dir)
    parsed = mapping if isinstance(mapping, EventMapping) else load_mapping(mapping)
    view = _catalog_view(data_dir)
    candidates, skipped, n_events = event_candidates(events, parsed, view, through=through,
                                                     skip_unmapped=skip_unmapped)
    description = f"{n_events} events, mapping {parsed.path}"
    return _commit("events", events, data_dir, parsed.target, candidates, skipped, description,
                   match_by_day=False, dry_run=dry_run)


# --------------------------------------------------------------------------------------------------------------
# Merge and commit


def _read_target(path: Path) -> tuple[list[ObservationRow], list[int]]:
    if not path.exists():
        return [], []
    problems: list[Problem] = []
    table = _read_table(path, problems, "observation file")
    if table is None:
        raise DataValidationError(problems)
    if table.header not in (list(OBSERVATION_COLUMNS), list(OBSERVATION_COLUMNS[:4])):
        raise DataValidationError([Problem(str(path), 1, None, ",".join(table.header),
                                           "header is not date,indicator,value,source,note",
                                           "fix the header of the target file, or move the file aside")])
    rows = [ObservationRow(c["date"], c["indicator"], c["value"], c["source"], c.get("note", ""))
            for _, c in table.rows]
    return rows, [line for line, _ in table.rows]


def _same_value(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def merge_rows(existing: Sequence[ObservationRow], candidates: Sequence[Candidate], *, match_by_day: bool = False,
               file: str = "", lines: Sequence[int] | None = None) -> MergeResult:
    """Merge candidate rows into existing rows by the identity key ``(date, indicator, note)``.

    Parameters
    ----------
    existing : sequence of ObservationRow
        Rows of the target file.
    candidates : sequence of Candidate
        Rows proposed by an adapter; their keys must be unique.
    match_by_day : bool
        If True, a candidate whose key matches no existing row revises the existing row of the same date and
        indicator that no other candidate matched (for targets that hold one row per day and indicator).
    file : str
        Name of the target file, for problems.
    lines : sequence of int, optional
        Line numbers of the existing rows in that file, for problems (default: one line per row after the header).

    Returns
    -------
    MergeResult
        Existing rows are never dropped; new rows are added, rows with a new value, source or (day-matched)
        note are revised.

    Raises
    ------
    DataValidationError
        If a candidate key (or, with ``match_by_day``, a day) matches several existing rows.

    """
    keys = Counter(c.row.key for c in candidates)
    dupes = [k for k, n in keys.items() if n > 1]
    if dupes:
        raise ValueError(f"candidate keys must be unique, repeated: {dupes[:3]}")
    by_key: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    by_day: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(existing):
        by_key[row.key].append(i)
        by_day[(row.date, row.indicator)].append(i)
    line_of = list(lines) if lines is not None else [i + 2 for i in range(len(existing))]
    problems: list[Problem] = []
    match: dict[int, int] = {}  # candidate index → existing index
    taken: set[int] = set()
    for ci, cand in enumerate(candidates):
        hits = by_key.get(cand.row.key, [])
        if len(hits) > 1:
            problems.append(_ambiguous(file, [line_of[i] for i in hits], cand.row, "date, indicator and note"))
        elif hits:
            match[ci] = hits[0]
            taken.add(hits[0])
    if match_by_day:
        for ci, cand in enumerate(candidates):
            if ci in match:
                continue
            if len(by_key.get(cand.row.key, [])) > 1:
                continue
            hits = [i for i in by_day.get((cand.row.date, cand.row.indicator), []) if i not in taken]
            if len(hits) > 1:
                problems.append(_ambiguous(file, [line_of[i] for i in hits], cand.row, "date and indicator"))
            elif hits:
                match[ci] = hits[0]
                taken.add(hits[0])
    if problems:
        raise DataValidationError(problems)
    rows = list(existing)
    result = MergeResult(rows=rows)
    for ci, cand in enumerate(candidates):
        new = cand.row
        if ci not in match:
            if not cand.only_revise:
                rows.append(new)
                result.added.append(new)
            continue
        old = existing[match[ci]]
        if _same_value(old.value, new.value) and old.source == new.source and old.note == new.note:
            result.unchanged += 1
        else:
            rows[match[ci]] = new
            result.revised.append(Revision(old, new))
    result.kept = [row for i, row in enumerate(existing) if i not in taken]
    result.rows = sorted(rows, key=lambda r: (r.date, r.indicator, r.note))
    return result


def _ambiguous(file: str, hit_lines: list[int], row: ObservationRow, what: str) -> Problem:
    lines = ", ".join(str(n) for n in hit_lines)
    return Problem(file, hit_lines[0], None, f"{row.date} {row.indicator}",
                   f"rows {lines} share the same {what}, so the ingested row cannot tell which one to update",
                   "merge those rows into one by hand (or tell them apart by their note), then ingest again")


def render_rows(rows: Iterable[ObservationRow]) -> str:
    """Render observation rows as CSV text with the header ``date,indicator,value,source,note``.

    Parameters
    ----------
    rows : iterable of ObservationRow
        Rows in the order to write.

    Returns
    -------
    str
        UTF-8-ready text, one line per row (LF line ends).

    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OBSERVATION_COLUMNS)
    writer.writerows(row.as_list() for row in rows)
    return buffer.getvalue()


def _commit(adapter: str, input_path: Path, data_dir: Path, target_name: str, candidates: list[Candidate],
            skipped: dict[str, tuple[int, int]], description: str, *, match_by_day: bool,
            dry_run: bool) -> IngestReport:
    target = data_dir / "observations" / target_name
    existing, lines = _read_target(target)
    merged = merge_rows(existing, candidates, match_by_day=match_by_day, file=str(target), lines=lines)
    report = IngestReport(adapter, input_path, target, description, merged, skipped, dry_run)
    report.warnings += _other_files_warning(data_dir, target_name, {c.row.indicator for c in candidates})
    if merged.changed:
        text = render_rows(merged.rows)
        validate_with(data_dir, target_name, text)
        if not dry_run:
            write_text(target, text)
            report.written = True
            logger.info("wrote %s: %d added, %d revised", target, len(merged.added), len(merged.revised))
    return report


def _other_files_warning(data_dir: Path, target_name: str, indicators: set[str]) -> list[str]:
    """Warn when other observation files also hold rows of the indicators this ingest writes (double counting)."""
    warnings = []
    folder = data_dir / "observations"
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        if path.name == target_name:
            continue
        try:
            rows, _ = _read_target(path)
        except DataValidationError:
            continue  # reported by the dataset validation
        found = Counter(r.indicator for r in rows if r.indicator in indicators)
        for indicator, n in sorted(found.items()):
            warnings.append(f"{path} also holds {n} row(s) of {indicator}; make sure no event is counted twice")
    return warnings


def validate_with(data_dir: str | Path, target_name: str, text: str) -> None:
    """Validate ``data_dir`` as it would be with ``observations/<target_name>`` replaced by ``text``.

    The data directory is copied (catalog, labels, observation CSVs) to a temporary directory and loaded with
    :func:`forecast.dataset.load_dataset`; problems name the real paths.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory that would be written to.
    target_name : str
        File name under ``observations/``.
    text : str
        The new content of that file.

    Raises
    ------
    DataValidationError
        With every problem of the would-be data directory.

    """
    from forecast.dataset import load_dataset

    data_dir = Path(data_dir)
    logger.info("validating %s as it would be after the merge (in a temporary copy)", data_dir)
    with tempfile.TemporaryDirectory(prefix="forecast-ingest-") as tmp:
        copy = Path(tmp) / "data"
        (copy / "observations").mkdir(parents=True)
        for name in ("catalog.toml", "labels.csv"):
            if (data_dir / name).exists():
                shutil.copy2(data_dir / name, copy / name)
        folder = data_dir / "observations"
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            shutil.copy2(path, copy / "observations" / path.name)
        (copy / "observations" / target_name).write_text(text, encoding="utf-8")
        try:
            load_dataset(copy)
        except DataValidationError as exc:
            raise DataValidationError([_relocate(p, copy, data_dir) for p in exc.problems]) from None


def _relocate(problem: Problem, copy: Path, data_dir: Path) -> Problem:
    def fix(text: str | None) -> str | None:
        return None if text is None else text.replace(str(copy), str(data_dir))

    return Problem(fix(problem.file) or problem.file, problem.line, problem.column, problem.value,
                   fix(problem.message) or problem.message, fix(problem.fix) or problem.fix)
