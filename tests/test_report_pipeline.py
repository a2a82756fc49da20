"""The report pipeline: fit reuse (update) or refit, idempotency, atomic publishing, kill safety, the lock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from report_helpers import TINY_JANUARY, append_month, synthetic_fitter

from forecast.paths import REPO_ROOT
from forecast.report.pipeline import run_report
from forecast.report.publish import LockTimeout, published_reports

TESTS = Path(__file__).resolve().parent


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file of the output directory (the lock file excluded) with its bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_same_data_twice_is_up_to_date_and_rewrites_nothing(tiny_data_dir, tmp_path):
    out = tmp_path / "reports"
    calls: list = []
    first = run_report(tiny_data_dir, out, fitter=synthetic_fitter(calls=calls))
    assert first.status == "published" and len(calls) == 1
    before, times = _snapshot(out), _mtimes(out)
    second = run_report(tiny_data_dir, out, fitter=synthetic_fitter(calls=calls))
    assert second.status == "up_to_date" and second.exit_code == 0 and second.directory == first.directory
    assert len(calls) == 1  # no refit
    assert _snapshot(out) == before and _mtimes(out) == times
    # a different setting is not "up to date": here --force-refit publishes again with a new fit
    third = run_report(tiny_data_dir, out, fitter=synthetic_fitter(calls=calls), force_refit=True)
    assert third.status == "published" and len(calls) == 2


def test_new_month_is_absorbed_by_update_and_named_in_what_changed(tiny_data_dir, tmp_path):
    out = tmp_path / "reports"
    calls: list = []
    # 1000 draws: the one-month update keeps an effective sample size far above the 400 required
    first = run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, calls=calls))
    append_month(tiny_data_dir, TINY_JANUARY, "2022-01-31", "2021-12-31")
    second = run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, calls=calls))
    assert len(calls) == 1, "the update path must not refit"
    report = second.report
    assert second.directory.name == "2022-01-31" and report["provenance"]["path"] == "update"
    assert (second.directory / "update.nc").exists()
    # the fit is reused byte for byte (hard link or copy)
    assert (second.directory / "fit.nc").read_bytes() == (first.directory / "fit.nc").read_bytes()
    assert report["provenance"]["fit"]["content_sha256"] == first.report["provenance"]["fit"]["content_sha256"]
    assert report["diagnostics"]["pareto_k"] is not None and report["diagnostics"]["weights_ess"] > 400
    changed = report["what_changed"]
    assert changed["previous_as_of"] == "2021-12-31"
    assert {(r["date"], r["indicator"]) for r in changed["rows"]} == {("2022-01-12", "talks"),
                                                                      ("2022-01-20", "disputes")}
    rows = [r["row"] for r in changed["attribution"]["rows"]]
    assert any("2022-01-12" in r and "talks" in r for r in rows)
    assert any("2022-01-20" in r and "disputes" in r for r in rows)
    for s, c in changed["changes"].items():
        assert c["change"] == pytest.approx(100 * (report["scenarios"][s]["mean"]
                                                   - first.report["scenarios"][s]["mean"]), abs=1e-9)
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert [e["as_of"] for e in index["reports"]] == ["2022-01-31", "2021-12-31"]
    # a month after an update: the previous report's weights are the starting point of the attribution
    append_month(tiny_data_dir, "2022-02-03,talks,1,Ministry release 6,\n", "2022-02-28", "2022-01-31")
    third = run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, calls=calls))
    assert len(calls) == 1 and third.report["provenance"]["path"] == "update"
    changed = third.report["what_changed"]
    assert changed["previous_as_of"] == "2022-01-31"
    assert [(r["date"], r["indicator"]) for r in changed["rows"]] == [("2022-02-03", "talks")]
    previous = {s: v["mean"] for s, v in report["scenarios"].items()}
    for s, c in changed["changes"].items():
        assert c["previous"] == pytest.approx(previous[s], abs=1e-12)
    totals = {t["scenario"]: t for t in changed["attribution"]["totals"]}
    # the attribution starts from the previous report's (weighted) probabilities: its totals match the report
    for s in previous:
        assert totals[s]["previous"] == pytest.approx(100 * previous[s], abs=1e-6)


def test_revised_data_refits_or_tells(tiny_data_dir, tmp_path):
    out = tmp_path / "reports"
    calls: list = []
    run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, calls=calls))
    signals = tiny_data_dir / "observations" / "signals.csv"
    signals.write_text(signals.read_text(encoding="utf-8").replace("2021-07-07,disputes,2", "2021-07-07,disputes,5"),
                       encoding="utf-8")
    before = _snapshot(out)
    told = run_report(tiny_data_dir, out, fitter=synthetic_fitter(calls=calls), on_refit="tell")
    assert told.status == "refit_required" and told.exit_code == 5 and "changed" in told.message
    assert len(calls) == 1 and _snapshot(out) == before
    refitted = run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, calls=calls))
    assert len(calls) == 2 and refitted.report["provenance"]["path"] == "refit"
    assert "changed" in refitted.report["provenance"]["path_reason"]
    # same as-of, revised data: the report of that date is replaced, and it compares with the replaced one's data
    assert [p.as_of for p in published_reports(out)] == ["2021-12-31"]
    rows = refitted.report["what_changed"]["rows"]
    assert sorted((r["change"], r["value"]) for r in rows) == [("added", 5.0), ("removed", 2.0)]


def test_a_fit_that_failed_its_gate_is_not_reused(tiny_data_dir, tmp_path):
    out = tmp_path / "reports"
    calls: list = []
    first = run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, converged=False, calls=calls))
    assert first.exit_code == 3 and first.report["diagnostics"]["failures"] == ["R-hat 1.40 > 1.01 for loading"]
    append_month(tiny_data_dir, TINY_JANUARY, "2022-01-31", "2021-12-31")
    second = run_report(tiny_data_dir, out, fitter=synthetic_fitter(draws=1000, calls=calls))
    assert len(calls) == 2 and second.report["provenance"]["path"] == "refit"
    assert "convergence gate" in second.report["provenance"]["path_reason"]
    assert second.exit_code == 0 and second.report["diagnostics"]["passed"]


def test_failure_mid_write_leaves_last_report_untouched(tiny_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "reports"
    run_report(tiny_data_dir, out, fitter=synthetic_fitter())
    before = _snapshot(out)
    append_month(tiny_data_dir, TINY_JANUARY, "2022-01-31", "2021-12-31")
    from forecast.report import pipeline, render

    written: list[str] = []
    original = pipeline._write

    def failing_write(path, text):
        original(path, text)
        written.append(path.name)
        if path.name == "report.md":
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(pipeline, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        run_report(tiny_data_dir, out, fitter=synthetic_fitter())
    assert written == ["report.json", "report.md"]  # it failed in the middle of writing the new report
    assert _snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    monkeypatch.setattr(pipeline, "_write", original)
    monkeypatch.setattr(render, "render_index", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run_report(tiny_data_dir, out, fitter=synthetic_fitter())
    # the report was published, the index update failed atomically: the old index is intact
    assert (out / "2022-01-31" / "report.json").exists()
    assert (out / "index.json").read_bytes() == before["index.json"]
    assert (out / "index.html").read_bytes() == before["index.html"]


SLOW_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from report_helpers import synthetic_fitter
from forecast.report import pipeline

original = pipeline._write
def slow_write(path, text):
    original(path, text)
    if path.name == "report.json":
        Path({marker!r}).write_text("writing")
        time.sleep({sleep})
pipeline._write = slow_write
outcome = pipeline.run_report({data!r}, {out!r}, fitter=synthetic_fitter())
print(outcome.status)
"""


