"""A bounded queue whose blocking calls give up when a stop event is set (Ctrl-C, a fatal error), so no thread
ever waits forever on a full or empty queue. Used by the pipeline's threads and the video decoder."""

from __future__ import annotations

import queue
import threading
from typing import Any

END = object()  # end of stream (also what ``get`` returns once stopped)


class StoppableQueue:
    def __init__(self, maxsize: int, stop: threading.Event, poll_s: float = 0.1):
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = stop
        self._poll = poll_s

    def put(self, obj: Any, force: bool = False) -> bool:
        """Block until there is room. Returns False (nothing queued) once stopped, unless ``force``: then the queue
        is drained to make room, so an end marker always gets through."""
        while True:
            if self._stop.is_set() and not force:
                return False
            try:
                self._q.put(obj, timeout=self._poll)
                return True
            except queue.Full:
                if force and self._stop.is_set():
                    self.drain()

    def get(self) -> Any:
        """The next item, or ``END`` once stopped."""
        while True:
            try:
                return self._q.get(timeout=self._poll)
            except queue.Empty:
                if self._stop.is_set():
                    return END

    def drain(self) -> None:
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
