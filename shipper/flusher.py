"""Sends the lines of long invocations before they end, so a process that dies keeps them.

Lines normally leave with the record, in one send when the invocation ends;
a process killed mid-invocation (out of memory, ``os._exit``, a native crash,
the platform's timeout) would take them along. With a flush interval ``I``
(``FAASLENS_FLUSH_INTERVAL_MS``, 1 s), one daemon thread wakes every ``I/4``
and calls ``flush(now_ns)``, which sends the pending lines of every
invocation that has run for at least ``I/2``. A line logged at ``x`` thus
leaves by ``max(x, I/2) + I/4``: within ``3I/4`` of being logged, so every
line logged at least ``I`` before the process dies has left it. Invocations
shorter than ``I/2`` are never touched: they still send their lines with the
record, in one send.

The thread needs the GIL: a C call that holds it (and does not return)
stops the flusher too, so lines logged in the last ``3I/4`` before such a
call stay behind.
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Flusher:
    """Calls ``flush(time.perf_counter_ns())`` every ``interval_s / 4`` on a daemon thread."""

    __slots__ = ("_flush", "_period", "_stop", "_thread")

    def __init__(self, interval_s: float, flush: Callable[[int], None]) -> None:
        self._flush = flush
        self._period = interval_s / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faaslens-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._flush(time.perf_counter_ns())

    def stop(self) -> None:
        """End the thread (it exits at its next wake-up)."""
        self._stop.set()