def _start_slow_run(data: Path, out: Path, marker: Path, sleep: float) -> subprocess.Popen:
    script = SLOW_RUN.format(tests=str(TESTS), marker=str(marker), sleep=sleep, data=str(data), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"slow run ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("slow run never reached the write")
        time.sleep(0.05)
    return proc


def test_sigkill_during_write_leaves_last_report_valid(tiny_data_dir, tmp_path):
    out = tmp_path / "reports"
    run_report(tiny_data_dir, out, fitter=synthetic_fitter())
    before = _snapshot(out)
    append_month(tiny_data_dir, TINY_JANUARY, "2022-01-31", "2021-12-31")
    proc = _start_slow_run(tiny_data_dir, out, tmp_path / "marker", sleep=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert leftovers, "the killed run was writing into a temporary directory"
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".")} == before
    assert [p.as_of for p in published_reports(out)] == ["2021-12-31"]
    # the lock died with the process; the next run cleans up and publishes
    again = run_report(tiny_data_dir, out, fitter=synthetic_fitter(), lock_timeout=5)
    assert again.status == "published" and again.as_of == "2022-01-31"
    assert set(again.removed_leftovers) == set(leftovers)
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_concurrent_runs_wait_for_the_lock_or_time_out(tiny_data_dir, tmp_path):
    out = tmp_path / "reports"
    proc = _start_slow_run(tiny_data_dir, out, tmp_path / "marker", sleep=10)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="another report run"):
            run_report(tiny_data_dir, out, fitter=synthetic_fitter(), lock_timeout=0.3)
        assert time.monotonic() - started < 8  # gave up long before the first run (10 s) finished
        waited = run_report(tiny_data_dir, out, fitter=synthetic_fitter(), lock_timeout=60)
        # it waited for the first run to publish, then found the same data and settings already reported
        assert proc.wait(timeout=60) == 0 and proc.stdout.read().strip() == "published"
        assert waited.status == "up_to_date"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bundled_data_plus_one_month_names_the_new_events(tmp_path):
    """Acceptance: one more month of events in the bundled data gives a new dated report naming them."""
    data = tmp_path / "data"
    shutil.copytree(REPO_ROOT / "data", data)
    out = tmp_path / "reports"
    first = run_report(data, out, fitter=synthetic_fitter(draws=400))
    new_rows = ("2026-01-14,trilateral_meetings,1,Test communique,trilateral vice-ministerial talks in Tokyo\n"
                "2026-01-27,history_disputes,1,Test statement,protest over a defence white paper\n")
    append_month(data, new_rows, "2026-01-31", first.as_of)
    from forecast.cli import main

    with pytest.raises(SystemExit) as info:
        main(["report", "--data", str(data), "--out", str(out), "--refit", "tell", "--seed", "20261125"])
    assert info.value.code in (0, 5)
    reports = published_reports(out)
    if info.value.code == 5:  # the reweighting was not trusted: refit with the fast fitter instead
        run_report(data, out, fitter=synthetic_fitter(draws=400))
        reports = published_reports(out)
    assert [p.as_of for p in reports] == [first.as_of, "2026-01-31"]
    html = (reports[-1].path / "index.html").read_text(encoding="utf-8")
    section = html[html.index('id="what-changed"'):html.index('id="forecast"')]
    assert "2026-01-14" in section and "trilateral vice-ministerial talks in Tokyo" in section
    assert "2026-01-27" in section and "protest over a defence white paper" in section
    assert "US–ROK–Japan security meetings" in section
