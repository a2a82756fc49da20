"""Keeping compiled model code between runs: JAX's persistent compilation cache for the ``forecast`` command.

A fit compiles the model's density with XLA for the mode search and for the sampler; on the bundled data that is
about 8 s of every fit, whatever the number of periods, and the programs are the same from one run to the next
as long as the model, the data's shape, the settings and the library versions are. JAX can keep compiled
programs on disk and load them instead of compiling again (its key covers the program, the compile options, the
XLA flags and the JAX, jaxlib and backend versions, so a change of any of them compiles afresh).

The ``forecast`` command line turns this on by default, in the user's cache directory
(:func:`default_cache_dir`), because analysts run it on a schedule with the same model every month. The
directory can be chosen or the cache switched off with ``$FORECAST_COMPILE_CACHE`` or ``--no-compile-cache``
(``docs/architecture.md``, "Compile cache"). A directory that JAX is already told to use
(``$JAX_COMPILATION_CACHE_DIR``) is left as it is. The library itself never turns the cache on: in a notebook,
call :func:`enable_compile_cache` before the first fit.

XLA's CPU loader checks that a cached program was compiled for this machine's instruction set and compiles
afresh if not, so a cache directory shared between different machines is safe, only slower.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["ENV_VAR", "MAX_BYTES", "default_cache_dir", "enable_compile_cache", "resolve_cache_dir"]

#: Environment variable naming the cache directory; ``off`` switches the cache off.
ENV_VAR = "FORECAST_COMPILE_CACHE"

#: Size limit of the cache directory; JAX evicts the least recently used programs beyond it (a fit of the
#: bundled data stores about 1.2 MB). Setting a limit also makes JAX lock the directory while it reads or
#: writes, so runs started at the same time share it safely.
MAX_BYTES = 256 * 1024 * 1024

_OFF = frozenset({"off", "none", "no", "0", "false"})


def default_cache_dir() -> Path:
    """The default cache directory: ``xla`` in the user's cache directory for ``forecast``.

    Returns
    -------
    pathlib.Path
        E.g. ``~/.cache/forecast/xla`` on Linux (``$XDG_CACHE_HOME`` is honoured).
    """
    import platformdirs

    return platformdirs.user_cache_path("forecast") / "xla"


def resolve_cache_dir(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """The cache directory ``$FORECAST_COMPILE_CACHE`` asks for, or the default; ``None`` if switched off.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default ``os.environ``).

    Returns
    -------
    pathlib.Path or None
        ``None`` when the variable is ``off`` (also ``none``, ``no``, ``0``, ``false``, any case).
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR, "").strip()
    if not value:
        return default_cache_dir()
    if value.lower() in _OFF:
        return None
    return Path(value).expanduser()


def enable_compile_cache(directory: Path | None = None,
                         environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Keep compiled XLA programs in ``directory`` so that later fits load them instead of compiling.

    Call it before the first fit. Before JAX is imported it sets JAX's own environment variables (so importing
    this module does not import JAX, and child processes inherit the setting); afterwards it updates JAX's
    configuration.

    Parameters
    ----------
    directory : pathlib.Path, optional
        Where to keep the programs; default :func:`resolve_cache_dir` (``$FORECAST_COMPILE_CACHE`` or
        :func:`default_cache_dir`).
    environ : mapping, optional
        The environment to read and set (default ``os.environ``).

    Returns
    -------
    pathlib.Path or None
        The directory in use; ``None`` when the cache is switched off, or when the directory cannot be created
        (logged as a warning: the fit then compiles as usual, it does not fail). When
        ``$JAX_COMPILATION_CACHE_DIR`` is already set, that directory is kept and returned.
    """
    environ = os.environ if environ is None else environ
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(environ["JAX_COMPILATION_CACHE_DIR"])
    directory = resolve_cache_dir(environ) if directory is None else Path(directory)
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        logger.warning("compiled code is not cached: cannot write to %s (%s); set %s to another directory or "
                       "to 'off'", directory, exc.strerror or exc, ENV_VAR)
        return None
    # JAX's configuration names; each is also read from the upper-case environment variable at import
    settings: dict[str, str | float | int] = {
        "jax_compilation_cache_dir": str(directory),
        # cache every program, however quick to compile: a fit compiles some thirty small ones besides the two
        # large ones, and loading them all saves about half a second more
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_compilation_cache_max_size": MAX_BYTES,
    }
    environ.update({name.upper(): str(value) for name, value in settings.items()})
    if "jax" in sys.modules and environ is os.environ:
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    logger.debug("compiled XLA programs are cached in %s", directory)
    return directory
