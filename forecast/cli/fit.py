"""``forecast fit``: fit the scenario model and write the fit file."""

from __future__ import annotations
