"""Helpers shared by the CLI commands: the one place library errors become messages and exit codes."""

from __future__ import annotations

import functools
import sys
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

    return wrapper  # type: ignore[return-value]
