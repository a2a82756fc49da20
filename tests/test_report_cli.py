"""Exit codes of ``forecast report`` (0, 1, 2, 3, 4, 5), run through the real command line.

The command refits with MCMC only when it cannot reuse a fit; every case here first publishes a report with the
fast synthetic fitter, so the command takes the update path (or stops before fitting).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from report_helpers import TINY_JANUARY, append_month, synthetic_fitter

from forecast.cli import main
from forecast.paths import REPO_ROOT
from forecast.report.pipeline import run_report
from forecast.report.publish import published_reports


def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(["report", *args])
    return int(info.value.code or 0)


@pytest.fixture
def reported(tiny_data_dir, tmp_path):
    """A data directory with one published report (1000 draws, so one more month is absorbed by an update)."""
    out = tmp_path / "reports"
    run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000))
    return tiny_data_dir, out


def test_exit_0_published_and_printed(reported, capsys):
    data, out = reported
    append_month(data, TINY_JANUARY, "2022-01-31", "2021-12-31")
    assert _cli("--data", str(data), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "data through 2022-01-31 (posterior path: update)" in printed
    assert "current probabilities" in printed and "forecast, mean %" in printed
    assert f"report: {out / '2022-01-31' / 'index.html'}" in printed
    report = json.loads((out / "2022-01-31" / "report.json").read_text(encoding="utf-8"))
    for s, v in report["scenarios"].items():
        assert f"{s:<20} {100 * v['mean']:5.1f}%" in printed
    # and again: up to date, still 0
    assert _cli("--data", str(data), "--out", str(out)) == 0
    assert "up to date" in capsys.readouterr().out


def test_exit_3_failed_diagnostics_flagged(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "reports"
    first = run_report(tiny_data_dir, out, fitter=synthetic_fitter(converged=False))
    assert first.status == "published" and first.exit_code == 3
    # the command on the same data: up to date, but the current report's diagnostics failed, so still 3
    assert _cli("--data", str(tiny_data_dir), "--out", str(out)) == 3
    printed = capsys.readouterr().out
    assert "DIAGNOSTICS FAILED: R-hat 1.40" in printed
    # R-hat 1.4 is chains in different places, not chains too short: more mode searches come first
    assert "what to try: the chains disagree" in printed and "--starts" in printed
    assert "37 divergent transitions" in printed
    html = (out / "2021-12-31" / "index.html").read_text(encoding="utf-8")
    banner = html.index('class="banner" id="diagnostics-failed"')
    assert banner < html.index('id="current"')  # above the probabilities
    assert "R-hat 1.40" in html[banner:]
    assert html.index("What to try", banner) < html.index('id="current"')
    report = json.loads((out / "2021-12-31" / "report.json").read_text(encoding="utf-8"))
    assert len(report["diagnostics"]["advice"]) == 3
    assert "Diagnostics FAILED" in (out / "2021-12-31" / "report.md").read_text(encoding="utf-8")
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert [e["diagnostics_passed"] for e in index["reports"]] == [False]


def test_exit_2_bad_input(tmp_path, capsys):
    assert _cli("--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")) == 2
    assert "data directory does not exist" in capsys.readouterr().err


def test_exit_2_bad_report_toml(tiny_data_dir, tmp_path, capsys):
    (tiny_data_dir / "report.toml").write_text('[[what_if]]\nname = "x"\ndrivers = { nope = { "1" = 1 } }\n',
                                               encoding="utf-8")
    assert _cli("--data", str(tiny_data_dir), "--out", str(tmp_path / "r")) == 2
    assert "not a driver of the catalog" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_exit_1_internal_error(tiny_data_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    assert _cli("--data", str(tiny_data_dir), "--out", str(blocker / "reports")) == 1
    assert "internal error" in capsys.readouterr().err


def test_exit_4_lock_timeout(reported, capsys):
    data, out = reported
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"lock = FileLock({str(out / '.lock')!r}); lock.acquire(); print('held', flush=True); time.sleep(30)"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        assert _cli("--data", str(data), "--out", str(out), "--lock-timeout", "0.5") == 4
        assert 0.5 <= time.monotonic() - started < 10
        err = capsys.readouterr().err
        assert "another report run holds" in err and "--lock-timeout" in err
    finally:
        holder.kill()
        holder.wait()


def test_exit_5_refit_required_with_tell(reported, capsys):
    data, out = reported
    signals = data / "observations" / "signals.csv"
    signals.write_text(signals.read_text(encoding="utf-8").replace("2020-03-03,disputes,1", "2020-03-03,disputes,3"),
                       encoding="utf-8")
    before = (out / "2021-12-31" / "report.json").read_bytes()
    assert _cli("--data", str(data), "--out", str(out), "--refit", "tell") == 5
    assert "refit required" in capsys.readouterr().out
    assert (out / "2021-12-31" / "report.json").read_bytes() == before
    assert [p.as_of for p in published_reports(out)] == ["2021-12-31"]


def test_report_command_imports_stay_light():
    code = ("import sys; import forecast.cli.report; "
            "heavy = [m for m in ('pymc', 'pytensor', 'jax', 'matplotlib', 'xarray', 'forecast.report.pipeline') "
            "if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
