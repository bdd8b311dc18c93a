"""Asyncio helpers shared by the worker's tasks."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass (None: no limit).

    True if the event was set. Built on ``asyncio.timeout``, not ``wait_for``: on
    Python 3.11 ``wait_for`` drops a cancellation that arrives as the event fires,
    and the cancelled task runs on (a close() awaiting it would wait forever).
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
