"""Escaping and self-containment of the rendered report."""

from __future__ import annotations

import re

import pytest
from conftest import write_tiny_data_dir
from report_helpers import TINY_JANUARY, append_month, synthetic_fitter

from forecast.report.pipeline import run_report
from forecast.report.render import markdown_escape, points

SCRIPT = "<script>window.__pwned = 1</script>"


@pytest.fixture(scope="module")
def second_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("render")
    tiny_data_dir = write_tiny_data_dir(tmp_path)
    out = tmp_path / "reports"
    run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=200))
    labels = tiny_data_dir / "labels.csv"
    labels.write_text(labels.read_text(encoding="utf-8").replace(
        "Regular trilateral meetings", '"Meetings <img src=x onerror=alert(1)> & <b>talks</b>"'), encoding="utf-8")
    append_month(tiny_data_dir, TINY_JANUARY, "2022-01-31", "2021-12-31")
    return run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=200))


def test_user_strings_are_escaped_in_html(second_report):
    html = (second_report.directory / "index.html").read_text(encoding="utf-8")
    assert SCRIPT not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "Ministry &lt;b&gt;release&lt;/b&gt; 5" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;talks&lt;/b&gt;" in html
    # the only <script>-like text is the escaped one: no script element at all
    assert re.search(r"<script", html, flags=re.IGNORECASE) is None


def test_html_is_self_contained(second_report):
    html = (second_report.directory / "index.html").read_text(encoding="utf-8")
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:image/png;base64,", "#")) or re.fullmatch(r"[\w./-]+", attr), attr
        assert "//" not in attr.split(",")[0]
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count('src="data:image/png;base64,') == 3  # history, forecast, indicators (no what-if here)


def test_user_strings_are_escaped_in_markdown(second_report):
    md = (second_report.directory / "report.md").read_text(encoding="utf-8")
    assert SCRIPT not in md and "<b>" not in md and "<img" not in md
    assert "&lt;script&gt;window.\\_\\_pwned = 1&lt;/script&gt;" in md


@pytest.mark.parametrize(("text", "expected"), [
    ("<script>", "&lt;script&gt;"),
    ("a | b", "a \\| b"),
    ("x & y", "x &amp; y"),
    ("line\nbreak", "line break"),
    ("[link](http://x)", "\\[link\\](http://x)"),
    (None, ""),
])
def test_markdown_escape(text, expected):
    assert markdown_escape(text) == expected


@pytest.mark.parametrize(("value", "text"), [(3.24, "+3.2"), (-3.26, "-3.3"), (0.0, "+0.0"), (-0.04, "+0.0"),
                                             (-0.05001, "-0.1"), (None, "n/a")])
def test_points_has_a_sign_and_no_negative_zero(value, text):
    assert points(value) == text
