"""Tests of ``forecast.compile_cache``: where compiled code is kept, switching it off, and that JAX uses it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forecast.compile_cache import ENV_VAR, MAX_BYTES, default_cache_dir, enable_compile_cache, resolve_cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
JAX_KEYS = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
            "JAX_COMPILATION_CACHE_MAX_SIZE")


def test_default_directory_is_in_the_users_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "forecast" / "xla"
    assert resolve_cache_dir({}) == tmp_path / "forecast" / "xla"
    assert resolve_cache_dir({ENV_VAR: "  "}) == tmp_path / "forecast" / "xla"


@pytest.mark.parametrize("value", ["off", "OFF", "none", "no", "0", "false"])
def test_switched_off(value):
    assert resolve_cache_dir({ENV_VAR: value}) is None
    environ = {ENV_VAR: value}
    assert enable_compile_cache(environ=environ) is None
    assert environ == {ENV_VAR: value}


def test_directory_from_the_environment_with_home_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_cache_dir({ENV_VAR: "~/xla-programs"}) == tmp_path / "xla-programs"


def test_enable_creates_the_directory_and_sets_jax_variables(tmp_path):
    target = tmp_path / "a" / "b"
    environ = {ENV_VAR: str(target)}
    assert enable_compile_cache(environ=environ) == target
    assert target.is_dir() and list(target.iterdir()) == []  # the write probe is removed
    assert environ["JAX_COMPILATION_CACHE_DIR"] == str(target)
    assert float(environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0.0
    assert environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(MAX_BYTES)


def test_an_explicit_directory_wins_over_the_environment(tmp_path):
    environ = {ENV_VAR: "off"}
    assert enable_compile_cache(tmp_path / "here", environ=environ) == tmp_path / "here"
    assert environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "here")


def test_a_directory_jax_already_uses_is_kept(tmp_path):
    environ = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "theirs"), ENV_VAR: str(tmp_path / "ours")}
    before = dict(environ)
    assert enable_compile_cache(environ=environ) == tmp_path / "theirs"
    assert environ == before
    assert not (tmp_path / "ours").exists()


def test_an_unwritable_directory_warns_and_leaves_the_cache_off(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    environ = {ENV_VAR: str(blocker / "xla")}
    with caplog.at_level(logging.WARNING, logger="forecast.compile_cache"):
        assert enable_compile_cache(environ=environ) is None
    assert set(environ) == {ENV_VAR}
    assert str(blocker / "xla") in caplog.text and ENV_VAR in caplog.text


def _jit_in_child(cache: Path, import_jax_first: bool) -> subprocess.CompletedProcess:
    code = "\n".join([
        "import sys",
        "from pathlib import Path",
        "import jax" if import_jax_first else "",
        "from forecast.compile_cache import enable_compile_cache",
        f"assert enable_compile_cache(Path({str(cache)!r})) is not None",
        "import jax",
        "print(float(jax.jit(lambda x: x * 2.0 + 1.0)(3.0)))",
    ])
    env = {k: v for k, v in os.environ.items() if k not in JAX_KEYS}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("import_jax_first", [False, True], ids=["before-jax", "after-jax"])
def test_jax_writes_compiled_programs_to_the_directory(tmp_path, import_jax_first):
    # the variable names and configuration keys must be the ones JAX reads, or nothing would be cached
    cache = tmp_path / "xla"
    first = _jit_in_child(cache, import_jax_first)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "7.0"
    entries = sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache"))
    assert entries, "JAX cached nothing"
    second = _jit_in_child(cache, import_jax_first)  # loads the program; writes nothing new
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache")) == entries


def test_command_line_switch(monkeypatch, tmp_path):
    from forecast.cli import main

    for key in JAX_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "xla"))
    with pytest.raises(SystemExit) as info:
        main(["--no-compile-cache", "fit", "--help"])
    assert info.value.code == 0
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
    assert not (tmp_path / "xla").exists()


def _run_cli(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """Run ``forecast ARGS`` in a child with the cache directory ``cache``; it prints JAX's cache variable."""
    env = {k: v for k, v in os.environ.items() if k not in JAX_KEYS}
    env[ENV_VAR] = str(cache)
    code = ("import os, sys\nfrom forecast.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint(os.environ.get('JAX_COMPILATION_CACHE_DIR', 'unset'))")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done


# spelled out rather than read from forecast.cli.COMPILING_COMMANDS, so that dropping one from it fails here
@pytest.mark.parametrize("command", ["fit", "report", "update"])
def test_command_line_uses_the_cache_by_default_for_commands_that_compile(tmp_path, command):
    # the group's options are applied before the subcommand reads --help, as before a real run
    done = _run_cli([command, "--help"], tmp_path / "xla")
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "xla")
    assert (tmp_path / "xla").is_dir()


def test_commands_that_do_not_compile_leave_no_cache_directory(tmp_path, tiny_data_dir):
    done = _run_cli(["data", "check", "--data", str(tiny_data_dir)], tmp_path / "xla")
    assert done.stdout.strip().splitlines()[-1] == "unset"
    assert not (tmp_path / "xla").exists()
