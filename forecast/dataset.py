"""A validated data directory: catalog, observations and labels, with a SHA-256 of the files they came from."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast.catalog import Catalog, load_catalog
from forecast.errors import DataValidationError, Problem
from forecast.observations import collect_labels, collect_observations, observation_files, sort_problems

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.toml"
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class Dataset:
    """Catalog, observations and labels of one data directory, all validated.

    Attributes
    ----------
    catalog : Catalog
        The indicator catalog.
    observations : pandas.DataFrame
        See :func:`forecast.observations.load_observations`.
    labels : pandas.DataFrame
        See :func:`forecast.observations.load_labels` (empty if there is no ``labels.csv``).
    data_dir : pathlib.Path
        The directory.
    sha256 : str
        Hex SHA-256 over the catalog, every observation CSV and ``labels.csv`` (see :func:`data_sha256`).
    """

    catalog: Catalog
    observations: pd.DataFrame
    labels: pd.DataFrame
    data_dir: Path
    sha256: str

    def summary(self) -> dict[str, pd.DataFrame]:
        """Tidy tables describing the dataset, for ``forecast data check`` and notebooks.

        Returns
        -------
        dict of str to pandas.DataFrame
            ``indicators``: one row per indicator (id, kind, role, group, coverage_start, coverage_end, rows,
            total, first, last); ``per_year``: rows = years, columns = indicator ids, values = the sum of the
            values of count indicators and the number of measurements of levels (NaN where the year is outside
            coverage); ``labels``: the analyst labels.
        """
        obs = self.observations
        by_indicator = obs.groupby("indicator", sort=False).agg(
            rows=("value", "size"), total=("value", "sum"), first=("date", "min"), last=("date", "max")
        )
        rows = []
        for ind in self.catalog:
            stats = by_indicator.loc[ind.id] if ind.id in by_indicator.index else None
            rows.append({
                "indicator": ind.id,
                "kind": ind.kind,
                "role": ind.role,
                "group": ind.group,
                "coverage_start": pd.Timestamp(ind.coverage_start),
                "coverage_end": pd.Timestamp(ind.coverage_stop or self.catalog.observed_through),
                "rows": int(stats["rows"]) if stats is not None else 0,
                "total": float(stats["total"]) if stats is not None and ind.kind == "count" else float("nan"),
                "first": stats["first"] if stats is not None else pd.NaT,
                "last": stats["last"] if stats is not None else pd.NaT,
            })
        indicators = pd.DataFrame(rows)

        first_year = min(i.coverage_start.year for i in self.catalog)
        years = pd.RangeIndex(first_year, self.catalog.observed_through.year + 1, name="year")
        kinds = {i.id: i.kind for i in self.catalog}
        contribution = obs["value"].where(obs["indicator"].map(kinds) == "count", 1.0)
        table = (
            contribution.groupby([obs["date"].dt.year.rename("year"), obs["indicator"]]).sum()
            .unstack("indicator")
            .reindex(index=years, columns=list(self.catalog.ids))
            .fillna(0.0)
        )
        for ind in self.catalog:
            stop = ind.coverage_stop or self.catalog.observed_through
            outside = (years < ind.coverage_start.year) | (years > stop.year)
            table.loc[outside, ind.id] = float("nan")
        table.columns.name = "indicator"
        return {"indicators": indicators, "per_year": table, "labels": self.labels.copy()}


def data_files(data_dir: str | Path) -> list[Path]:
    """The files a dataset is made of: ``catalog.toml``, ``observations/*.csv`` and ``labels.csv`` if present.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory.

    Returns
    -------
    list of pathlib.Path
        Existing files, sorted by their path relative to ``data_dir``.
    """
    data_dir = Path(data_dir)
    files = [data_dir / CATALOG_FILE, *observation_files(data_dir), data_dir / LABELS_FILE]
    files = [f for f in files if f.is_file()]
    return sorted(files, key=lambda f: f.relative_to(data_dir).as_posix())


def data_sha256(data_dir: str | Path) -> str:
    """SHA-256 over the dataset's files: for each, in sorted order, its relative path and its bytes.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory.

    Returns
    -------
    str
        Hex digest. Any change to a file's content or name changes it; so does adding or removing a file.
    """
    data_dir = Path(data_dir)
    digest = hashlib.sha256()
    for path in data_files(data_dir):
        content = path.read_bytes()
        name = path.relative_to(data_dir).as_posix().encode("utf-8")
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()


def load_dataset(data_dir: str | Path) -> Dataset:
    """Read and validate a data directory.

    The catalog is validated first; the observation files and the labels are then checked against it (or, if
    the catalog itself has problems, with the checks that do not need it), and every problem in every file is
    raised together.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        Directory with ``catalog.toml``, ``observations/*.csv`` and optionally ``labels.csv``.

    Returns
    -------
    Dataset
        The validated dataset.

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataValidationError([Problem(str(data_dir), None, None, None, "the data directory does not exist",
                                           "pass --data with a directory holding catalog.toml and observations/")])
    problems: list[Problem] = []
    catalog: Catalog | None
    unchecked: frozenset[str] = frozenset()
    try:
        catalog = load_catalog(data_dir / CATALOG_FILE)
    except DataValidationError as exc:
        problems.extend(exc.problems)
        # Check the data files against the catalog entries that are sound.
        catalog = getattr(exc, "partial_catalog", None)
        unchecked = getattr(exc, "unchecked_ids", frozenset())
    observations = collect_observations(data_dir, catalog, problems, unchecked)
    labels = collect_labels(data_dir / LABELS_FILE, problems)
    if problems:
        raise DataValidationError(sort_problems(problems))
    assert catalog is not None
    sha = data_sha256(data_dir)
    logger.info("loaded %s: %d indicators, %d observation rows, %d labels, sha256 %s", data_dir, len(catalog),
                len(observations), len(labels), sha[:12])
    return Dataset(catalog=catalog, observations=observations, labels=labels, data_dir=data_dir, sha256=sha)
