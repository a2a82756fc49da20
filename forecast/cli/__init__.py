"""The ``forecast`` command line.

This is the only place that configures logging. Errors in user input (:class:`forecast.errors.UserInputError`)
are printed without a traceback and exit with code 2; see ``docs/cli.md`` for all exit codes.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from forecast.errors import UserInputError

app = typer.Typer(
    name="forecast",
    help="Bayesian scenario probabilities for South Korea–Japan security cooperation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Exit codes of every command.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2

#: The commands that may compile the model (a fit, or a refit when an update cannot reweight): only they turn the
#: compile cache on, so that checking or ingesting data leaves no cache directory behind.
COMPILING_COMMANDS = frozenset({"fit", "report", "update"})


@app.callback()
def _configure(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail to stderr.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings and errors.")] = False,
    compile_cache: Annotated[bool, typer.Option(
        "--compile-cache/--no-compile-cache",
        help="Keep the compiled model code between runs, so later fits skip compiling (about 8 s). Directory: "
        "$FORECAST_COMPILE_CACHE (or 'off'), default ~/.cache/forecast/xla.")] = True,
) -> None:
    """Configure logging to stderr with timestamps, and the compile cache for the commands that compile."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
        force=True,
    )
    if not verbose:
        for noisy in ("pymc", "pytensor", "jax", "numpyro", "arviz", "matplotlib", "distributed"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if compile_cache and ctx.invoked_subcommand in COMPILING_COMMANDS:
        from forecast.compile_cache import enable_compile_cache

        enable_compile_cache()


def _register() -> None:
    from forecast.cli import data, fit, ingest, report, update  # noqa: F401  (each adds its commands to ``app``)


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with the documented exit code.

    Usage errors are reported by Typer (exit 2); a :class:`UserInputError` is printed without a traceback
    (exit 2); anything else is an internal error, logged with its traceback (exit 1).
    """
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    except Exception:
        logging.getLogger(__name__).exception("internal error")
        sys.exit(EXIT_INTERNAL)
