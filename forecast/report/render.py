"""Rendering a report's JSON content to HTML and Markdown with Jinja2 (autoescaping on).

Every string that comes from the data (indicator names, notes, sources, label rationales, what-if names) is
escaped: in HTML by Jinja2's autoescape, in Markdown by :func:`markdown_escape`, so a ``<script>`` in a note
shows as text and never runs.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jinja2

from forecast.scenarios import SCENARIO_NAMES, SCENARIOS

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#])")


def markdown_escape(value: Any) -> str:
    """Escape text for Markdown (and for the HTML a Markdown renderer would produce from it).

    Parameters
    ----------
    value : Any
        Anything printed by a Markdown template.

    Returns
    -------
    str
        ``&``, ``<`` and ``>`` as HTML entities, Markdown syntax characters backslash-escaped, newlines as
        spaces (table cells stay on one line).
    """
    if value is None:
        return ""
    if isinstance(value, jinja2.runtime.Undefined):
        return ""
    text = str(value)
    text = text.replace("&", "&amp;").replace("\r", " ").replace("\n", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\\<", "&lt;").replace("\\>", "&gt;")


def pct(value: Any, digits: int = 1) -> str:
    """A probability as a percentage, e.g. ``0.4213`` → ``"42.1%"`` (``"n/a"`` for None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.{digits}f}%"


def points(value: Any) -> str:
    """A change in percentage points with its sign, e.g. ``"+3.2"``; a change that rounds to zero is ``"+0.0"``."""
    if value is None:
        return "n/a"
    return f"{round(float(value), 1) or 0.0:+.1f}"  # `or` turns a rounded -0.0 into 0.0: no "-0.0"


def num(value: Any, fmt: str = ".3g") -> str:
    """A number with ``fmt`` (``"n/a"`` for None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return format(value, fmt)
    return str(value)


def _environment(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("forecast.report", "templates"),
        autoescape=not markdown,
        finalize=markdown_escape if markdown else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, points=points, num=num, tojson_pretty=lambda v: json.dumps(v, indent=2))
    env.globals.update(SCENARIOS=SCENARIOS, SCENARIO_NAMES=SCENARIO_NAMES)
    return env


def render_html(report: dict[str, Any], images: dict[str, Any], extras: dict[str, Any]) -> str:
    """Render ``index.html`` of one report.

    Parameters
    ----------
    report : dict
        The ``report.json`` content.
    images : dict
        Plot data URIs: ``history``, ``forecast``, ``indicators`` and ``what_if`` (list, one per comparison).
    extras : dict
        ``labels`` (list of label records) shown with the history.

    Returns
    -------
    str
        Self-contained HTML (no external URL).
    """
    return _environment(False).get_template("report.html.j2").render(r=report, images=images, extras=extras)


def render_markdown(report: dict[str, Any], extras: dict[str, Any]) -> str:
    """Render ``report.md`` of one report (numbers only, no images).

    Parameters
    ----------
    report : dict
        The ``report.json`` content.
    extras : dict
        As for :func:`render_html`.

    Returns
    -------
    str
        Markdown text.
    """
    return _environment(True).get_template("report.md.j2").render(r=report, extras=extras)


def render_index(entries: list[dict[str, Any]], trajectory: str | None) -> str:
    """Render ``reports/index.html``: past reports and the probability trajectory across vintages.

    Parameters
    ----------
    entries : list of dict
        ``index.json`` entries, newest first.
    trajectory : str or None
        Data URI of the trajectory plot.

    Returns
    -------
    str
        Self-contained HTML.
    """
    return _environment(False).get_template("index.html.j2").render(entries=entries, trajectory=trajectory)
