"""Capped exponential backoff, the one policy behind every retry in faaslens.

Standard library only (the shipper's TCP reconnect uses it inside functions).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] | None = None
) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): a delay in [d/2, d] with
    d = min(cap, base * 2**attempt).

    Half of the delay is kept so that retries still spread out under load, and
    half is random so that many writers do not retry in lockstep.
    """
    ceiling = min(cap, base * float(2 ** min(attempt, 32)))
    if rand is None:
        # Imported on first use: the shipper imports this module inside functions.
        from random import random

        rand = random
    jitter: float = rand()
    return ceiling / 2 + ceiling / 2 * jitter


class Backoff:
    """Stateful form of :func:`backoff_delay`: ``next()`` after a failure, ``reset()``
    after a success."""

    __slots__ = ("attempt", "base", "cap", "rand")

    def __init__(self, base: float, cap: float, rand: Callable[[], float] | None = None) -> None:
        self.base = base
        self.cap = cap
        self.rand = rand
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next try, in seconds; counts the failure."""
        delay = backoff_delay(self.attempt, self.base, self.cap, self.rand)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Forget the failures: the next delay is the base one again."""
        self.attempt = 0
