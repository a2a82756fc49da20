"""The bootstrap script must find a Python >= 3.12 or say what to install."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_py():
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finds_a_suitable_interpreter(run_py):
    python = run_py.find_python()
    assert run_py._version_of(python) >= (3, 12)


def test_explains_what_to_install_when_none_is_found(run_py, monkeypatch, tmp_path):
    monkeypatch.setattr(run_py, "PREFERRED", ("9.99",))
    monkeypatch.setattr(run_py.sys, "version_info", (3, 11, 0))
    monkeypatch.setattr(run_py.sys, "executable", "/nonexistent/python3.11")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.delenv("FORECAST_PYTHON", raising=False)
    with pytest.raises(SystemExit) as exc:
        run_py.find_python()
    assert "Python 3.12 or newer" in str(exc.value)
    assert "FORECAST_PYTHON" in str(exc.value)


def test_rejects_an_old_interpreter_given_explicitly(run_py, monkeypatch, tmp_path):
    old = Path(sys.base_prefix).parent / "3.11.7" / "bin" / "python3"
    if not old.exists():
        pytest.skip("no Python 3.11 to try")
    monkeypatch.setenv("FORECAST_PYTHON", str(old))
    assert run_py._version_of(run_py.find_python()) >= (3, 12)


def test_unknown_job_prints_usage(run_py, capsys):
    assert run_py.main(["nonsense"]) == 2
    assert "python3 run.py report" in capsys.readouterr().err
