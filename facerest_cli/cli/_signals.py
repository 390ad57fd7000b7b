"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

Python turns SIGINT into ``KeyboardInterrupt`` in the main thread; the pipeline answers it by finishing or
discarding the batch in flight, writing nothing partial, and recording status "interrupted" (exit code 130).
``kill`` (SIGTERM) and a closed terminal (SIGHUP) would otherwise end the process on the spot, skipping all that.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


def _interrupt(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread, unless the process was
    started with them ignored (nohup); the previous handlers come back afterwards. Does nothing outside the main
    thread (handlers can only be set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGTERM", "SIGHUP")
    previous = {}
    for name in names:
        sig = getattr(signal, name, None)
        # An ignored signal stays ignored: `nohup facerest run ...` must survive the terminal closing (SIGHUP).
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
