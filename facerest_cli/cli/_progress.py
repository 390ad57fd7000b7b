"""Rich progress on stderr: images, faces, faces/s (and a line for the current video: frames, frames/s, ETA);
failures as one line each."""

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
        self._video: list | None = None  # [path, task id, start time] of the video being written
        self._steps = None  # task id of the diffusion denoising line, while a batch is being sampled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[faces]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=quiet,
            transient=False,
        )
        self._task = self._progress.add_task("restoring", total=total, unit="images", faces="0 faces", rate="0.0 faces/s")

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
            self._progress.update(self._task, advance=1, faces=f"{self.faces} faces", rate=f"{rate:.1f} faces/s")
            self._end_video(path)

    def image_failed(self, path: Path, error: str) -> None:
        with self._lock:
            # Failures are always shown, even with --quiet: a user must learn which files were not processed.
            self.console.print(f"[red]failed[/red] {escape(error)}", markup=True, highlight=False, soft_wrap=True)
            self._progress.update(self._task, advance=1)
            self._end_video(path)

    def frame_done(self, path: Path, index: int, total: int | None) -> None:
        """A video frame was written: the current video's own line shows frames, frames/s and its ETA."""
        with self._lock:
            if self._video is None or self._video[0] != path:
                self._end_video(None)
                tid = self._progress.add_task(f"  {escape(path.name)}", total=total, unit="frames", faces="", rate="")
                self._video = [path, tid, time.perf_counter()]
            _, tid, t0 = self._video
            fps = (index + 1) / max(time.perf_counter() - t0, 1e-6)
            self._progress.update(tid, completed=index + 1, total=total, rate=f"{fps:.1f} frames/s")

    def restore_steps(self, done: int, total: int) -> None:
        """A diffusion restorer finished step ``done`` of ``total`` for the faces it is sampling now."""
        with self._lock:
            if self._steps is None:
                self._steps = self._progress.add_task("  denoising", total=total, unit="steps", faces="", rate="")
            self._progress.update(self._steps, completed=done, total=total)
            if done >= total:
                self._progress.remove_task(self._steps)
                self._steps = None

    def _end_video(self, path: Path | None) -> None:
        if self._video is not None and (path is None or self._video[0] == path):
            self._progress.remove_task(self._video[1])
            self._video = None
