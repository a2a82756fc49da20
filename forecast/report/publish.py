"""Publishing reports safely: one run at a time, dated directories by rename, the index updated atomically.

Layout of the output directory (see ``docs/report.md``)::

    reports/
      .lock                 one run at a time (filelock)
      index.html            past reports and the probability trajectory
      index.json            the same for machines
      2025-11-30/           one directory per as-of date, published by rename
        index.html report.md report.json fit.nc [update.nc] data/

A run writes everything into a hidden temporary directory next to its target and renames it into place
(:func:`forecast.atomic.atomic_directory`), so a run that fails or is killed leaves the previous reports intact;
hidden leftovers of killed runs are removed by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecast.errors import ForecastError

logger = logging.getLogger(__name__)

#: Name of the lock file inside the output directory.
LOCK_NAME = ".lock"
#: Report directories are named by their as-of date.
REPORT_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Version of the ``index.json`` layout.
INDEX_SCHEMA_VERSION = 1


class LockTimeout(ForecastError):
    """Another report run held the output directory's lock for longer than the timeout."""

    def __init__(self, lock_path: Path, timeout: float):
        self.lock_path = lock_path
        self.timeout = timeout
        super().__init__(f"another report run holds {lock_path}; gave up after waiting {timeout:g} s. "
                         "Try again later or raise --lock-timeout")


@contextlib.contextmanager
def report_lock(out_dir: Path, timeout: float) -> Iterator[None]:
    """Hold the output directory's lock; wait at most ``timeout`` seconds for another run to finish.

    Parameters
    ----------
    out_dir : pathlib.Path
        The output directory (created if missing).
    timeout : float
        Seconds to wait; 0 means fail at once if the lock is held.

    Yields
    ------
    None
        While the lock is held. The lock is released when the process ends, even when killed.

    Raises
    ------
    LockTimeout
        If the lock could not be acquired in time.
    """
    from filelock import FileLock, Timeout

    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out_dir / LOCK_NAME, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(out_dir / LOCK_NAME, timeout) from None
    try:
        yield
    finally:
        lock.release()


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Remove hidden temporary directories and files left by killed runs (call with the lock held).

    Parameters
    ----------
    out_dir : pathlib.Path
        The output directory.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    removed = []
    if not out_dir.is_dir():
        return removed
    for path in out_dir.iterdir():
        if path.name.startswith(".") and (path.name.endswith(".tmp") or path.name.endswith(".old")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("removed %d leftover(s) of interrupted runs", len(removed))
    return removed


@dataclass(frozen=True)
class PublishedReport:
    """A published report directory and its ``report.json``."""

    path: Path
    report: dict[str, Any]

    @property
    def as_of(self) -> str:
        """The report's as-of date."""
        return str(self.report["as_of"])


def published_reports(out_dir: Path) -> list[PublishedReport]:
    """Every readable published report in ``out_dir``, oldest first (unreadable ones are skipped, logged).

    Parameters
    ----------
    out_dir : pathlib.Path
        The output directory.

    Returns
    -------
    list of PublishedReport
        Sorted by as-of date.
    """
    out = []
    if not out_dir.is_dir():
        return out
    for path in sorted(out_dir.iterdir()):
        if not (path.is_dir() and REPORT_DIR.match(path.name)):
            continue
        try:
            report = json.loads((path / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("skipping %s: no readable report.json (%s)", path, exc)
            continue
        if report.get("schema_version") != 1:
            logger.warning("skipping %s: report schema %r", path, report.get("schema_version"))
            continue
        out.append(PublishedReport(path=path, report=report))
    return out


def index_entry(published: PublishedReport) -> dict[str, Any]:
    """The ``index.json`` entry of one report."""
    r = published.report
    return {
        "as_of": r["as_of"],
        "generated": r["generated"],
        "directory": published.path.name,
        "path": r["provenance"]["path"],
        "diagnostics_passed": bool(r["diagnostics"]["passed"]),
        "data_sha256": r["provenance"]["data_sha256"],
        "current": {s: {k: v[k] for k in ("mean", "lower", "upper")} for s, v in r["scenarios"].items()},
    }


def write_index(out_dir: Path) -> None:
    """Rewrite ``index.json`` and ``index.html`` of ``out_dir`` from the published reports, atomically.

    Nothing is written when ``index.json`` already lists exactly these reports.

    Parameters
    ----------
    out_dir : pathlib.Path
        The output directory.
    """
    from forecast.atomic import write_text
    from forecast.report import plots, render

    entries = [index_entry(p) for p in published_reports(out_dir)]
    doc = {"schema_version": INDEX_SCHEMA_VERSION, "reports": list(reversed(entries))}
    try:
        current = json.loads((out_dir / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current == doc and (out_dir / "index.html").is_file():
        return  # already up to date: rewrite nothing
    trajectory = plots.trajectory_plot(entries) if entries else None
    html = render.render_index(list(reversed(entries)), trajectory)  # render everything before writing
    write_text(out_dir / "index.json", json.dumps(doc, indent=2) + "\n")
    write_text(out_dir / "index.html", html)
    for name in ("index.json", "index.html"):
        (out_dir / name).chmod(0o644)
