"""Waiting on a condition without sleeping blindly: poll it under a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``check`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {what} (last={last!r})")
        time.sleep(interval)  # interval under a deadline (noqa: sleep-ok)


async def apoll_until(
    check: Callable[[], Awaitable[T | None]],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """Async version of :func:`poll_until`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {what} (last={last!r})")
        await asyncio.sleep(interval)  # interval under a deadline (noqa: sleep-ok)
