"""Records a timeout before the platform kills a still-running invocation (AWS).

One daemon thread per process. Arming is a lock-free ``deque.append`` (the
hot path pays ~300 ns); the thread sleeps until the oldest pending deadline,
drops the invocations already done, and records a timeout for one that is
not. Deadlines arrive nearly in order (one function, one timeout), so the
oldest entry is the next to expire.
"""

from __future__ import annotations

import threading
import time
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from faaslens.shipper.record import Invocation


class Watchdog:
    """Calls ``on_timeout(inv, margin_ms)`` for invocations not done by their deadline."""

    def __init__(self, on_timeout: Callable[[Invocation, int], None]) -> None:
        self._on_timeout = on_timeout
        self._queue: deque[tuple[float, Invocation, int]] = deque()
        self._wake = threading.Event()
        self._pop_lock = threading.Lock()  # pops only: appends stay lock-free
        self._idle = True
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, inv: Invocation, margin_ms: int) -> None:
        """Watch ``inv`` until ``deadline`` (time.monotonic seconds)."""
        queue = self._queue
        # Drop finished invocations from the front now, not at their (distant) deadline:
        # one invocation at a time (Lambda) keeps the queue at one entry.
        if queue and queue[0][1].done:
            with self._pop_lock:
                while queue and queue[0][1].done:
                    queue.popleft()
        queue.append((deadline, inv, margin_ms))
        if self._idle:
            self._idle = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="faaslens-watchdog", daemon=True
                )
                self._thread.start()
            else:
                self._wake.set()

    def _run(self) -> None:
        queue = self._queue
        while True:
            with self._pop_lock:
                while queue and queue[0][1].done:
                    queue.popleft()
            if not queue:
                self._idle = True
                self._wake.clear()
                if queue:  # armed between the check and the flag: look again
                    self._idle = False
                    continue
                self._wake.wait()
                continue
            try:
                entry = queue[0]
            except IndexError:  # emptied by arm() since the check
                continue
            deadline, inv, margin = entry
            now = time.monotonic()
            if deadline > now:
                # Sleep until the deadline; an earlier invocation finishing early
                # changes nothing (its entry is dropped when we wake).
                self._wake.wait(deadline - now)
                self._wake.clear()
                continue
            with self._pop_lock:
                if queue and queue[0] is entry:
                    queue.popleft()
            self._on_timeout(inv, margin)
