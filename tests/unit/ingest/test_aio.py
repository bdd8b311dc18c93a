"""wait_event: set, timed out, and cancelled in the same loop pass as the event fires."""

from __future__ import annotations

import asyncio

from faaslens.ingest.aio import wait_event


async def _next_turn() -> None:
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


async def test_true_when_set_false_on_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, None) is True


async def test_a_cancel_arriving_as_the_event_fires_is_kept() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_event(event, 10))
    await _next_turn()  # the waiter is now blocked on the event
    event.set()
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=5)
    assert waiter in done and waiter.cancelled()
