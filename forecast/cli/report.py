"""``forecast report`` and ``forecast update``."""

from __future__ import annotations
