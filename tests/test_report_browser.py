"""The report in a real headless Chromium: plots render, nothing is fetched from outside, notes stay text."""

from __future__ import annotations

import os

import pytest
from conftest import write_tiny_data_dir
from report_helpers import TINY_JANUARY, append_month, synthetic_fitter

from forecast.report.pipeline import run_report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WHAT_IF = '[[what_if]]\nname = "Launches <b>x5</b>"\ndrivers = { launches = { "1" = 5 } }\n'


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    data = write_tiny_data_dir(root)
    (data / "report.toml").write_text(WHAT_IF, encoding="utf-8")
    out = root / "reports"
    run_report(data, out, fitter=synthetic_fitter(draws=200))
    append_month(data, TINY_JANUARY, "2022-01-31", "2021-12-31")
    latest = run_report(data, out, fitter=synthetic_fitter(draws=200))
    return out, latest.directory


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium, or run "
                    "'python3 run.py test', whose tests/browser_setup.py installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _open(browser, path):
    """Open ``path`` from file://, recording every request and every dialog; block anything not file:/data:."""
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                  else route.abort())
    page.goto(path.as_uri(), wait_until="load")
    return context, page, requests, dialogs


@pytest.mark.browser
def test_report_renders_offline_and_notes_stay_text(browser, reports):
    _, directory = reports
    context, page, requests, dialogs = _open(browser, directory / "index.html")
    try:
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.id || e.className, e.complete, e.naturalWidth, e.naturalHeight])")
        ids = {i[0] for i in images}
        assert {"plot-history", "plot-forecast", "plot-indicators", "plot-what-if"} <= ids
        for name, complete, width, height in images:
            assert complete and width > 0 and height > 0, name
        assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.evaluate("document.querySelectorAll('script').length") == 0
        section = page.inner_text("body")
        assert "<script>window.__pwned = 1</script>" in section  # shown as text
        assert "Ministry <b>release</b> 5" in section
        assert "Launches <b>x5</b>" in section
        assert dialogs == []
    finally:
        context.close()


@pytest.mark.browser
def test_report_index_renders_trajectory(browser, reports):
    out, _ = reports
    context, page, requests, _ = _open(browser, out / "index.html")
    try:
        width = page.eval_on_selector("#plot-trajectory", "e => e.naturalWidth")
        assert width > 0
        links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        assert links == ["2022-01-31/index.html", "2021-12-31/index.html"]
        assert all(u.startswith(("file:", "data:")) for u in requests), requests
    finally:
        context.close()
