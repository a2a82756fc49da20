"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data directory laid out like the bundled data/ (catalog.toml, observations/, labels.csv). "
        "Default: the bundled data.",
        file_okay=False,
    ),
]


def resolve_data_dir(data: Path | None) -> Path:
    """Return the data directory to use: ``data`` if given, else the bundled one."""
    from forecast.paths import bundled_data_dir

    return data if data is not None else bundled_data_dir()
