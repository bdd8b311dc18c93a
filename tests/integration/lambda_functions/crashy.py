"""A Lambda function that dies mid-invocation in the ways a real one does.

``event["case"]``: ``ok`` returns; the others log a line, run on until that
line has left (the shipper's periodic flush), then end the process without
a record: ``exit`` (``os._exit(137)``), ``sigkill`` (the process kills
itself), ``gil`` (one C call holding the GIL past the function's timeout:
the runtime is killed by the emulator) and ``memory`` (the address space is
capped with ``setrlimit`` and filled until nothing more can be allocated:
the runtime dies reporting the error).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any

import faaslens

log = faaslens.get_logger("crashy")


def _run_until_flushed() -> None:
    """Work on until the line logged so far has left the process (10 s at most)."""
    deadline = time.monotonic() + 10
    while faaslens.stats()["lines_flushed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # poll interval under the deadline above


# Held at module level: the memory stays taken after the MemoryError leaves the handler,
# as it does in a function that keeps what it loaded (a real platform kills such a process).
_HOG: list[bytearray] = []


def _exhaust_memory() -> None:
    with open("/proc/self/statm") as fh:
        used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + (64 << 20), hard))
    for size in (1 << 20, 1 << 12, 64, 1):  # big blocks, then whatever room is left
        try:
            while True:
                _HOG.append(bytearray(size))
        except MemoryError:
            pass
    _HOG.append(bytearray(1 << 20))


@faaslens.instrument
def handler(event: dict[str, Any], context: Any) -> Any:
    case = event["case"]
    log.info("starting", case=case)
    if case == "ok":
        return {"ok": True}
    _run_until_flushed()
    if case == "exit":
        os._exit(137)
    elif case == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif case == "gil":
        return sum(range(10**18))  # C code from start to end: the GIL is never released
    elif case == "memory":
        _exhaust_memory()
    raise ValueError(f"unknown case {case!r}")
