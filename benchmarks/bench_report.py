#!/usr/bin/env python
"""Benchmark ``forecast report`` on the update path: one month more than the latest published report.

Run from the repository root::

    .venv/bin/python benchmarks/bench_report.py                 # 4,000 draws, bundled data, best of 3
    .venv/bin/python benchmarks/bench_report.py --repeat 5 --json report-bench.json

Set-up (not timed):

1. The bundled data directory is copied with its last month taken away: observation rows after the end of the
   previous month are dropped, and ``observed_through`` (and any ``coverage_end`` after it) moves back to that
   day: the data as they stood a month earlier.
2. :func:`forecast.report.pipeline.run_report` publishes the report of that earlier vintage into a reports
   directory, exactly as a previous ``forecast report`` run leaves it (``<as-of>/fit.nc``, ``report.json``,
   ``data/`` snapshot, ``index.json``), with a fitter that returns a synthetic fit of ``--draws`` draws (4
   chains, ``benchmarks/bench_update.py``'s ``synthetic_fit``: no MCMC, each draw's last filtered state stored
   as :func:`forecast.fitting.fit` stores it) and the default sampler settings, so the next run may reuse it.

Timed, best of ``--repeat`` (each repetition on a fresh copy of that reports directory): ``forecast report
--data DATA --out REPORTS`` on the full bundled data, one month more, in a fresh interpreter: start-up, imports,
loading the data, reading the previous fit, the online update, probabilities, forecasts and what-if comparisons,
attribution of the change to the new observation rows, figures, rendering and publishing. The run must take the
update path (``provenance.path == "update"`` in the new ``report.json``) and exit 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
COMMAND = "import sys; from forecast.cli import main; sys.argv[0] = 'forecast'; main(sys.argv[1:])"


def previous_vintage(src: Path, dst: Path) -> str:
    """Copy the data directory ``src`` to ``dst`` as it stood at the end of the month before its last one.

    Parameters
    ----------
    src : pathlib.Path
        A data directory (``catalog.toml``, ``observations/``, ``labels.csv``, optional ``report.toml``).
    dst : pathlib.Path
        Where the earlier vintage is written (must not exist).

    Returns
    -------
    str
        The earlier vintage's ``observed_through`` (ISO date).
    """
    import csv

    shutil.copytree(src, dst)
    catalog = dst / "catalog.toml"
    text = catalog.read_text(encoding="utf-8")
    through = dt.date.fromisoformat(re.search(r"^observed_through = (\S+)", text, re.M).group(1))
    earlier = through.replace(day=1) - dt.timedelta(days=1)

    def move_back(match: re.Match) -> str:
        day = dt.date.fromisoformat(match.group(2))
        return f"{match.group(1)}{min(day, earlier).isoformat()}"

    text = re.sub(r"^(observed_through = |coverage_end = )(\d{4}-\d{2}-\d{2})", move_back, text, flags=re.M)
    catalog.write_text(text, encoding="utf-8")
    for path in sorted((dst / "observations").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0][:10] <= earlier.isoformat()]
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(kept)
    return earlier.isoformat()


def publish_previous_report(data: Path, out: Path, n_draws: int) -> Path:
    """Publish the report of ``data`` into ``out`` with the pipeline, on a synthetic fit of ``n_draws`` draws."""
    from bench_update import synthetic_fit

    from forecast.report.pipeline import FitSettings, run_report

    settings = FitSettings()  # what 'forecast report' uses by default, so the next run may reuse this fit
    if settings.chains * settings.draws != n_draws:
        settings = FitSettings(draws=max(n_draws // 4, 1), chains=4)

    def fitter(panel, *, settings, catalog_text, data_sha256, progress=True):
        return synthetic_fit(panel, settings.chains * settings.draws)

    outcome = run_report(data, out, fitter=fitter, fit_settings=settings, progress=False)
    if outcome.status != "published":
        raise RuntimeError(f"the previous report was not published: {outcome.message}")
    return outcome.directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000, help="posterior draws of the previous report's fit")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", type=Path, default=None, help="copy the last run's reports directory here")
    args = parser.parse_args()

    data = args.data.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        earlier = previous_vintage(data, tmp / "previous-data")
        setup = tmp / "reports-setup"
        previous_dir = publish_previous_report(tmp / "previous-data", setup, args.draws)
        extra = [] if args.draws == 4000 else ["--draws", str(max(args.draws // 4, 1)), "--chains", "4"]
        times, loads = [], []
        for i in range(args.repeat):
            out = tmp / f"reports-{i}"
            shutil.copytree(setup, out)
            cmd = [sys.executable, "-c", COMMAND, "report", "--data", str(data), "--out", str(out), *extra]
            loads.append(os.getloadavg()[0])
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"forecast report exited {done.returncode}:\n{done.stdout}{done.stderr}")
            new = max(p for p in out.iterdir() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name))
            report = json.loads((new / "report.json").read_text(encoding="utf-8"))
            if report["provenance"]["path"] != "update":
                raise RuntimeError(f"forecast report took the {report['provenance']['path']} path: "
                                   f"{report['provenance']['path_reason']}")
            if args.keep is not None and i == args.repeat - 1:
                shutil.rmtree(args.keep, ignore_errors=True)
                shutil.copytree(out, args.keep)
            shutil.rmtree(out)

    figures = {
        "draws": args.draws, "previous_as_of": earlier, "previous_report": previous_dir.name,
        "as_of": report["as_of"], "path": report["provenance"]["path"],
        "pareto_k": report["diagnostics"]["pareto_k"], "weights_ess": report["diagnostics"]["weights_ess"],
        "changed_rows": len(report["what_changed"]["rows"]),
        "report_seconds_best": min(times), "report_seconds_all": times, "load_average_1min_before": loads,
    }
    print(f"{args.draws} draws; previous report {earlier}, new data through {report['as_of']} "
          f"({figures['changed_rows']} new observation rows); path {figures['path']}, "
          f"k-hat {figures['pareto_k']:.2f}, ESS {figures['weights_ess']:.0f}")
    print(f"'forecast report' command incl. interpreter start-up: best {min(times):.2f} s of "
          + ", ".join(f"{t:.2f}" for t in times) + " (1-min load average before each: "
          + ", ".join(f"{x:.2f}" for x in loads) + ")")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
