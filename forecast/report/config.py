"""Optional report settings read from ``report.toml`` in the data directory (what-if comparisons, output dir).

Example::

    out_dir = "../reports"          # relative to the data directory; --out overrides it

    [[what_if]]
    name = "A nuclear test next month"
    description = "One North Korean nuclear test in the first forecast month."
    drivers = { nk_nuclear_tests = { "1" = 1 } }   # driver id -> {future period (1 = next): count}

The file is parsed with :mod:`tomllib` (no evaluation); every problem is reported at once.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from forecast.errors import DataValidationError, Problem

#: File name of the report settings inside the data directory.
CONFIG_NAME = "report.toml"


@dataclass(frozen=True)
class WhatIf:
    """One what-if comparison: future driver counts instead of the baseline.

    Parameters
    ----------
    name : str
        Short title shown in the report.
    description : str
        Longer explanation.
    drivers : dict
        Driver id → {future period number (1 = the period after the as-of date): count}.
    """

    name: str
    description: str
    drivers: dict[str, dict[int, float]]

    def to_dict(self) -> dict:
        """JSON-serialisable form (period numbers as strings)."""
        return {"name": self.name, "description": self.description,
                "drivers": {d: {str(k): v for k, v in sorted(m.items())} for d, m in self.drivers.items()}}


@dataclass(frozen=True)
class ReportConfig:
    """Report settings.

    Parameters
    ----------
    out_dir : pathlib.Path or None
        Output directory (absolute, resolved against the data directory) or None for the default.
    what_if : tuple of WhatIf
        What-if comparisons to show.
    sha256 : str
        SHA-256 of the file's bytes (empty when there is no file), part of the report's settings.
    """

    out_dir: Path | None = None
    what_if: tuple[WhatIf, ...] = field(default_factory=tuple)
    sha256: str = ""


def load_report_config(data_dir: str | Path, drivers: list[str] | None = None, horizon: int = 12) -> ReportConfig:
    """Read ``report.toml`` from ``data_dir`` (a missing file means the defaults).

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory.
    drivers : list of str, optional
        Known driver ids; what-if entries naming others are problems.
    horizon : int, optional
        Forecast horizon; what-if periods must lie in 1..horizon.

    Returns
    -------
    ReportConfig
        The settings.

    Raises
    ------
    DataValidationError
        Listing every problem in the file.
    """
    path = Path(data_dir) / CONFIG_NAME
    if not path.exists():
        return ReportConfig()
    raw = path.read_bytes()
    file = str(path)
    problems: list[Problem] = []
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError([Problem(file, None, None, None, f"not valid TOML: {exc}",
                                           "fix the syntax (see docs/report.md for an example)")]) from None
    for key in sorted(set(doc) - {"out_dir", "what_if"}):
        problems.append(Problem(file, None, key, None, "unknown setting", "use out_dir and [[what_if]] only"))
    out_dir = None
    if "out_dir" in doc:
        if not isinstance(doc["out_dir"], str) or not doc["out_dir"].strip():
            problems.append(Problem(file, None, "out_dir", str(doc["out_dir"]), "must be a non-empty path string",
                                    'write e.g. out_dir = "../reports"'))
        else:
            out_dir = (path.parent / doc["out_dir"]).resolve()
    entries = doc.get("what_if", [])
    whatifs: list[WhatIf] = []
    if not isinstance(entries, list):
        problems.append(Problem(file, None, "what_if", None, "must be an array of tables",
                                "write each comparison as a [[what_if]] table"))
        entries = []
    for i, entry in enumerate(entries, start=1):
        where = f"what_if[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(file, None, where, None, "must be a table", "write a [[what_if]] table"))
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(file, None, f"{where}.name", None, "missing or empty name",
                                    'give each comparison a name = "..."'))
            name = f"what-if {i}"
        description = entry.get("description", "")
        if not isinstance(description, str):
            problems.append(Problem(file, None, f"{where}.description", str(description), "must be text",
                                    "quote the description"))
            description = ""
        spec = entry.get("drivers")
        parsed: dict[str, dict[int, float]] = {}
        if not isinstance(spec, dict) or not spec:
            problems.append(Problem(file, None, f"{where}.drivers", None, "missing or empty drivers table",
                                    'write drivers = { driver_id = { "1" = count } }'))
            spec = {}
        for driver, periods in spec.items():
            if drivers is not None and driver not in drivers:
                problems.append(Problem(file, None, f"{where}.drivers", driver, "not a driver of the catalog",
                                        "use one of: " + ", ".join(drivers)))
                continue
            if not isinstance(periods, dict) or not periods:
                problems.append(Problem(file, None, f"{where}.drivers.{driver}", str(periods),
                                        "must map future period numbers to counts", 'write { "1" = 1 }'))
                continue
            parsed[driver] = {}
            for k, v in periods.items():
                try:
                    h = int(k)
                except ValueError:
                    h = 0
                if not 1 <= h <= horizon:
                    problems.append(Problem(file, None, f"{where}.drivers.{driver}", str(k),
                                            f"future period must be a whole number from 1 to {horizon}",
                                            '"1" is the period right after the as-of date'))
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                    problems.append(Problem(file, None, f"{where}.drivers.{driver}.{k}", str(v),
                                            "count must be a non-negative number", "write e.g. 1"))
                    continue
                parsed[driver][h] = float(v)
        whatifs.append(WhatIf(name=name, description=description, drivers=parsed))
    if problems:
        raise DataValidationError(problems)
    return ReportConfig(out_dir=out_dir, what_if=tuple(whatifs), sha256=hashlib.sha256(raw).hexdigest())
