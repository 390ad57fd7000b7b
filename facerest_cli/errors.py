"""Typed errors. Library code raises these; only ``facerest_cli.cli`` maps them to exit codes and messages."""

from __future__ import annotations

from pathlib import Path


class FacerestError(Exception):
    """Base class. ``str(err)`` is a one-line, user-facing reason."""

    exit_code = 1


class UsageError(FacerestError):
    """Bad options or configuration (exit code 2)."""

    exit_code = 2


class InputError(FacerestError):
    """One input file cannot be used; the run goes on with the others."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class WeightsError(FacerestError):
    """A weights file is missing, corrupt, unsafe or does not match its architecture (exit code 2)."""

    exit_code = 2


class WeightsMissingError(WeightsError):
    """A required weights file is not installed and may not be fetched (offline)."""


class DownloadError(WeightsError):
    """A download failed after every mirror and retry."""


class DiskFullError(FacerestError):
    """The output disk is full (ENOSPC); the run stops cleanly (exit code 3)."""

    exit_code = 3


class Interrupted(FacerestError):
    """The user pressed Ctrl-C or sent SIGTERM (exit code 130)."""

    exit_code = 130
