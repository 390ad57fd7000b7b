"""Helpers shared by the CLI commands: the one place library errors become messages and exit codes."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import traceback
from typing import Callable, TypeVar

import typer

from facerest_cli.errors import FacerestError

F = TypeVar("F", bound=Callable)


def err(message: str) -> None:
    """One line on stderr."""
    print(f"facerest: {message}", file=sys.stderr, flush=True)


def reports_errors(fn: F) -> F:
    """Turn a ``FacerestError`` into its message on stderr and its exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FacerestError as e:
            err(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - a bug must still end in one readable line, not a traceback
            if os.environ.get("FACEREST_DEBUG"):
                raise
            log = _save_traceback(e)
            err(f"internal error: {type(e).__name__}: {_first_line(e)} (traceback saved to {log}; please report it)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def _save_traceback(e: BaseException) -> str:
    fd, path = tempfile.mkstemp(prefix="facerest-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write("".join(traceback.format_exception(e)))
    return path


def role_choices(role: str, extra: tuple[str, ...] = ()) -> str:
    """``a | b | c`` for a help text: ``extra`` then the weights.toml entries of ``role`` (with a user's own
    models from ``$FACEREST_HOME/models``), so help never lists a model the registry lacks or misses one it has."""
    from facerest_cli.registry import names
    from facerest_cli.weights.cache import WeightsConfig
    from facerest_cli.weights.registry import load_registry

    try:
        cfg = WeightsConfig.from_env()
        reg = load_registry(cfg.registry_path, cfg.model_dir)
    except FacerestError:  # a broken user fragment: the run itself reports it; help still works
        reg = load_registry()
    return " | ".join((*extra, *names(role, reg)))
