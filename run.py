#!/usr/bin/env python3
"""Set up the project's environment and run one of its jobs.

Usage::

    python3 run.py report [forecast report options]   # the monthly probability report on the bundled data
    python3 run.py test [pytest options]              # the whole test suite
    python3 run.py forecast ARGS...                   # any forecast command inside the environment
    python3 run.py lock                               # re-resolve the pinned versions (see README)

This script needs only the Python standard library and runs on any Python 3.8+. The toolkit itself needs
Python >= 3.12: the script finds such an interpreter (the one running it, ``python3.12``/``python3.13``/
``python3.14`` on PATH, or a pyenv installation), creates ``.venv`` with it, installs the package with the
versions pinned in ``constraints.txt`` and then runs the job. The environment is rebuilt only when
``pyproject.toml``, ``constraints.txt`` or the interpreter change.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FORECAST_VENV", ROOT / ".venv"))
MIN_VERSION = (3, 12)
PREFERRED = ("3.12", "3.13", "3.14")


def _say(message: str) -> None:
    print(f"[run.py] {message}", file=sys.stderr, flush=True)


def _version_of(executable: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
        major, minor = out.split(".")
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def find_python() -> str:
    """Return the path of a working Python >= 3.12, or exit with what to install."""
    candidates: list[str] = []
    if os.environ.get("FORECAST_PYTHON"):
        candidates.append(os.environ["FORECAST_PYTHON"])
    if sys.version_info[:2] >= MIN_VERSION:
        candidates.append(sys.executable)
    for version in PREFERRED:
        found = shutil.which(f"python{version}")
        if found:
            candidates.append(found)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for version in PREFERRED:
        candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}*", "bin", "python3")))
    for version in PREFERRED:
        candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if not os.path.exists(candidate) and not shutil.which(candidate):
            continue
        found_version = _version_of(candidate)
        if found_version and found_version >= MIN_VERSION:
            return candidate
    sys.exit(
        "run.py: forecast needs Python 3.12 or newer and none was found.\n"
        "  Install one, e.g. 'apt-get install python3.12 python3.12-venv' (Debian/Ubuntu),\n"
        "  'pyenv install 3.12', or from python.org; or point FORECAST_PYTHON at an interpreter."
    )


def _stamp(python: str, extras: str) -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    digest.update(f"{python}|{_version_of(python)}|{extras}".encode())
    return digest.hexdigest()


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(extras: str = "") -> Path:
    """Create or refresh ``.venv`` with the pinned stack; return its interpreter."""
    python = find_python()
    stamp_file = VENV / f".forecast-stamp{('-' + extras) if extras else ''}"
    stamp = _stamp(python, extras)
    if stamp_file.exists() and stamp_file.read_text() == stamp and _venv_python().exists():
        return _venv_python()
    if not _venv_python().exists():
        _say(f"creating {VENV} with {python}")
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    target = f".[{extras}]" if extras else "."
    label = f"forecast[{extras}]" if extras else "forecast"
    _say(f"installing {label} with the pinned versions (the first run takes minutes)")
    subprocess.run(
        [str(_venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), "-e", target],
        check=True, cwd=ROOT,
    )
    stamp_file.write_text(stamp)
    return _venv_python()


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, cwd=ROOT).returncode


def cmd_report(args: list[str]) -> int:
    """Run ``forecast report`` on the bundled data (or as the options say)."""
    python = ensure_env()
    return _run([str(python), "-m", "forecast", "report", *args])


def cmd_forecast(args: list[str]) -> int:
    """Run any ``forecast`` command inside the environment."""
    python = ensure_env()
    return _run([str(python), "-m", "forecast", *args])


def cmd_test(args: list[str]) -> int:
    """Run the whole test suite (after installing the test tools and the browser the report tests use)."""
    python = ensure_env("test")
    browser_setup = ROOT / "tests" / "browser_setup.py"
    if browser_setup.exists():
        subprocess.run([str(python), str(browser_setup)], cwd=ROOT, check=False)
    # spread the suite over the machine's cores unless the caller chose otherwise
    parallel = [] if any(a.startswith(("-n", "--numprocesses")) for a in args) else ["-n", "auto"]
    code = _run([str(python), "-m", "pytest", *parallel, *args])
    if code == 5:
        _say("pytest collected no tests")
    return code


def cmd_lock(args: list[str]) -> int:
    """Resolve the newest versions allowed by pyproject.toml into constraints.txt."""
    python = find_python()
    scratch = ROOT / ".lock-venv"
    if scratch.exists():
        shutil.rmtree(scratch)
    subprocess.run([python, "-m", "venv", str(scratch)], check=True)
    scratch_python = scratch / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([str(scratch_python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(scratch_python), "-m", "pip", "install", "--quiet", ".[test]", *args],
                   check=True, cwd=ROOT)
    frozen = subprocess.run([str(scratch_python), "-m", "pip", "freeze", "--exclude", "forecast"],
                            check=True, capture_output=True, text=True).stdout
    header = "# Pinned, tested versions. Regenerate with: python3 run.py lock (then run the tests).\n"
    (ROOT / "constraints.txt").write_text(header + frozen)
    shutil.rmtree(scratch)
    _say("constraints.txt updated; now run: python3 run.py test")
    return 0


COMMANDS = {"report": cmd_report, "test": cmd_test, "forecast": cmd_forecast, "lock": cmd_lock}


def main(argv: list[str]) -> int:
    """Dispatch ``run.py`` subcommands."""
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except subprocess.CalledProcessError as exc:
        _say(f"setup step failed (exit {exc.returncode}): {' '.join(map(str, exc.cmd))}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
