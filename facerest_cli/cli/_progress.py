"""Rich progress on stderr: images, faces, faces/s; failures as one line each."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichEvents:
    """Implements ``facerest_cli.pipeline.Events``; safe to call from worker threads."""

    def __init__(self, total: int | None, quiet: bool = False):
        self.console = Console(stderr=True)
        self.quiet = quiet
        self._lock = threading.Lock()
        self.faces = 0
        self._t0 = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]restoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TextColumn("{task.fields[faces]} faces"),
            TextColumn("{task.fields[rate]} faces/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=quiet,
            transient=False,
        )
        self._task = self._progress.add_task("run", total=total, faces=0, rate="0.0")

    def __enter__(self) -> "RichEvents":
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def start(self, total: int) -> None:
        # Started only once the weights are in place, so download bars never fight with this one.
        self._t0 = time.perf_counter()
        self._progress.update(self._task, total=total)
        self._progress.start()

    def image_done(self, path: Path, n_faces: int) -> None:
        with self._lock:
            self.faces += n_faces
            rate = self.faces / max(time.perf_counter() - self._t0, 1e-6)
            self._progress.update(self._task, advance=1, faces=self.faces, rate=f"{rate:.1f}")

    def image_failed(self, path: Path, error: str) -> None:
        with self._lock:
            # Failures are always shown, even with --quiet: a user must learn which files were not processed.
            self.console.print(f"[red]failed[/red] {escape(error)}", markup=True, highlight=False, soft_wrap=True)
            self._progress.update(self._task, advance=1)
