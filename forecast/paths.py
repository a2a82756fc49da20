"""Where the toolkit finds its bundled files."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the package is installed in editable mode from a clone).
REPO_ROOT = Path(__file__).resolve().parent.parent


def bundled_data_dir() -> Path:
    """Return the bundled data directory (``data/`` of the clone), or ``$FORECAST_DATA`` if set.

    Returns
    -------
    pathlib.Path
        Directory laid out as described in ``data/README.md``.

    """
    override = os.environ.get("FORECAST_DATA")
    return Path(override) if override else REPO_ROOT / "data"
