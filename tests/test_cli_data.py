"""Tests of ``forecast data check`` and ``forecast data plot``: exit codes, messages, untouched files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forecast.cli import main
from forecast.dataset import load_dataset


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "forecast", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, check=False)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _main(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


def test_check_prints_the_summary_of_a_valid_directory(tiny_data_dir):
    result = _run("data", "check", "--data", str(tiny_data_dir))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    dataset = load_dataset(tiny_data_dir)
    assert dataset.sha256 in out
    assert "observed through: 2021-12-31" in out
    assert "24, 2020-01 to 2021-12" in out
    for ind in dataset.catalog:
        assert ind.id in out
    assert "bilateral_alliances" in out and "Traceback" not in result.stderr


def test_check_quarterly_in_process(tiny_data_dir, capsys):
    assert _main(["data", "check", "--data", str(tiny_data_dir), "--freq", "Q"]) == 0
    assert "8, 2020-Q1 to 2021-Q4" in capsys.readouterr().out


def test_check_reports_every_problem_and_exits_2_without_touching_files(tiny_data_dir):
    catalog = tiny_data_dir / "catalog.toml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace('kind = "level"', 'kind = "levels"'),
                       encoding="utf-8")
    signals = tiny_data_dir / "observations" / "signals.csv"
    signals.write_text(signals.read_text(encoding="utf-8") + "2021-02-30,talks,1.5,src,\n", encoding="utf-8")
    labels = tiny_data_dir / "labels.csv"
    labels.write_text(labels.read_text(encoding="utf-8") + "2020-03,2020-04,trilateral,2,r,s\n", encoding="utf-8")
    before = _fingerprint(tiny_data_dir)
    result = _run("data", "check", "--data", str(tiny_data_dir))
    assert result.returncode == 2
    err = result.stderr
    assert "Traceback" not in err
    assert "5 problems" in err
    line_of_kind = catalog.read_text(encoding="utf-8").splitlines().index('kind = "levels"') + 1
    assert f"catalog.toml, line {line_of_kind}, column 'kind'" in err
    assert "signals.csv, line 14, column 'date'" in err and "signals.csv, line 14, column 'value'" in err
    assert "labels.csv, line 4, column 'start'" in err  # overlaps the first label
    assert "labels.csv" in err and "column 'confidence'" in err
    assert err.count("Fix:") == 5  # kind; date and value of one row; label confidence and overlap
    assert _fingerprint(tiny_data_dir) == before


def test_check_latin1_file_says_save_as_utf8(tiny_data_dir):
    drivers = tiny_data_dir / "observations" / "drivers.csv"
    drivers.write_bytes(drivers.read_bytes() + "2021-03-01,launches,1,Agência\n".encode("latin-1"))
    before = _fingerprint(tiny_data_dir)
    result = _run("data", "check", "--data", str(tiny_data_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "drivers.csv, line 6" in result.stderr and "UTF-8" in result.stderr
    assert _fingerprint(tiny_data_dir) == before


def test_check_missing_directory_is_a_usage_error(tmp_path, capsys):
    assert _main(["data", "check", "--data", str(tmp_path / "nowhere")]) == 2


def test_plot_writes_a_png_atomically_in_the_current_directory(tiny_data_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = _run("data", "plot", "--data", str(tiny_data_dir), cwd=work)
    assert result.returncode == 0, result.stderr
    png = work / "panel.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in work.iterdir()] == ["panel.png"]  # no temporary file left behind


def test_plot_of_bad_data_leaves_an_existing_plot_alone(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "plots" / "q.png"
    assert _main(["data", "plot", "--data", str(tiny_data_dir), "--freq", "Q", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert first[:4] == b"\x89PNG"
    (tiny_data_dir / "labels.csv").write_text("start,end\n", encoding="utf-8")
    assert _main(["data", "plot", "--data", str(tiny_data_dir), "--out", str(out)]) == 2
    assert out.read_bytes() == first
    assert "labels.csv" in capsys.readouterr().err
