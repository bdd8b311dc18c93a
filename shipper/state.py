"""Process-wide state of the shipper, in one module.

Everything a process holds once lives here: the running invocation of each
thread or task (``current``), the process's shipper (built by
:mod:`faaslens.shipper.core`), where the process's init began, and the locks
that guard them. Nothing else in the shipper keeps module-level mutable state
other than bounded caches.

A forked child (``os.fork``, ``multiprocessing``, gunicorn or uwsgi workers)
is a new sender. ``os.register_at_fork`` gives every live shipper in the child
a new sender id, fresh sequence numbers and counters, and drops what belongs to
the parent: its socket, frames queued for TCP, metrics waiting for the next
record, the watchdog thread (threads do not survive a fork) and the running
invocation. The init origin is kept: a worker forked before any invocation
(gunicorn's preloaded app) is still in the platform's init, which began when
the parent process started.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from contextvars import ContextVar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from faaslens.shipper.core import Shipper
    from faaslens.shipper.record import Invocation

# The invocation running in this thread / asyncio task (None outside one).
current: ContextVar[Invocation | None] = ContextVar("faaslens_invocation", default=None)
current_invocation = current.get

# The process's shipper (core.get_shipper builds it; core.configure replaces it).
default: Shipper | None = None
default_lock = threading.Lock()
# Marks an invocation done exactly once (the handler's return vs. the watchdog).
finish_lock = threading.Lock()

# When the shipper was imported: the init origin where /proc is not available.
_imported_ns = time.perf_counter_ns()
# Process start on CLOCK_BOOTTIME (ns), read on first use or just before a fork.
_origin_ns: int | None = None
_live: weakref.WeakSet[Shipper] = weakref.WeakSet()


def _process_start_ns() -> int | None:
    """This process's start time on CLOCK_BOOTTIME (Linux ``/proc/self/stat`` field 22)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        ticks = int(stat.rsplit(b")", 1)[1].split()[19])
        return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def init_age_ns() -> int:
    """Nanoseconds since the process's init began: its start (in a forked child, its
    parent's), else since the shipper's import. ``/proc`` start times tick at 10 ms."""
    global _origin_ns  # noqa: PLW0603 - read once per process tree
    if _origin_ns is None:
        _origin_ns = _process_start_ns() or -1
    if _origin_ns > 0:
        try:
            age = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - _origin_ns
        except (AttributeError, OSError):
            age = -1
        if age >= 0:
            return age
    return time.perf_counter_ns() - _imported_ns


def register(shipper: Shipper) -> None:
    """Track a shipper so that a forked child renews it."""
    _live.add(shipper)


def _before_fork() -> None:
    # The child must know where its parent's init began.
    if _origin_ns is None:
        init_age_ns()


def _after_fork_in_child() -> None:
    global default_lock, finish_lock  # noqa: PLW0603 - locks another thread may have held
    default_lock = threading.Lock()
    finish_lock = threading.Lock()
    current.set(None)  # the parent's invocation is not the child's
    for shipper in list(_live):
        shipper._renew_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
